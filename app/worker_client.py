"""The app's handle on the model worker (`python -m workbench.worker`): submit jobs, poll their status.

The worker process imports torch and keeps the model loaded; this side only writes JSON lines to its
stdin and reads events from its stdout on a background thread. Jobs run one at a time in the worker;
`status(job_id)` tells a page whether a job is queued, running (with its last progress message), done
(with its result) or failed (with a message). If the worker dies, its jobs fail with a message and
the next submit starts a fresh worker.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from typing import Any

MAX_JOBS = 64


class WorkerClient:
    def __init__(self, model: str, *, python: str | None = None, env: dict[str, str] | None = None):
        self.model = model
        self.python = python or sys.executable
        self.env = env
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._ids = itertools.count(1)
        self.info: dict[str, Any] | None = None

    # ---- process ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker (if not running) and ask it to load the model in the background."""
        with self._lock:
            self._ensure_process()
        self.submit("load", {}, on_done=self._remember_info)

    def _remember_info(self, result: dict) -> None:
        self.info = result

    def _ensure_process(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        self._proc = subprocess.Popen([self.python, "-m", "workbench.worker", "--model", self.model],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True,
                                      bufsize=1, env=env)
        threading.Thread(target=self._read, args=(self._proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            self._apply(event)
        with self._lock:  # the worker exited: fail whatever it had
            for job in self._jobs.values():
                if job["status"] in ("queued", "running") and job.get("proc") is proc:
                    job.update(status="error", message="The model worker stopped (see the terminal); "
                                                       "run the request again to restart it.")

    def _apply(self, event: dict) -> None:
        callback = None
        with self._lock:
            job = self._jobs.get(str(event.get("id")))
            if job is None:
                return
            kind = event.get("event")
            if kind == "progress":
                job.update(status="running", message=event.get("message", ""))
            elif kind == "done":
                job.update(status="done", result=event.get("result"), seconds=event.get("seconds"), message="")
                callback = job.pop("on_done", None)
            elif kind == "error":
                job.update(status="error", message=event.get("message", "unknown error"))
        if callback is not None:
            callback(event.get("result"))

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                proc.stdin.flush()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()

    # ---- jobs ---------------------------------------------------------------------------------------
    def submit(self, op: str, args: dict[str, Any], on_done=None) -> str:
        """Queue a request; returns the job id to poll with `status`."""
        with self._lock:
            self._ensure_process()
            job_id = f"job{next(self._ids)}"
            self._jobs[job_id] = {"op": op, "status": "queued", "message": "queued", "result": None,
                                  "started": time.time(), "proc": self._proc, "on_done": on_done}
            while len(self._jobs) > MAX_JOBS:
                self._jobs.popitem(last=False)
            try:
                self._proc.stdin.write(json.dumps({"id": job_id, "op": op, "args": args}) + "\n")
                self._proc.stdin.flush()
            except OSError as exc:
                self._jobs[job_id].update(status="error", message=f"cannot reach the model worker: {exc}")
        return job_id

    def status(self, job_id: str | None) -> dict[str, Any]:
        """{status: queued|running|done|error|unknown, message, result, elapsed}."""
        with self._lock:
            job = self._jobs.get(str(job_id)) if job_id else None
            if job is None:
                return {"status": "unknown", "message": "no such job (the app may have restarted); run it again",
                        "result": None, "elapsed": 0.0}
            return {"status": job["status"], "message": job["message"], "result": job["result"],
                    "elapsed": time.time() - job["started"], "seconds": job.get("seconds")}
