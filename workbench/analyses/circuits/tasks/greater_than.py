"""Greater-than (Hanna et al. 2023): "The war lasted from the year 1732 to the year 17" → the tens digit (one
SmolLM2 token): good = digits above the start's tens digit, bad = below. Corrupted twin: "…01" (no lower
bound). Metric: Σ p(good) − Σ p(bad).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from workbench.core.errors import PromptError
from workbench.core.prompts import PromptSet

if TYPE_CHECKING:
    from workbench.core.contrast import ContrastSet

NOUNS = ("war", "expedition", "drought", "reign", "project", "famine", "treaty", "strike", "voyage", "campaign")
TEMPLATE = "The {noun} lasted from the year {century}{start:02d} to the year {century}"


def draw(n: int = 50, seed: int = 0) -> list[dict]:
    """The strings of `n` prompts (torch-free): clean, corrupt, start (its tens digit splits good from bad)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        noun, century, start = rng.choice(NOUNS), rng.randint(11, 18), rng.randint(20, 79)
        rows.append({"clean": TEMPLATE.format(noun=noun, century=century, start=start),
                     "corrupt": TEMPLATE.format(noun=noun, century=century, start=1), "start": start})
    return rows


def make(model, n: int = 50, seed: int = 0) -> ContrastSet:
    """`n` prompts with start years whose tens digit is 2..7 (room on both sides)."""
    from workbench.core.contrast import ContrastSet, single_token_ids
    from workbench.models.loading import model_info

    tok = model_info(model).tokenizer
    digits = single_token_ids(tok, [str(d) for d in range(10)], "digits")
    prefix = tok("year 1732", add_special_tokens=False)["input_ids"]
    if not all(len(tok(str(d), add_special_tokens=False)["input_ids"]) == 1 for d in range(10)) or len(prefix) < 5:
        raise PromptError("greater-than here assumes a tokenizer that writes each digit as its own token.")
    rows = draw(n, seed)
    meta = [{"start": r["start"], "good_ids": [digits[str(d)] for d in range(r["start"] // 10 + 1, 10)],
             "bad_ids": [digits[str(d)] for d in range(0, r["start"] // 10)]} for r in rows]
    name = f"greater-than-{n}-s{seed}"
    return ContrastSet(name, PromptSet.from_texts(name, [r["clean"] for r in rows], metadata=meta),
                       PromptSet.from_texts(f"{name}-01", [r["corrupt"] for r in rows], metadata=meta), "prob_diff")
