"""The model worker: a long-lived process that keeps one model loaded and answers JSON-line requests.

The Dash app never imports torch; it starts `python -m workbench.worker --model NAME` and writes one
request per line on stdin, `{"id": "...", "op": "...", "args": {...}}`. The worker answers on stdout with
lines `{"id", "event": "progress" | "done" | "error", "message", "result"}`; everything else it prints
(tqdm bars, warnings) goes to stderr. Requests run one at a time, in order.

Ops: load, head_pattern, token_traces, intervene, run_analysis. Errors the user can fix
(WorkbenchError) come back as `error` events with the message; the worker keeps serving.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import sys
import time
import traceback
from typing import Any, Callable

from workbench.errors import WorkbenchError

EDIT_KINDS = ("ablate", "mean-ablate", "scale", "uniform", "reweight", "patch")


class Worker:
    def __init__(self, model_name: str, emit: Callable[[dict], None]):
        self.model_name = model_name
        self.emit = emit
        self._model = None
        self.current: str | None = None  # the job being handled (for progress from tqdm)

    @property
    def model(self):
        if self._model is None:
            from workbench import api

            self._model = api.load_model(self.model_name)
        return self._model

    def progress(self, job_id: str, message: str) -> None:
        self.emit({"id": job_id, "event": "progress", "message": message})

    def handle(self, request: dict) -> None:
        job_id = str(request.get("id", ""))
        op, args = request.get("op"), request.get("args") or {}
        started = time.perf_counter()
        self.current = job_id
        try:
            fn = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
            if fn is None:
                raise WorkbenchError(f"Unknown worker op {op!r}.")
            if self._model is None:
                self.progress(job_id, f"loading {self.model_name}")
            _ = self.model
            result = fn(job_id, **args)
            self.emit({"id": job_id, "event": "done", "result": result,
                       "seconds": round(time.perf_counter() - started, 3)})
        except WorkbenchError as exc:
            self.emit({"id": job_id, "event": "error", "message": str(exc)})
        except TypeError as exc:
            self.emit({"id": job_id, "event": "error", "message": f"Bad request for {op!r}: {exc}"})
        except Exception as exc:  # keep serving; the app shows the message, stderr keeps the trace
            traceback.print_exc(file=sys.stderr)
            self.emit({"id": job_id, "event": "error", "message": f"{type(exc).__name__}: {exc}"})
        finally:
            self.current = None

    # ---- ops ---------------------------------------------------------------------------------------
    def op_load(self, job_id: str) -> dict:
        from workbench import api
        from workbench.models import model_info

        info = model_info(self.model)
        analyses = api.list_analyses().to_dict("records")
        return {"model": info.spec.name, "n_layers": info.n_layers, "n_heads": info.n_heads, "n_ctx": info.n_ctx,
                "analyses": analyses}

    def op_head_pattern(self, job_id: str, text: str, head: str, max_tokens: int = 256) -> dict:
        from workbench import api
        from workbench.heads import HeadRef

        ref = HeadRef.parse(head)
        self.progress(job_id, f"running {self.model_name} on the prompt for {ref}")
        return api.head_pattern(self.model, text, ref.layer, ref.head, max_tokens=int(max_tokens))

    def op_token_traces(self, job_id: str, text: str, window: int = 10, quantile: float = 0.9,
                        head: str | None = None) -> dict:
        from workbench import api

        self.progress(job_id, "streaming the prompt through the model")
        return api.token_traces(self.model, text, window=int(window), quantile=float(quantile), head=head or None)

    def op_intervene(self, job_id: str, heads: str, edit: str, metric: str = "loss", alpha: float = 0.0,
                     keys: str = "0", texts: list[str] | None = None, n_prompts: int = 4, n_tokens: int = 64,
                     patch_texts: list[str] | None = None) -> dict:
        from workbench import api
        from workbench.engine.intervene import summarize
        from workbench.heads import parse_heads
        from workbench.tasks.natural_text import text_chunks

        refs = parse_heads(heads)
        natural = None if texts else (int(n_prompts), int(n_tokens))
        if texts:
            prompts = api.PromptSet.from_texts("typed", texts)
        else:
            prompts = text_chunks(self.model, *natural)
        edit_obj = build_edit(edit, refs, alpha=float(alpha), keys=keys, patch_texts=patch_texts,
                              natural=natural, model=self.model)
        self.progress(job_id, f"{len(prompts)} prompts: clean and edited runs")
        table = api.intervene(self.model, prompts, edit_obj, metric)
        records = json.loads(table.to_json(orient="records"))
        return {"rows": records, "summary": summarize(table), "edits": table.attrs.get("edits", []),
                "prompt_set": prompts.name}

    def op_run_analysis(self, job_id: str, analysis: str, params: dict | None = None) -> dict:
        from workbench import api

        self.progress(job_id, f"running {analysis} on {self.model_name}")
        scores, record = api.run_analysis(analysis, self.model, params=params or {})
        return {"run_id": record.run_id if record else None, "n_rows": len(scores)}


def build_edit(kind: str, refs, *, alpha: float, keys: str, patch_texts, natural, model):
    """An edit dataclass from the app's plain fields."""
    from workbench import api
    from workbench.tasks.natural_text import text_chunks

    if kind not in EDIT_KINDS:
        raise WorkbenchError(f"Unknown edit {kind!r}; choose one of {', '.join(EDIT_KINDS)}.")
    if not math.isfinite(alpha):
        raise WorkbenchError(f"The scale must be a finite number, got {alpha}.")
    if kind == "ablate":
        return api.AblateHead(refs, "zero")
    if kind == "mean-ablate":
        return api.AblateHead(refs, "mean")
    if kind == "scale":
        return api.ScaleHead(refs, alpha)
    if kind == "uniform":
        return api.UniformAttention(refs)
    if kind == "reweight":
        try:
            positions = tuple(int(k) for k in str(keys).replace(" ", "").split(",") if k)
        except ValueError:
            raise WorkbenchError(f"Key positions must be comma-separated integers like '0,1'; got {keys!r}.") from None
        if not positions:
            raise WorkbenchError("Re-weighting needs at least one key position, e.g. '0'.")
        return api.AttentionEdit(refs, positions, scale=alpha)
    if patch_texts:
        source = api.PromptSet.from_texts("patch-source", patch_texts)
    elif natural is not None:  # later windows of the same bundled text
        source = text_chunks(model, natural[0], natural[1], offset=20_000, name="pydoc-patch-source")
    else:
        raise WorkbenchError("Patching typed prompts needs source prompts: type one source per prompt, with "
                             "the same token count, in the patch-source box.")
    return api.PatchHead(refs, source)


