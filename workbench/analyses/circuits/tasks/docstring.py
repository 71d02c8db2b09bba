"""Docstring argument completion (Heimersheim & Janiak 2023): after documenting `a`, `b` of `def f(self, a, b, c,
d)`, ":param" → " c"; the twin documents two random other names. Metric: logit(c) − max logit(a, b, d).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from workbench.core.prompts import PromptSet

if TYPE_CHECKING:
    from workbench.core.contrast import ContrastSet

WORDS = ("load", "size", "files", "last", "port", "data", "name", "path", "value", "index", "count", "mode",
         "items", "user", "text", "key", "node", "page", "color", "state", "event", "query", "limit", "token",
         "source", "target", "shape", "model", "image", "group")
FILLER = ("oil", "column", "piece", "crime", "population", "unit", "dark", "river", "paper", "market", "metal",
          "song", "window", "table", "garden", "story", "energy", "family", "cloud", "stone")
TEMPLATE = ('def {fn}(self, {a0}, {a1}, {a2}, {a3}):\n    """{w0} {w1} {w2}\n\n'
            "    :param {d0}: {w3} {w4}\n    :param {d1}: {w5} {w6}\n    :param")


def draw(n: int = 50, seed: int = 0) -> list[dict]:
    """The strings of `n` prompts (torch-free): clean, corrupt, answer, wrong (the other arguments)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample(WORDS, 7)
        args, fn, fake = words[:4], words[4], words[5:7]
        fill = dict(fn=fn, **{f"a{i}": a for i, a in enumerate(args)},
                    **{f"w{i}": w for i, w in enumerate(rng.sample(FILLER, 7))})
        rows.append({"clean": TEMPLATE.format(d0=args[0], d1=args[1], **fill),
                     "corrupt": TEMPLATE.format(d0=fake[0], d1=fake[1], **fill), "answer": f" {args[2]}",
                     "wrong": [f" {a}" for a in (args[0], args[1], args[3])]})
    return rows


def make(model, n: int = 50, seed: int = 0) -> ContrastSet:
    from workbench.core.contrast import ContrastSet, single_token_ids
    from workbench.models.loading import model_info

    tok = model_info(model).tokenizer
    ids = single_token_ids(tok, [f" {w}" for w in WORDS], "argument names")
    rows = draw(n, seed)
    meta = [{"answer": r["answer"], "answer_id": ids[r["answer"]], "wrong_ids": [ids[w] for w in r["wrong"]]}
            for r in rows]
    name = f"docstring-{n}-s{seed}"
    return ContrastSet(name, PromptSet.from_texts(name, [r["clean"] for r in rows], metadata=meta),
                       PromptSet.from_texts(f"{name}-random-args", [r["corrupt"] for r in rows], metadata=meta),
                       "logit_diff")
