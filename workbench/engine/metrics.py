"""Per-prompt metrics `(logits[T, V], ids[T], metadata) -> float`: logit difference, answer log-prob, loss.

`logit_diff = logit[answer] − max_w logit[w]` (Wang et al. 2022); tokens from metadata `answer`/`wrong`
(single-token strings) or `answer_id`/`wrong_id`. `prob_diff = Σ P(good) − Σ P(bad)` (greater-than, Hanna et al.
2023) from metadata `good_ids`/`bad_ids`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from workbench.core.errors import PromptError


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[torch.Tensor, list[int], dict, object], float]
    higher_is: str = "better"

    def __call__(self, logits, ids, meta, tokenizer) -> float:
        return float(self.fn(logits, ids, meta, tokenizer))


def _token(meta: dict, key: str, tokenizer) -> int:
    if f"{key}_id" in meta:
        return int(meta[f"{key}_id"])
    if key not in meta:
        raise PromptError(f"This metric needs '{key}' (a single-token string) in every prompt's metadata.")
    ids = tokenizer(meta[key], add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise PromptError(f"{meta[key]!r} is not a single token (splits into {len(ids)}); "
                          "use a word that is one token, with its leading space.")
    return ids[0]


def logit_diff(last: torch.Tensor, answer: int, wrong: "int | Sequence[int]") -> torch.Tensor:
    """`logit[answer] − max_w logit[w]` of one position's logits `[V]` (one wrong id, or several)."""
    return last[answer] - last[[wrong] if isinstance(wrong, numbers.Integral) else list(wrong)].max()


def _logit_diff(logits, ids, meta, tok):
    """logit(answer) − logit(wrong), or − max over `wrong_ids` when a prompt has several wrong answers."""
    answer = _token(meta, "answer", tok)
    wrong = meta["wrong_ids"] if "wrong_ids" in meta else _token(meta, "wrong", tok)
    return logit_diff(logits[len(ids) - 1], answer, wrong)


def _answer_logprob(logits, ids, meta, tok):
    return torch.log_softmax(logits[len(ids) - 1].float(), -1)[_token(meta, "answer", tok)]


def _prob_diff(logits, ids, meta, tok):
    if "good_ids" not in meta or "bad_ids" not in meta:
        raise PromptError("prob_diff needs 'good_ids' and 'bad_ids' in every prompt's metadata (greater-than).")
    probs = torch.softmax(logits[len(ids) - 1].float(), -1)
    return probs[list(meta["good_ids"])].sum() - probs[list(meta["bad_ids"])].sum()


def _loss(logits, ids, meta, tok):
    if len(ids) < 2:
        raise PromptError("Loss needs prompts of at least two tokens.")
    target = torch.as_tensor(ids[1:])
    return torch.nn.functional.cross_entropy(logits[: len(ids) - 1].float(), target)


LOGIT_DIFF = Metric("logit_diff", _logit_diff)
ANSWER_LOGPROB = Metric("answer_logprob", _answer_logprob)
PROB_DIFF = Metric("prob_diff", _prob_diff)
LOSS = Metric("loss", _loss, higher_is="worse")
METRICS = {m.name: m for m in (LOGIT_DIFF, ANSWER_LOGPROB, PROB_DIFF, LOSS)}


def metric_values(logits_last: torch.Tensor, metadata: Sequence[dict], metric: str) -> torch.Tensor:
    """A contrast set's per-prompt metric `[B]` from last logits `[B, V]` (differentiable; see core.contrast)."""
    if metric == "logit_diff":
        return torch.stack([logit_diff(logits_last[i], m["answer_id"], m["wrong_ids"]) for i, m in enumerate(metadata)])
    probs = torch.softmax(logits_last.float(), dim=-1)
    good = torch.stack([probs[i, list(m["good_ids"])].sum() for i, m in enumerate(metadata)])
    bad = torch.stack([probs[i, list(m["bad_ids"])].sum() for i, m in enumerate(metadata)])
    return good - bad


def get_metric(name: "str | Metric") -> Metric:
    if isinstance(name, Metric):
        return name
    if name not in METRICS:
        raise PromptError(f"Unknown metric {name!r}; choose one of {', '.join(METRICS)}.")
    return METRICS[name]
