"""Per-prompt metrics on logits, for before/after tables: logit difference, answer log-prob, loss.

A metric maps `(logits[T, V], ids[T], metadata)` of one prompt (its real tokens only) to a float.
Answer and wrong-answer tokens come from the prompt's metadata (`answer`, `wrong`: strings that must
be single tokens, or `answer_id`, `wrong_id`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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


def _logit_diff(logits, ids, meta, tok):
    """logit(answer) − logit(wrong), or − max over `wrong_ids` when a prompt has several wrong answers."""
    last = logits[len(ids) - 1]
    if "wrong_ids" in meta:
        return last[_token(meta, "answer", tok)] - last[list(meta["wrong_ids"])].max()
    return last[_token(meta, "answer", tok)] - last[_token(meta, "wrong", tok)]


def _answer_logprob(logits, ids, meta, tok):
    return torch.log_softmax(logits[len(ids) - 1].float(), -1)[_token(meta, "answer", tok)]


def _loss(logits, ids, meta, tok):
    if len(ids) < 2:
        raise PromptError("Loss needs prompts of at least two tokens.")
    target = torch.as_tensor(ids[1:])
    return torch.nn.functional.cross_entropy(logits[: len(ids) - 1].float(), target)


LOGIT_DIFF = Metric("logit_diff", _logit_diff)
ANSWER_LOGPROB = Metric("answer_logprob", _answer_logprob)
LOSS = Metric("loss", _loss, higher_is="worse")
METRICS = {m.name: m for m in (LOGIT_DIFF, ANSWER_LOGPROB, LOSS)}


def get_metric(name: "str | Metric") -> Metric:
    if isinstance(name, Metric):
        return name
    if name not in METRICS:
        raise PromptError(f"Unknown metric {name!r}; choose one of {', '.join(METRICS)}.")
    return METRICS[name]
