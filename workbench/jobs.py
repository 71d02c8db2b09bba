"""Job control for the model worker (stdlib only): a FIFO of requests whose waiting jobs can be dropped and whose
running job can be interrupted, the clean-up after an interrupt, and tqdm lines read as progress events.

Cancelling the running job raises `JobCancelled` in the thread that runs it (`PyThreadState_SetAsyncExc`), at
most once per job; `JobQueue.finish()` clears an interrupt not yet delivered, under the same lock, so a late
cancel can never reach the next job. Torch ops are short, so Python regains control between them; a job stuck in
one long C call is the client's to kill (workbench_app.worker_client restarts the worker).
"""

from __future__ import annotations

import ctypes
import io
import queue
import re
import threading
from typing import Any, Callable


class JobCancelled(BaseException):
    """Raised in the job's thread when its cancel arrives (a BaseException: `except Exception` lets it pass)."""


def _job_id(request: Any) -> str:
    return str(request.get("id", "")) if isinstance(request, dict) else ""


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise `exc` in another thread at its next bytecode; None clears a pending one."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               None if exc is None else ctypes.py_object(exc))


class JobQueue(queue.Queue):
    """queue.Queue of requests (None = stop) that knows the job being run and can cancel any job by id."""

    def __init__(self, maxsize: int = 0):
        super().__init__(maxsize)
        self.current: str | None = None  # id of the running job
        self._runner: int | None = None  # the thread that took it
        self._interrupted = False

    def _get(self):  # under self.mutex: taking a job and making it current is one step
        request = self.queue.popleft()
        if request is not None:
            self.current, self._runner, self._interrupted = _job_id(request), threading.get_ident(), False
        return request

    def cancel(self, job_id: str) -> str:
        """'dropped' (it was waiting), 'interrupting' (it runs: JobCancelled is raised in it) or 'unknown'."""
        with self.mutex:
            for i, request in enumerate(self.queue):
                if request is not None and _job_id(request) == job_id:
                    del self.queue[i]
                    self.not_full.notify()
                    return "dropped"
            if job_id and self.current == job_id:
                if not self._interrupted:
                    self._interrupted = True
                    _raise_in(self._runner, JobCancelled)
                return "interrupting"
        return "unknown"

    def finish(self) -> None:
        """The running job has ended (call from its thread): an interrupt not yet delivered is cleared."""
        with self.mutex:
            if self._interrupted:
                _raise_in(self._runner, None)
            self.current, self._interrupted = None, False


PER_CALL_HOOKS = ("workbench.",)  # modules whose torch hooks live for one call (removed in a `finally`)


class HookGuard:
    """Forward hooks of `modules` before a job. `remove_new()` after an interrupted job drops what its `finally`
    blocks may not have removed: workbench's own torch hooks added during the job, and (`reset`, e.g. the bridge's
    `reset_hooks`) TransformerLens's temporary hook-point hooks. Other new hooks stay: transformers and the bridge
    wire their capture hooks once, on a model's first forward."""

    def __init__(self, modules, reset: Callable[[], None] | None = None):
        self.modules, self.reset = list(modules), reset
        self.before = {id(m): (set(m._forward_hooks), set(m._forward_pre_hooks)) for m in self.modules}

    def remove_new(self) -> int:
        if self.reset is not None:
            self.reset()
        removed = 0
        for m in self.modules:
            post, pre = self.before.get(id(m), (set(), set()))
            for hooks, keep in ((m._forward_hooks, post), (m._forward_pre_hooks, pre)):
                for key in [k for k, fn in hooks.items() if k not in keep and _per_call(fn)]:
                    del hooks[key]
                    removed += 1
        return removed


def _per_call(fn) -> bool:
    fn = getattr(fn, "func", fn)  # functools.partial
    return str(getattr(fn, "__module__", "")).startswith(PER_CALL_HOOKS)


# tqdm: "desc:  30%|███       | 3/10 [00:02<00:05,  1.20prompt/s]" (rate may read "10.05s/prompt" or "?it/s")
_TQDM = re.compile(r"([^\r\n:|]+):\s+(\d+)%\|[^|]*\|\s*(\d+)/(\d+)(?:\s*\[([^<\]]*)<([^,\]]*),\s*([^\]\r\n]*)\])?")


def _seconds(clock: str) -> float | None:
    """'01:02' or '1:02:03' → seconds; '?' → None."""
    try:
        parts = [float(p) for p in clock.strip().split(":")]
    except ValueError:
        return None
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))


def _rate(text: str) -> tuple[float | None, str]:
    """'1.20prompt/s' → (1.2, 'prompt'); '10.05s/prompt' → (0.0995, 'prompt'); '?it/s' → (None, 'it')."""
    m = re.match(r"\s*([\d.]+|\?)\s*(s/)?([^/\s,]*)", text)
    if m is None:
        return None, "it"
    value, per_item, unit = m.groups()
    unit = unit or "it"
    try:
        number = float(value)
    except ValueError:
        return None, unit
    return (1.0 / number if number else None) if per_item else number, unit


def parse_tqdm(text: str) -> dict[str, Any] | None:
    """The last tqdm bar in `text` as {message, done, total, rate, unit, eta_s}, or None."""
    found = _TQDM.findall(text)
    if not found:
        return None
    desc, _pct, done, total, _elapsed, left, rate_text = found[-1]
    rate, unit = _rate(rate_text) if rate_text else (None, "it")
    return {"message": desc.strip(), "done": int(done), "total": int(total), "rate": rate, "unit": unit,
            "eta_s": _seconds(left) if left else None}


class ProgressTee(io.TextIOBase):
    """stderr that also turns tqdm bars into progress events (counts, rate, estimate) for the current job."""

    def __init__(self, stream, current: Callable[[], str | None], send: Callable[[str, dict], None]):
        self.stream, self.current, self.send, self._last = stream, current, send, None

    def write(self, text: str) -> int:
        self.stream.write(text)
        job, bar = self.current(), parse_tqdm(text)
        if bar is not None and job:
            key = (job, bar["message"], bar["done"], bar["total"])
            if key != self._last:
                self._last = key
                self.send(job, bar)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