_TQDM = re.compile(r"([^\r\n:|]+):\s+(\d+)%\|[^|]*\|\s*(\d+)/(\d+)")


class ProgressTee(io.TextIOBase):
    """stderr that also turns tqdm bars ("desc: 50%|██ | 1/2") into progress events for the current job."""

    def __init__(self, stream, worker: "Worker"):
        self.stream, self.worker, self._last = stream, worker, ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        matches = _TQDM.findall(text)
        if matches and self.worker.current:
            desc, pct, done, total = matches[-1]
            message = f"{desc.strip()}: {done}/{total} ({pct}%)"
            if message != self._last:
                self._last = message
                self.worker.progress(self.worker.current, message)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    ns = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = sys.stdout
    sys.stdout = sys.stderr  # only protocol lines go to the real stdout

    def emit(message: dict[str, Any]) -> None:
        try:
            out.write(json.dumps(message, default=str) + "\n")
            out.flush()
        except BrokenPipeError:  # the app went away: nothing left to answer
            os._exit(0)

    worker = Worker(ns.model, emit)
    sys.stderr = sys.stdout = ProgressTee(sys.__stderr__, worker)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            emit({"id": "", "event": "error", "message": f"bad request line: {exc}"})
            continue
        if request.get("op") == "quit":
            break
        worker.handle(request)
    return 0


if __name__ == "__main__":
    sys.exit(main())
