"""The app's handle on the model worker (`python -m workbench.worker`): submit jobs, poll their status.

JSON lines go out through a writer thread (no lock held across a pipe write), events come in on a reader thread.
At most MAX_PENDING jobs wait (else WorkerBusy); if the worker dies, its jobs fail and the next submit restarts it.
`cancel(job)` asks the worker to drop or stop a job; one still running `cancel_grace_s` later gets the worker
killed and restarted: that job is cancelled, the others it held are sent to the new worker.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from typing import Any

from workbench.api import WorkbenchError

MAX_PENDING = 32  # queued + running; the worker's own queue holds as many (workbench.worker.MAX_QUEUED)
MAX_FINISHED = 256
PENDING = ("queued", "running")
CANCEL_GRACE_S = 10.0


class WorkerBusy(WorkbenchError):
    """Too many jobs waiting for the model worker."""


class _Process:
    """One worker process with its writer queue (None = stop writing)."""

    def __init__(self, popen: subprocess.Popen):
        self.popen, self.lines, self.dead = popen, queue.Queue(), False


class WorkerClient:
    def __init__(self, model: str, *, python: str | None = None, env: dict[str, str] | None = None,
                 max_pending: int = MAX_PENDING, worker_args: tuple[str, ...] = (),
                 cancel_grace_s: float = CANCEL_GRACE_S):
        self.model = model
        self.python = python or sys.executable
        self.env = env
        self.max_pending = max_pending
        self.worker_args = tuple(worker_args)
        self.cancel_grace_s = cancel_grace_s
        self._proc: _Process | None = None
        self._lock = threading.Lock()  # guards _proc and _jobs; never held across I/O on a pipe
        self._ended = threading.Condition(self._lock)  # notified whenever a job leaves queued/running
        self._jobs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._ids = itertools.count(1)
        self.info: dict[str, Any] | None = None

    # ---- process ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker (if not running) and ask it to load the model in the background."""
        self.submit("load", {}, on_done=lambda result: setattr(self, "info", result))

    def _ensure_process(self) -> _Process:
        """The live worker, started if needed (call with the lock held; starting writes nothing)."""
        if self._proc is not None and not self._proc.dead and self._proc.popen.poll() is None:
            return self._proc
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        popen = subprocess.Popen([self.python, "-m", "workbench.worker", "--model", self.model, *self.worker_args],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True,
                                 bufsize=1, env=env)
        proc = self._proc = _Process(popen)
        threading.Thread(target=self._read, args=(proc,), daemon=True, name="worker-reader").start()
        threading.Thread(target=self._write, args=(proc,), daemon=True, name="worker-writer").start()
        return proc

    def _write(self, proc: _Process) -> None:
        while (item := proc.lines.get()) is not None:
            job_id, line = item
            try:
                proc.popen.stdin.write(line)
                proc.popen.stdin.flush()
            except (OSError, ValueError) as exc:  # the worker is gone; the reader fails the rest
                self._fail(job_id, f"Cannot reach the model worker ({exc}); run the request again to restart it.")
                return

    def _read(self, proc: _Process) -> None:
        for line in proc.popen.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                self._apply(event)
        code = proc.popen.wait()
        proc.lines.put(None)
        with self._lock:  # the worker exited: fail whatever it had, and start afresh on the next submit
            proc.dead = True
            if self._proc is proc:
                self._proc = None
            for job in self._jobs.values():
                if job["status"] in PENDING and job.get("proc") is proc:
                    job.update(status="error", message=f"The model worker stopped (exit code {code}; see the "
                                                       "terminal); run the request again to restart it.")
                    job.pop("on_done", None)
                    job.pop("proc", None)
            self._ended.notify_all()

    def _fail(self, job_id: str, message: str) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job["status"] in PENDING:
                job.update(status="error", message=message)
                self._ended.notify_all()

    def _apply(self, event: dict) -> None:
        callback = None
        with self._lock:
            job = self._jobs.get(str(event.get("id")))
            if job is None or job["status"] not in PENDING:
                return
            kind = event.get("event")
            if kind in ("started", "progress"):
                job.update(status="running", message=str(event.get("message", "")),
                           progress=_counts(event) if kind == "progress" else None)
            elif kind == "done":
                job.update(status="done", result=event.get("result"), seconds=event.get("seconds"), message="")
                callback = job.pop("on_done", None)
            elif kind == "error":
                job.update(status="error", message=str(event.get("message", "unknown error")))
            elif kind == "cancelled":
                job.update(status="cancelled", message=str(event.get("message") or "cancelled"),
                           seconds=event.get("seconds"))
            if job["status"] not in PENDING:
                job.pop("proc", None)
                job["finished"] = time.time()
                self._ended.notify_all()
        if callback is not None:
            callback(event.get("result"))

    def stop(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.popen.poll() is None:
            proc.lines.put(("", json.dumps({"op": "quit"}) + "\n"))
            proc.lines.put(None)
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.popen.kill()

    def kill(self) -> None:
        """Kill the worker process now (tests, a stuck model); its jobs fail and the next submit restarts it."""
        with self._lock:
            proc = self._proc
        if proc is not None:
            proc.popen.kill()

    # ---- jobs ---------------------------------------------------------------------------------------
    def pending(self) -> int:
        with self._lock:
            return sum(job["status"] in PENDING for job in self._jobs.values())

    def submit(self, op: str, args: dict[str, Any], on_done=None) -> str:
        """Queue a request; returns the job id to poll with `status`. WorkerBusy if too many are waiting."""
        job_id = f"job{next(self._ids)}"
        line = json.dumps({"id": job_id, "op": op, "args": args}) + "\n"  # TypeError here on values JSON cannot hold
        with self._lock:
            waiting = sum(job["status"] in PENDING for job in self._jobs.values())
            if waiting >= self.max_pending:
                raise WorkerBusy(f"The model worker is busy: {waiting} requests are waiting or running. Wait for "
                                 "them to finish, then run this again.")
            proc = self._ensure_process()
            self._jobs[job_id] = {"op": op, "label": _label(op, args), "status": "queued", "message": "queued",
                                  "result": None, "started": time.time(), "proc": proc, "on_done": on_done,
                                  "line": line}
            self._evict()
        proc.lines.put((job_id, line))
        return job_id

    def _evict(self) -> None:
        finished = [k for k, job in self._jobs.items() if job["status"] not in PENDING]
        for key in finished[:max(0, len(finished) - MAX_FINISHED)]:
            del self._jobs[key]

    def status(self, job_id: Any) -> dict[str, Any]:
        """{id, op, label, status: queued|running|done|error|cancelled|unknown, message (a queued job's place:
        "2nd in queue, behind intervene"), result, elapsed, seconds, progress (done, total, rate, unit, eta_s from
        tqdm, or None), cancelling}."""
        with self._lock:
            job = self._jobs.get(job_id) if isinstance(job_id, str) and job_id else None
            if job is None:
                return {"id": job_id if isinstance(job_id, str) else None, "status": "unknown", "result": None,
                        "message": "no such job (the app may have restarted); run it again", "elapsed": 0.0}
            return self._view(job_id, job)

    def wait(self, job_id: Any, timeout: float) -> dict[str, Any]:
        """`status(job_id)` as soon as the job has ended, or after `timeout` seconds: a page's poll answers the
        moment a short job ends instead of at its next tick."""
        deadline = time.monotonic() + max(0.0, float(timeout))
        with self._ended:
            while True:
                job = self._jobs.get(job_id) if isinstance(job_id, str) else None
                left = deadline - time.monotonic()
                if job is None or job["status"] not in PENDING or left <= 0:
                    break
                self._ended.wait(left)
        return self.status(job_id)

    def _view(self, job_id: str, job: dict) -> dict[str, Any]:
        message = job["message"]
        if job["status"] == "queued" and not job.get("cancelling"):
            ahead = list(itertools.takewhile(lambda kv: kv[0] != job_id, self._jobs.items()))
            ahead = [j for _, j in ahead if j["status"] in PENDING]
            if ahead:
                place = _ordinal(sum(j["status"] == "queued" for j in ahead) + 1)
                message = f"{place} in queue, behind {ahead[-1]['op']}"
        return {"id": job_id, "op": job["op"], "label": job.get("label", job["op"]), "status": job["status"],
                "message": message, "result": job["result"], "elapsed": time.time() - job["started"],
                "seconds": job.get("seconds"), "progress": job.get("progress"),
                "cancelling": bool(job.get("cancelling"))}

    def jobs(self, finished: int = 5) -> list[dict[str, Any]]:
        """Running and queued jobs in queue order, then the last `finished` ones (newest first), as `status` gives."""
        with self._lock:
            views = [self._view(k, j) for k, j in self._jobs.items()]
        pending = [v for v in views if v["status"] in PENDING]
        return pending + [v for v in reversed(views) if v["status"] not in PENDING][:finished]

    def cancel(self, job_id: Any) -> dict[str, Any]:
        """Ask the worker to drop (queued) or stop (running) a job; returns its status. A job still running
        `cancel_grace_s` later gets the worker restarted (`_force_cancel`)."""
        with self._lock:
            job = self._jobs.get(job_id) if isinstance(job_id, str) else None
            proc = job.get("proc") if job is not None and job["status"] in PENDING else None
            send = proc is not None and not job.get("cancelling")
            if send:
                job.update(cancelling=time.time(), message="cancelling…")
        if send:
            proc.lines.put(("", json.dumps({"op": "cancel", "id": job_id}) + "\n"))
            timer = threading.Timer(self.cancel_grace_s, self._force_cancel, args=(job_id, proc))
            timer.daemon = True
            timer.start()
        return self.status(job_id)

    def _force_cancel(self, job_id: str, proc: _Process) -> None:
        """The worker ignored a cancel: kill it; the job is cancelled, its other jobs go to a fresh worker."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job["status"] not in PENDING or job.get("proc") is not proc:
                return
            job.update(status="cancelled", message=f"stopped by restarting the model worker (it did not stop within "
                                                   f"{self.cancel_grace_s:.0f} s)", finished=time.time())
            job.pop("proc", None)
            job.pop("on_done", None)
            self._ended.notify_all()
            moved = [(k, j) for k, j in self._jobs.items() if j["status"] in PENDING and j.get("proc") is proc]
            if self._proc is proc:
                self._proc = None
            fresh = self._ensure_process() if moved else None
            for key, other in moved:
                other.update(proc=fresh, status="queued", message="queued", progress=None)
                fresh.lines.put((key, other["line"]))
        proc.popen.kill()


def _counts(event: dict) -> dict | None:
    """A progress event's tqdm counts, or None."""
    if not isinstance(event.get("total"), int) or not isinstance(event.get("done"), int):
        return None
    return {k: event.get(k) for k in ("done", "total", "rate", "unit", "eta_s")}


def _label(op: str, args: dict) -> str:
    """A short name of a job: its op and what it is about ('intervene L3H5,L10H2 ablate')."""
    args = args if isinstance(args, dict) else {}
    about = [str(args[k])[:40] for k in ("analysis", "heads", "head", "edit") if args.get(k)]
    return " ".join([op, *about])


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"
