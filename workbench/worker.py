"""The model worker: a long-lived process that keeps one model loaded and answers JSON-line requests.

stdin: `{"id", "op", "args"}` per line, or `{"op": "cancel", "id"}`; stdout: `{"id", "event": "started" |
"progress" | "done" | "error" | "cancelled", "message", "result"}` (progress from tqdm also carries done, total,
rate, unit, eta_s); everything else goes to stderr. A reader thread queues at most `MAX_QUEUED` requests
(beyond: a "busy" error) and handles cancels at once (workbench.jobs); requests run one at a time, in order,
each checked against workbench.core.budget before work starts.
Ops: load, head_pattern, token_traces, intervene, run_analysis, head_probe and ablate_everywhere (one head across
the atlas's tasks, workbench.atlas.probe). A WorkbenchError becomes an `error` event.
"""

from __future__ import annotations

import argparse
import contextvars
import dataclasses
import json
import math
import os
import queue
import sys
import threading
import time
import traceback
from typing import Any, Callable

from workbench import api
from workbench.analyses import get_analysis
from workbench.core import budget
from workbench.core.errors import WorkbenchError
from workbench.core.heads import HeadRef, parse_heads
from workbench.core.natural_text import text_chunks
from workbench.core.prompts import tokenize
from workbench.core.validation import parse_int_list
from workbench.edits.vocabulary import kind as edit_kind
from workbench.edits.vocabulary import make_edit
from workbench.jobs import HookGuard, JobCancelled, JobQueue, ProgressTee
from workbench.models import DEFAULT_MODEL
from workbench.models.loading import model_info
from workbench.results.circuits import list_circuits

MAX_QUEUED = 32
BUSY = (f"The model worker is busy: {MAX_QUEUED} requests are already waiting. Wait for them to finish, "
        "then run this again.")


