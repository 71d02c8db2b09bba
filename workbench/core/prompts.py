"""PromptSet: a frozen set of prompts with metadata and tokenisation settings; its sha256 fingerprint is part of
every cache key. BOS is an explicit setting (SmolLM2's is `<|im_start|>`, Gemma needs `<bos>`; default: prepend).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from workbench.core.errors import PromptError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class PromptSet:
    """Prompts plus metadata (answer tokens, spans, corrupted twins …) and tokenisation settings."""

    name: str
    texts: tuple[str, ...]
    metadata: tuple[Mapping[str, Any], ...] = ()
    prepend_bos: bool = True
    max_length: int | None = None
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    token_ids: tuple[tuple[int, ...], ...] | None = None  # exact ids (e.g. generated traces); texts for display

    def __post_init__(self):
        object.__setattr__(self, "texts", tuple(self.texts))
        if not self.name or not isinstance(self.name, str):
            raise PromptError("A prompt set needs a name (used in results and cache listings).")
        if not self.texts:
            raise PromptError(f"Prompt set {self.name!r} is empty; give at least one prompt.")
        bad = [i for i, t in enumerate(self.texts) if not isinstance(t, str) or not t.strip()]
        if bad:
            raise PromptError(f"Prompt set {self.name!r}: prompts {bad[:10]} are empty or not strings.")
        meta = tuple(dict(m) for m in self.metadata) if self.metadata else tuple({} for _ in self.texts)
        if len(meta) != len(self.texts):
            raise PromptError(f"Prompt set {self.name!r}: {len(meta)} metadata entries for "
                              f"{len(self.texts)} prompts; give one per prompt.")
        object.__setattr__(self, "metadata", meta)
        if self.token_ids is not None:
            ids = tuple(tuple(int(t) for t in seq) for seq in self.token_ids)
            if len(ids) != len(self.texts) or any(not seq for seq in ids):
                raise PromptError(f"Prompt set {self.name!r}: token_ids must hold one non-empty id list per prompt.")
            object.__setattr__(self, "token_ids", ids)
        try:
            json.dumps([self.metadata, dict(self.extra)], sort_keys=True)
        except TypeError as exc:
            raise PromptError(f"Prompt set {self.name!r}: metadata must be JSON-serialisable ({exc}).") from exc

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def fingerprint(self) -> str:
        payload = {"v": FORMAT_VERSION, "texts": self.texts, "metadata": self.metadata,
                   "prepend_bos": self.prepend_bos, "max_length": self.max_length, "extra": dict(self.extra)}
        if self.token_ids is not None:
            payload["token_ids"] = self.token_ids
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_texts(cls, name: str, texts: Sequence[str], **kwargs) -> "PromptSet":
        return cls(name=name, texts=tuple(texts), **kwargs)


def tokenize(model, prompts: PromptSet) -> list[list[int]]:
    """Token ids per prompt (BOS as the set says); fails clearly on prompts longer than the context."""
    from workbench.models.loading import model_info

    info = model_info(model)
    tok = info.tokenizer
    limit = min(info.n_ctx, prompts.max_length or info.n_ctx)
    out = []
    for i, text in enumerate(prompts.texts):
        if prompts.token_ids is not None:
            ids = list(prompts.token_ids[i])
        else:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if prompts.prepend_bos and tok.bos_token_id is not None:
                ids = [tok.bos_token_id, *ids]
        if len(ids) > limit:
            raise PromptError(f"Prompt {i} of {prompts.name!r} has {len(ids)} tokens; the limit is {limit} "
                              f"({info.spec.name} context {info.n_ctx}). Shorten it or split the text.")
        out.append(ids)
    return out


def single_token_id(model, word: str) -> int:
    """The id of `word` if it is exactly one token, else a PromptError naming how it splits."""
    from workbench.models.loading import model_info

    tok = model_info(model).tokenizer
    ids = tok(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = tok.convert_ids_to_tokens(ids)
        raise PromptError(f"{word!r} is not a single token for this tokenizer: it splits into {pieces}. "
                          "Choose another word (mind the leading space).")
    return ids[0]


def pad_batch(batch: Sequence[Sequence[int]], pad_id: int):
    """Right-pad to a [B, T] tensor plus its attention mask (causal models never see right padding)."""
    import torch

    width = max(len(ids) for ids in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask
