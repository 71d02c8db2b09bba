"""Docstring argument completion (Heimersheim & Janiak 2023): after documenting `a`, `b` of `def f(self, a, b, c,
d)`, ":param" → " c"; the twin documents two random other names. Metric: logit(c) − max logit(a, b, d).
"""

from __future__ import annotations

import random

from workbench.core.contrast import ContrastSet, single_token_ids
from workbench.core.prompts import PromptSet
from workbench.models.loading import model_info

WORDS = ("load", "size", "files", "last", "port", "data", "name", "path", "value", "index", "count", "mode",
         "items", "user", "text", "key", "node", "page", "color", "state", "event", "query", "limit", "token",
         "source", "target", "shape", "model", "image", "group")
FILLER = ("oil", "column", "piece", "crime", "population", "unit", "dark", "river", "paper", "market", "metal",
          "song", "window", "table", "garden", "story", "energy", "family", "cloud", "stone")
TEMPLATE = ('def {fn}(self, {a0}, {a1}, {a2}, {a3}):\n    """{w0} {w1} {w2}\n\n'
            "    :param {d0}: {w3} {w4}\n    :param {d1}: {w5} {w6}\n    :param")


def make(model, n: int = 50, seed: int = 0) -> ContrastSet:
    tok = model_info(model).tokenizer
    ids = single_token_ids(tok, [f" {w}" for w in WORDS], "argument names")
    rng = random.Random(seed)
    clean, corrupt, meta = [], [], []
    for _ in range(n):
        words = rng.sample(WORDS, 7)
        args, fn, fake = words[:4], words[4], words[5:7]
        fill = dict(fn=fn, **{f"a{i}": a for i, a in enumerate(args)},
                    **{f"w{i}": w for i, w in enumerate(rng.sample(FILLER, 7))})
        clean.append(TEMPLATE.format(d0=args[0], d1=args[1], **fill))
        corrupt.append(TEMPLATE.format(d0=fake[0], d1=fake[1], **fill))
        meta.append({"answer": f" {args[2]}", "answer_id": ids[f" {args[2]}"],
                     "wrong_ids": [ids[f" {a}"] for a in (args[0], args[1], args[3])]})
    name = f"docstring-{n}-s{seed}"
    return ContrastSet(name, PromptSet.from_texts(name, clean, metadata=meta),
                       PromptSet.from_texts(f"{name}-random-args", corrupt, metadata=meta), "logit_diff")
