"""Greater-than (Hanna et al. 2023): "The war lasted from the year 1732 to the year 17" → the tens digit (one
SmolLM2 token): good = digits above the start's tens digit, bad = below. Corrupted twin: "…01" (no lower
bound). Metric: Σ p(good) − Σ p(bad).
"""

from __future__ import annotations

import random

from workbench.core.contrast import ContrastSet, single_token_ids
from workbench.core.errors import PromptError
from workbench.core.prompts import PromptSet
from workbench.models.loading import model_info

NOUNS = ("war", "expedition", "drought", "reign", "project", "famine", "treaty", "strike", "voyage", "campaign")
TEMPLATE = "The {noun} lasted from the year {century}{start:02d} to the year {century}"


def make(model, n: int = 50, seed: int = 0) -> ContrastSet:
    """`n` prompts with start years whose tens digit is 2..7 (room on both sides)."""
    tok = model_info(model).tokenizer
    digits = single_token_ids(tok, [str(d) for d in range(10)], "digits")
    prefix = tok("year 1732", add_special_tokens=False)["input_ids"]
    if not all(len(tok(str(d), add_special_tokens=False)["input_ids"]) == 1 for d in range(10)) or len(prefix) < 5:
        raise PromptError("greater-than here assumes a tokenizer that writes each digit as its own token.")
    rng = random.Random(seed)
    clean, corrupt, meta = [], [], []
    for _ in range(n):
        noun, century, start = rng.choice(NOUNS), rng.randint(11, 18), rng.randint(20, 79)
        tens = start // 10
        clean.append(TEMPLATE.format(noun=noun, century=century, start=start))
        corrupt.append(TEMPLATE.format(noun=noun, century=century, start=1))
        meta.append({"start": start, "good_ids": [digits[str(d)] for d in range(tens + 1, 10)],
                     "bad_ids": [digits[str(d)] for d in range(0, tens)]})
    name = f"greater-than-{n}-s{seed}"
    return ContrastSet(name, PromptSet.from_texts(name, clean, metadata=meta),
                       PromptSet.from_texts(f"{name}-01", corrupt, metadata=meta), "prob_diff")
