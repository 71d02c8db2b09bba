"""Contrast sets: clean prompts, their corrupted twins (same token length), answer tokens and a metric.

- `logit_diff` (`answer_id`, `wrong_ids`): logit(answer) − max_w logit(w) at the last position (IOI, Wang et
  al. 2022); accuracy: metric > 0.
- `prob_diff` (`good_ids`, `bad_ids`): Σ p(good) − Σ p(bad) (greater-than, Hanna et al. 2023).
Corrupted runs are scored with the clean tokens. `flag_unchanged_answers` uses `corrupt_answer_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from workbench.core.errors import PromptError
from workbench.core.prompts import PromptSet, tokenize

METRICS = ("logit_diff", "prob_diff")


@dataclass(frozen=True)
class ContrastSet:
    name: str
    clean: PromptSet
    corrupt: PromptSet
    metric: str = "logit_diff"

    def __post_init__(self):
        if self.metric not in METRICS:
            raise PromptError(f"Unknown contrast metric {self.metric!r}; choose one of {', '.join(METRICS)}.")
        if len(self.clean) != len(self.corrupt):
            raise PromptError(f"{self.name}: {len(self.clean)} clean prompts but {len(self.corrupt)} corrupted "
                              "twins; give one twin per prompt.")
        need = ("answer_id", "wrong_ids") if self.metric == "logit_diff" else ("good_ids", "bad_ids")
        missing = [i for i, m in enumerate(self.clean.metadata) if any(k not in m for k in need)]
        if missing:
            raise PromptError(f"{self.name}: clean prompts {missing[:10]} lack {' and '.join(need)} in their "
                              "metadata (build them with workbench.analyses.circuits.tasks).")

    def __len__(self) -> int:
        return len(self.clean)

    def subset(self, rows: Sequence[int], suffix: str) -> "ContrastSet":
        rows = list(rows)
        pick = lambda ps: PromptSet(name=f"{ps.name}-{suffix}", texts=[ps.texts[i] for i in rows],  # noqa: E731
                                    metadata=[ps.metadata[i] for i in rows], prepend_bos=ps.prepend_bos,
                                    extra=ps.extra)
        return ContrastSet(f"{self.name}-{suffix}", pick(self.clean), pick(self.corrupt), self.metric)

    def as_prompts(self) -> PromptSet:
        """The clean prompts carrying their twins and metric in `extra` (what registered analyses receive)."""
        extra = {**dict(self.clean.extra), "contrast": {"name": self.name, "metric": self.metric,
                                                         "corrupt_name": self.corrupt.name,
                                                         "corrupt_texts": list(self.corrupt.texts)}}
        return PromptSet(name=self.clean.name, texts=self.clean.texts, metadata=self.clean.metadata,
                         prepend_bos=self.clean.prepend_bos, extra=extra)

    @classmethod
    def from_prompts(cls, prompts: PromptSet) -> "ContrastSet":
        spec = dict(prompts.extra).get("contrast")
        if not spec:
            raise PromptError(f"Prompt set {prompts.name!r} has no corrupted twins; build it with a task in "
                              "workbench.analyses.circuits.tasks (ioi, colored_objects, greater_than, docstring) or "
                              "ContrastSet(...).as_prompts().")
        extra = {k: v for k, v in dict(prompts.extra).items() if k != "contrast"}
        clean = PromptSet(name=prompts.name, texts=prompts.texts, metadata=prompts.metadata,
                          prepend_bos=prompts.prepend_bos, extra=extra)
        corrupt = PromptSet(name=spec["corrupt_name"], texts=spec["corrupt_texts"], metadata=prompts.metadata,
                            prepend_bos=prompts.prepend_bos, extra=extra)
        return cls(spec["name"], clean, corrupt, spec["metric"])

    def split(self, held_out: float = 0.5, seed: int = 0) -> tuple["ContrastSet", "ContrastSet"]:
        """(fit, held-out) halves by a seeded permutation."""
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).tolist()
        cut = max(1, min(len(self) - 1, round(len(self) * (1 - held_out))))
        return self.subset(sorted(order[:cut]), "fit"), self.subset(sorted(order[cut:]), "heldout")


def aligned_ids(model, contrast: ContrastSet) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of clean and corrupted prompts; fails listing pairs whose lengths differ."""
    clean, corrupt = tokenize(model, contrast.clean), tokenize(model, contrast.corrupt)
    bad = [i for i, (a, b) in enumerate(zip(clean, corrupt, strict=True)) if len(a) != len(b)]
    if bad:
        raise PromptError(f"{contrast.name}: corrupted twins {bad[:10]} differ in token length from their clean "
                          "prompts; patching needs twins that align token by token.")
    same = [i for i, (a, b) in enumerate(zip(clean, corrupt, strict=True)) if a == b]
    if same:
        raise PromptError(f"{contrast.name}: corrupted twins {same[:10]} are identical to their clean prompts; "
                          "a corruption must change the prompt.")
    return clean, corrupt


def flag_unchanged_answers(contrast: ContrastSet) -> list[int]:
    """Pairs whose corrupted twin keeps the clean answer (`corrupt_answer_id == answer_id`)."""
    return [i for i, m in enumerate(contrast.clean.metadata)
            if "corrupt_answer_id" in m and m["corrupt_answer_id"] == m.get("answer_id")]


def single_token_ids(tokenizer, words: Sequence[str], what: str) -> dict[str, int]:
    """`{word: id}` for words that are one token each; otherwise one error listing every word that splits."""
    ids, bad = {}, []
    for word in words:
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(pieces) == 1:
            ids[word] = pieces[0]
        else:
            bad.append(f"{word!r} → {tokenizer.convert_ids_to_tokens(pieces)}")
    if bad:
        raise PromptError(f"These {what} are not single tokens for this tokenizer: {'; '.join(bad)}. "
                          f"Remove them or pick other {what} (mind the leading space).")
    return ids
