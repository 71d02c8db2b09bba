"""One head across the atlas's tasks, for its profile (issue 16); run in the model worker or a notebook.

`ablate_everywhere(model, head, mode="mean")`: the head ablated (`AblateHead`, the one edit mechanism) on
N_PROMPTS prompts of each task; per task the mean metric before and after, `delta = after − before` and
`worse_by` (delta signed so that > 0 means the task got worse without the head). Prompts and the clean metric are
built once per model and task in a process (the worker), so a second head costs only the edited forwards.
`head_probe(model, head)`: the first of those prompts for each task, its tokens and the head's post-softmax
attention rows `A[q, 0..q]` (at most MAX_TOKENS tokens: BOS + the last ones), and the position each task is scored at.

Tasks and their metrics:
- ioi, colored_objects, docstring: logit_diff = logit(answer) − max logit(wrong) at the last token; greater_than:
  prob_diff = Σ p(later tens digit) − Σ p(earlier) (workbench.analyses.circuits.tasks, Wang et al. 2022,
  Hanna et al. 2023, Heimersheim & Janiak 2023);
- repeated_tokens: loss on the second copy of [BOS] + r + r (Olsson et al. 2022; induction_heads);
- natural_text: next-token loss on windows of the bundled pydoc text;
- niah: loss of the needle's answer tokens after the question, in a short haystack (Wu et al. 2024).
A mean ablation replaces the head's output by its mean over the same task's prompts at every position (the
task's own prompts, not a corrupted twin set: one reference per task, no extra forwards). A task the model's
tokenizer cannot build (IOI names that are not single tokens on a byte tokenizer …) is listed as skipped.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch

from workbench.core.errors import WorkbenchError
from workbench.core.heads import HeadRef, check_heads
from workbench.core.prompts import PromptSet, tokenize
from workbench.edits.apply import run_metric
from workbench.edits.kinds import AblateHead
from workbench.engine.metrics import LOSS, Metric, metric_values
from workbench.engine.probe import last_window, pattern_of, token_labels
from workbench.models.loading import model_info

N_PROMPTS = 4  # prompts per task for the ablation
MAX_TOKENS = 256  # tokens shown per example prompt
HALF_LEN = 24  # repeated random tokens: 2 × 24 + BOS
TEXT_TOKENS = 64  # natural text window
NIAH_TOKENS = 256  # needle-in-a-haystack prompt length
LABELS = {"ioi": "IOI", "colored_objects": "Colored Objects", "greater_than": "Greater-than",
          "docstring": "Docstring", "repeated_tokens": "Repeated random tokens", "natural_text": "Natural text",
          "niah": "Needle in a haystack"}


def _contrast_metric(name: str) -> Metric:
    """A contrast set's metric (logit_diff | prob_diff) at a prompt's last token, as a per-prompt Metric."""
    return Metric(name, lambda logits, ids, meta, tok: metric_values(logits[len(ids) - 1][None], [meta], name)[0])


def _answer_loss(logits, ids, meta, tok):
    """Mean cross-entropy of the last `answer_tokens` tokens (the needle's answer after the question)."""
    n = int(meta["answer_tokens"])
    return torch.nn.functional.cross_entropy(logits[len(ids) - n - 1: len(ids) - 1].float(),
                                             torch.as_tensor(ids[len(ids) - n:]))


ANSWER_LOSS = Metric("answer_loss", _answer_loss, higher_is="worse")


def _contrast(task: str):
    def build(model, n: int) -> tuple[PromptSet, Metric]:
        from workbench.analyses.circuits.tasks import make_task

        contrast = make_task(model, task, n, seed=0)
        return contrast.clean, _contrast_metric(contrast.metric)
    return build


def _repeated(model, n: int) -> tuple[PromptSet, Metric]:
    from workbench.analyses.induction_heads.checks import REPEATED_HALF_LOSS
    from workbench.analyses.induction_heads.prompts import repeated_tokens

    return repeated_tokens(model, n, HALF_LEN, seed=0), REPEATED_HALF_LOSS


def _natural(model, n: int) -> tuple[PromptSet, Metric]:
    from workbench.core.natural_text import text_chunks

    return text_chunks(model, n, TEXT_TOKENS), LOSS


def _niah(model, n: int) -> tuple[PromptSet, Metric]:
    """Short NIAH prompts (depths 25/50/75 %, each needle) with the answer appended, scored on its tokens."""
    from workbench.analyses.retrieval_heads.prompts import NEEDLES, niah_prompts

    tok = model_info(model).tokenizer
    fmt = "chat" if getattr(tok, "chat_template", None) else "paper"
    base = niah_prompts(model, (NIAH_TOKENS,), (25.0, 50.0, 75.0), NEEDLES, fmt=fmt, max_new_tokens=16)
    texts, meta = [], []
    for text, m in list(zip(base.texts, base.metadata, strict=True))[:n]:
        full = f"{text} {m['answer']}"
        count = lambda s: len(tok(s, add_special_tokens=False)["input_ids"])  # noqa: E731
        texts.append(full)
        meta.append({**m, "answer_tokens": count(full) - count(text)})
    return PromptSet(f"niah-answer-{len(texts)}x{NIAH_TOKENS}", texts, meta, prepend_bos=base.prepend_bos,
                     max_length=model_info(model).n_ctx), ANSWER_LOSS


TASKS: dict[str, Callable[[object, int], tuple[PromptSet, Metric]]] = {
    "ioi": _contrast("ioi"), "colored_objects": _contrast("colored_objects"),
    "greater_than": _contrast("greater_than"), "docstring": _contrast("docstring"),
    "repeated_tokens": _repeated, "natural_text": _natural, "niah": _niah}


def _head(model, head) -> HeadRef:
    ref = HeadRef.parse(head)
    info = model_info(model)
    check_heads([ref], info.n_layers, info.n_heads)
    return ref


@lru_cache(maxsize=32)
def task_prompts(model, task: str, n: int = N_PROMPTS) -> tuple[PromptSet, Metric]:
    """A task's `n` prompts and metric, built once per model in this process (the worker keeps its model)."""
    return TASKS[task](model, n)


@lru_cache(maxsize=32)
def _clean(model, task: str, n: int) -> tuple[float, ...]:
    """The task's metric per prompt on the unedited model (the same for every head)."""
    prompts, metric = task_prompts(model, task, n)
    return tuple(run_metric(model, prompts, metric, batch_size=n))


def _tasks(model, n: int):
    """(task, prompts, metric) of every task the model can build, then (task, None, reason) for the others."""
    for task in TASKS:
        try:
            yield task, *task_prompts(model, task, n)
        except WorkbenchError as exc:
            yield task, None, str(exc)


def head_probe(model, head: "str | HeadRef", *, progress: Callable[[str], None] | None = None) -> dict:
    """{head, tasks: [{task, label, metric, tokens, rows, query, offset, n_tokens, bos}], skipped: [{task, reason}]}:
    `rows[q]` = the head's attention from token q to tokens 0..q (4 decimals); `query` = the scored position."""
    ref = _head(model, head)
    info = model_info(model)
    out, skipped = [], []
    for task, prompts, metric in _tasks(model, N_PROMPTS):
        if prompts is None:
            skipped.append({"task": task, "label": LABELS[task], "reason": metric})
            continue
        if progress:
            progress(f"{LABELS[task]}: {ref}'s attention")
        ids = tokenize(model, prompts)[0]
        has_bos = bool(ids) and ids[0] == info.tokenizer.bos_token_id
        window, start = last_window(ids, MAX_TOKENS, has_bos)
        pattern = pattern_of(model, window, ref.layer, ref.head)
        answer = int(prompts.metadata[0].get("answer_tokens", 0))
        out.append({"task": task, "label": LABELS[task], "metric": metric.name,
                    "tokens": token_labels(info.tokenizer, window),
                    "rows": [[round(float(x), 4) for x in pattern[q, :q + 1]] for q in range(len(window))],
                    "query": len(window) - 1 - answer, "offset": start, "n_tokens": len(ids), "bos": has_bos})
    return {"head": str(ref), "tasks": out, "skipped": skipped}


def ablate_everywhere(model, head: "str | HeadRef", mode: str = "mean", *, n_prompts: int = N_PROMPTS,
                      progress: Callable[[str], None] | None = None) -> dict:
    """{head, mode, rows: [{task, label, metric, higher_is, n_prompts, before, after, delta, worse_by}], skipped}."""
    ref = _head(model, head)
    if mode not in ("mean", "zero"):
        raise WorkbenchError(f"Ablation mode must be 'mean' or 'zero', got {str(mode)[:20]!r}.")
    rows, skipped = [], []
    for task, prompts, metric in _tasks(model, n_prompts):
        if prompts is None:
            skipped.append({"task": task, "label": LABELS[task], "reason": metric})
            continue
        if progress:
            progress(f"{LABELS[task]}: {len(prompts)} prompts with {ref} ablated")
        clean = _clean(model, task, n_prompts)
        edited = run_metric(model, prompts, metric, [AblateHead((ref,), mode)], batch_size=n_prompts)
        before, after = sum(clean) / len(clean), sum(edited) / len(edited)
        sign = 1.0 if metric.higher_is == "worse" else -1.0
        rows.append({"task": task, "label": LABELS[task], "metric": metric.name, "higher_is": metric.higher_is,
                     "n_prompts": len(prompts), "before": before, "after": after, "delta": after - before,
                     "worse_by": sign * (after - before)})
    return {"head": str(ref), "mode": mode, "rows": rows, "skipped": skipped}