class Worker:
    def __init__(self, model_name: str, emit: Callable[[dict], None], *, device: str = "auto",
                 dtype: str = "float32", jobs: JobQueue | None = None):
        self.model_name = model_name
        self.jobs = jobs  # the queue this worker serves (None: `handle` called directly)
        self.device, self.dtype = device, dtype
        self.emit = emit
        self._model = None
        self.current: str | None = None  # the job being handled (for progress from tqdm)

    @property
    def model(self):
        if self._model is None:
            self._model = api.load_model(self.model_name, device=self.device, dtype=self.dtype)
        return self._model

    def progress(self, job_id: str, message: str, **counts) -> None:
        self.emit({"id": job_id, "event": "progress", "message": message, **counts})

    def handle(self, request: dict) -> None:
        """Run one request and answer it: started, then done | error | cancelled (a JobCancelled from
        `self.jobs.cancel`, which reaches this thread at most once per job; `finish` clears a late one)."""
        job_id = str(request.get("id", ""))
        op, args = request.get("op"), request.get("args") or {}
        started = time.perf_counter()
        outcome, guard = None, None
        for _ in range(2):
            try:
                if outcome is None:
                    self.current = job_id
                    self.emit({"id": job_id, "event": "started", "message": "started"})
                    guard = self._guard() if self._model is not None else None
                    outcome = contextvars.copy_context().run(self._outcome, job_id, op, args, started)
                if self.jobs is not None:
                    self.jobs.finish()
                break
            except JobCancelled:
                outcome = outcome or {"id": job_id, "event": "cancelled", "message": "cancelled",
                                      "seconds": round(time.perf_counter() - started, 3)}
        self.current = None
        if outcome["event"] == "cancelled" and guard is not None:
            if removed := guard.remove_new():  # hooks whose removal the interrupt cut short
                print(f"{job_id}: removed {removed} hooks left by the interrupt", file=sys.stderr)
        self.emit(outcome)

    def _guard(self) -> HookGuard:
        return HookGuard(self._modules(), reset=getattr(self._model, "reset_hooks", None))

    def _modules(self) -> list:
        twin = getattr(model_info(self._model), "stream_model", None)
        return [*self._model.modules(), *(twin.modules() if twin is not None else ())]

    def _outcome(self, job_id: str, op: Any, args: Any, started: float) -> dict:
        try:
            fn = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
            if fn is None:
                raise WorkbenchError(f"Unknown worker op {str(op)[:40]!r}.")
            if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
                raise WorkbenchError(f"Bad request for {op!r}: args must be an object of named values.")
            if self._model is None:
                self.progress(job_id, f"loading {self.model_name}")
            _ = self.model
            result = fn(job_id, **args)
            return {"id": job_id, "event": "done", "result": result,
                    "seconds": round(time.perf_counter() - started, 3)}
        except WorkbenchError as exc:
            return {"id": job_id, "event": "error", "message": str(exc)}
        except TypeError as exc:
            return {"id": job_id, "event": "error", "message": f"Bad request for {op!r}: {exc}"}
        except Exception as exc:  # keep serving; the app shows the message, stderr keeps the trace
            traceback.print_exc(file=sys.stderr)
            return {"id": job_id, "event": "error", "message": f"{type(exc).__name__}: {exc}"}

    # ---- ops ---------------------------------------------------------------------------------------
    def op_load(self, job_id: str) -> dict:
        info = model_info(self.model)
        analyses = api.list_analyses().to_dict("records")
        for row in analyses:  # defaults let the app check the budget before it submits
            row["params"] = dataclasses.asdict(get_analysis(row["analysis"]).make_params({}))
        weights = next(self.model.parameters())
        return {"model": info.spec.name, "n_layers": info.n_layers, "n_heads": info.n_heads, "n_ctx": info.n_ctx,
                "device": str(weights.device), "dtype": str(weights.dtype).removeprefix("torch."),
                "analyses": analyses, "budget": budget.BUDGET_TEXT}

    def op_head_pattern(self, job_id: str, text: str, head: str, max_tokens: int = 256) -> dict:
        ref = HeadRef.parse(_text(head, "head", 20))
        self.progress(job_id, f"running {self.model_name} on the prompt for {ref}")
        return api.head_pattern(self.model, _text(text, "text"), ref.layer, ref.head,
                                max_tokens=_count(max_tokens, "max_tokens", 1024))

    def op_attention_window(self, job_id: str, text: str, layer: int, page: int = 0, size: int = 512) -> dict:
        """One page of the attention text view (workbench.engine.window; the first page of a prompt prefills)."""
        from workbench.engine.probe import MAX_TEXT_CHARS

        self.progress(job_id, f"layer {layer}, page {page + 1 if isinstance(page, int) else page}")
        return api.attention_window(self.model, _text(text, "text", MAX_TEXT_CHARS), layer, page, size)

    def op_token_traces(self, job_id: str, text: str, window: int = 10, quantile: float = 0.9,
                        head: str | None = None) -> dict:
        quantile = float(quantile)
        if not 0.0 < quantile < 1.0:
            raise WorkbenchError(f"quantile must be between 0 and 1; got {quantile}.")
        self.progress(job_id, "streaming the prompt through the model")
        return api.token_traces(self.model, _text(text, "text"), window=_count(window, "window", 4096),
                                quantile=quantile, head=_text(head, "head", 20) if head else None)

    def op_intervene(self, job_id: str, heads: str, edit: str, metric: str = "loss", alpha: float = 0.0,
                     keys: str = "0", texts: list[str] | None = None, n_prompts: int = 4, n_tokens: int = 64,
                     patch_texts: list[str] | None = None, source: str | None = None) -> dict:
        """An intervention on a prompt set of workbench.edits.sources (task sets patch clean ← corrupted twin),
        saved as an "intervention" run of the catalog."""
        from workbench.edits import sources
        from workbench.edits.intervene import save_intervention, summarize

        started = time.perf_counter()
        refs = parse_heads(_text(heads, "heads", 2000))
        texts, patch_texts = _texts(texts, "texts"), _texts(patch_texts, "patch_texts")
        name = _text(source, "source", 40) if source else ("typed" if texts else "natural")
        metric, kind, keys = _text(metric, "metric", 40), _text(edit, "edit", 40), _text(keys, "keys", 200)
        n = len(texts) if name == "typed" and texts else _count(n_prompts, "n_prompts", budget.MAX_PROMPTS)
        tokens = _count(n_tokens, "n_tokens", budget.MAX_EDIT_TOKENS)
        if name in ("natural", "niah"):
            budget.check_edit_lengths([tokens] * n)
        sources.check_metric(name, metric, sources.parse_typed(texts)[1] if name == "typed" and texts else None)
        prompts, twins = sources.build(self.model, name, n=n, n_tokens=tokens, texts=texts)
        lengths = [len(ids) for ids in tokenize(self.model, prompts)]
        budget.check_edit_lengths(lengths)
        if twins is not None and "source" in edit_kind(kind).params and not patch_texts:
            edit_obj = make_edit(kind, refs, source=twins)
        else:
            edit_obj = build_edit(kind, refs, alpha=float(alpha), keys=keys,
                                  patch_texts=patch_texts, natural=(n, tokens) if name == "natural" else None,
                                  model=self.model)
        batch = budget.edit_batch_size(max(lengths), model_info(self.model).n_heads)
        self.progress(job_id, f"{len(prompts)} prompts: clean and edited runs")
        table = api.intervene(self.model, prompts, edit_obj, metric, batch_size=batch)
        patched = None if kind != "patch" else "typed sources" if patch_texts else \
            "corrupted twins" if twins is not None else "later windows of the text"
        params = {"heads": ",".join(map(str, refs)), "edit": kind, "alpha": float(alpha), "keys": keys,
                  "metric": metric, "source": name, "n": len(prompts),
                  "tokens": tokens if name in ("natural", "niah") else None, "patched_from": patched}
        params = {k: v for k, v in params.items() if v is not None and (k != "alpha" or kind in ("scale", "reweight"))
                  and (k != "keys" or kind == "reweight")}
        record = save_intervention(self.model, prompts, table, params, seconds=time.perf_counter() - started)
        records = json.loads(table.to_json(orient="records"))
        return {"rows": records, "summary": summarize(table), "edits": table.attrs.get("edits", []),
                "prompt_set": prompts.name, "run_id": record.run_id, "params": params}

    def op_head_probe(self, job_id: str, head: str) -> dict:
        from workbench.atlas.probe import head_probe

        return head_probe(self.model, _text(head, "head", 20), progress=lambda m: self.progress(job_id, m))

    def op_ablate_everywhere(self, job_id: str, head: str, mode: str = "mean") -> dict:
        from workbench.atlas.probe import ablate_everywhere

        return ablate_everywhere(self.model, _text(head, "head", 20), _text(mode, "mode", 10),
                                 progress=lambda m: self.progress(job_id, m))

    def op_run_analysis(self, job_id: str, analysis: str, params: dict | None = None) -> dict:
        params = check_params(params)
        spec = get_analysis(_text(analysis, "analysis", 80))
        typed = spec.make_params(params)
        budget.check_analysis(spec.name, dataclasses.asdict(typed))
        self.progress(job_id, f"running {analysis} on {self.model_name}")
        scores, record = api.run_analysis(spec.name, self.model, params=typed)
        return {"run_id": record.run_id if record else None, "n_rows": len(scores)}


