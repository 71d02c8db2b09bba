"""Repeated random tokens (Olsson et al. 2022): `[BOS] + r + r`, r = R token ids drawn uniformly, seeded,
never a special token (BOS, EOS, padding, chat markers, added tokens).
"""

from __future__ import annotations

from workbench.core.errors import PromptError
from workbench.core.prompts import PromptSet
from workbench.models.loading import model_info


def ordinary_token_ids(tokenizer, vocab_size: int) -> list[int]:
    """Ids `0 … vocab_size−1` that are not special tokens of `tokenizer`."""
    special = set(int(i) for i in tokenizer.all_special_ids)
    special |= {int(i) for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items()
                if getattr(tok, "special", False)}
    return [i for i in range(vocab_size) if i not in special]


def repeated_tokens(model, n_prompts: int = 8, half_len: int = 64, seed: int = 0) -> PromptSet:
    """`n_prompts` sequences `[BOS] + r + r` of 2·half_len + 1 tokens (metadata: half_len, seed)."""
    import torch

    info = model_info(model)
    if n_prompts < 1 or half_len < 2:
        raise PromptError(f"Repeated tokens need n_prompts >= 1 and half_len >= 2; got {n_prompts}, {half_len}.")
    if 2 * half_len + 1 > info.n_ctx:
        raise PromptError(f"2 × {half_len} tokens + BOS exceed the context of {info.spec.name} ({info.n_ctx}).")
    tok = info.tokenizer
    vocab = min(len(tok), int(info.hf_config.vocab_size))
    pool = torch.tensor(ordinary_token_ids(tok, vocab))
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    gen = torch.Generator().manual_seed(int(seed))
    seqs = []
    for _ in range(n_prompts):
        half = pool[torch.randint(len(pool), (half_len,), generator=gen)].tolist()
        seqs.append(([bos] if bos is not None else []) + half + half)
    texts = tuple(f"repeated random tokens {i} (seed {seed}): " + tok.decode(s[1:1 + min(half_len, 12)])
                  for i, s in enumerate(seqs))
    meta = tuple({"half_len": half_len, "seed": int(seed), "bos": bos is not None} for _ in seqs)
    return PromptSet(name=f"repeated-{n_prompts}x{half_len}-s{seed}", texts=texts, metadata=meta,
                     token_ids=tuple(tuple(s) for s in seqs), max_length=info.n_ctx,
                     description="[BOS] + r + r, r uniformly random non-special token ids")