def _text(value: Any, name: str, limit: int = budget.MAX_PROMPT_CHARS) -> str:
    if not isinstance(value, str):
        raise WorkbenchError(f"{name} must be text; got {type(value).__name__}.")
    if len(value) > limit:
        raise WorkbenchError(f"{name} has {len(value):,} characters; the limit is {limit:,}.")
    return value


def _texts(value: Any, name: str) -> list[str] | None:
    if value in (None, []):
        return None
    if not isinstance(value, list) or len(value) > budget.MAX_PROMPTS:
        raise WorkbenchError(f"{name} must be a list of at most {budget.MAX_PROMPTS} prompts.")
    return [_text(v, name) for v in value]


def _count(value: Any, name: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or not 1 <= value <= high:
        raise WorkbenchError(f"{name} must be a whole number between 1 and {high:,}; got {str(value)[:40]!r}.")
    return int(value)


def check_params(params: Any) -> dict[str, str]:
    """Analysis parameters from the app: short strings by name; paths refused, references must be saved circuits."""
    if params is None:
        return {}
    if not isinstance(params, dict) or len(params) > 32:
        raise WorkbenchError("params must be an object of at most 32 name=value pairs.")
    out = {}
    for key, value in params.items():
        if not isinstance(key, str) or not key.isidentifier() or not isinstance(value, (str, int, float, bool)):
            raise WorkbenchError(f"Parameter {str(key)[:40]!r} must be a name with a plain value.")
        out[key] = _text(str(value), f"parameter {key}", 200)
    budget.refuse_paths(out)
    if out.get("reference"):
        names = set(list_circuits()["name"])
        if out["reference"] not in names:
            raise budget.PathRefused(f"reference={out['reference']!r} is not a saved circuit; name one of: "
                                     f"{', '.join(sorted(names)) or 'none saved'}.")
    return out


def build_edit(kind: str, refs, *, alpha: float, keys: str, patch_texts, natural, model):
    """An edit dataclass from the app's plain fields (the kinds of workbench.edits.vocabulary)."""

    if not math.isfinite(alpha):
        raise WorkbenchError(f"The scale must be a finite number, got {alpha}.")
    source = None
    if "source" in edit_kind(kind).params:
        if patch_texts:
            source = api.PromptSet.from_texts("patch-source", patch_texts)
        elif natural is not None:  # later windows of the same bundled text
            source = text_chunks(model, natural[0], natural[1], offset=20_000, name="pydoc-patch-source")
        else:
            raise WorkbenchError("Patching typed prompts needs source prompts: type one source per prompt, with "
                                 "the same token count, in the patch-source box.")
    positions = parse_int_list(str(keys).replace(" ", ""), "Key positions", lo=-budget.MAX_EDIT_TOKENS)
    return make_edit(kind, refs, alpha=alpha, keys=positions, source=source)


def read_requests(stream, jobs: "queue.Queue", emit: Callable[[dict], None]) -> None:
    """Drain `stream` into `jobs` (None at the end); a request that finds the queue full is answered busy;
    `{"op": "cancel", "id": X}` is handled at once: a waiting X is dropped and answered cancelled, a running X is
    interrupted (it answers cancelled itself), a finished or unknown X is ignored."""
    for line in stream:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request must be a JSON object")
        except ValueError as exc:
            emit({"id": "", "event": "error", "message": f"bad request line: {exc}"})
            continue
        if request.get("op") == "quit":
            break
        if request.get("op") == "cancel":
            job_id = str(request.get("id", ""))
            if isinstance(jobs, JobQueue) and jobs.cancel(job_id) == "dropped":
                emit({"id": job_id, "event": "cancelled", "message": "cancelled before it started", "seconds": 0.0})
            continue
        try:
            jobs.put_nowait(request)
        except queue.Full:
            emit({"id": str(request.get("id", "")), "event": "error", "message": BUSY, "busy": True})
    jobs.put(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-queued", type=int, default=MAX_QUEUED)
    ns = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = sys.stdout
    sys.stdout = sys.stderr  # only protocol lines go to the real stdout
    lock = threading.Lock()  # two threads emit: the job runner and the stdin reader (busy and cancel answers)

    def emit(message: dict[str, Any]) -> None:
        try:
            with lock:
                out.write(json.dumps(message, default=str) + "\n")
                out.flush()
        except BrokenPipeError:  # the app went away: nothing left to answer
            os._exit(0)

    jobs = JobQueue(maxsize=max(1, ns.max_queued))
    worker = Worker(ns.model, emit, device=ns.device, dtype=ns.dtype, jobs=jobs)
    sys.stderr = sys.stdout = ProgressTee(sys.__stderr__, lambda: worker.current,
                                          lambda job, bar: worker.progress(job, **bar))
    threading.Thread(target=read_requests, args=(sys.stdin, jobs, emit), daemon=True).start()
    serve(worker, jobs)
    return 0


def serve(worker: Worker, jobs: JobQueue) -> None:
    """Run `jobs` one at a time in this thread (the one a cancel interrupts) until None."""
    while (request := jobs.get()) is not None:
        worker.handle(request)


if __name__ == "__main__":
    sys.exit(main())
