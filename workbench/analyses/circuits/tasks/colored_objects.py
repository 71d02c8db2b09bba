"""Colored Objects, 1-shot (Merullo et al. 2024, from BIG-bench): "Q: On the table, I see a silver pencil, a red
notebook, and a blue cup. What color is the notebook?\nA:" → " Red"; the twin asks about another object.
Metric: logit(answer color) − max logit(the other two colors).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from workbench.core.prompts import PromptSet

if TYPE_CHECKING:
    from workbench.core.contrast import ContrastSet

COLORS = ("red", "blue", "green", "yellow", "black", "white", "purple", "pink", "brown", "grey", "silver", "gold")
OBJECTS = ("pencil", "notebook", "cup", "ball", "book", "pen", "key", "phone", "plate", "bowl", "hat", "shoe", "bag",
           "box", "chair", "lamp", "clock", "fork", "spoon", "sock", "ring", "coin", "card")
QUESTION = "Q: On the table, I see a {c0} {o0}, a {c1} {o1}, and a {c2} {o2}. What color is the {q}?\nA:"


def _table(rng: random.Random):
    return rng.sample(COLORS, 3), rng.sample(OBJECTS, 3)


def draw(n: int = 50, seed: int = 0) -> list[dict]:
    """The strings of `n` 1-shot prompts (torch-free): clean, corrupt, answer, wrong (the other two colors),
    asked, other."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        (ec, eo), (colors, objects) = _table(rng), _table(rng)
        e = rng.randrange(3)
        example = QUESTION.format(c0=ec[0], o0=eo[0], c1=ec[1], o1=eo[1], c2=ec[2], o2=eo[2], q=eo[e])
        shot = f"{example} {ec[e].capitalize()}\n"
        asked, other = rng.sample(range(3), 2)
        table = dict(c0=colors[0], o0=objects[0], c1=colors[1], o1=objects[1], c2=colors[2], o2=objects[2])
        rows.append({"clean": shot + QUESTION.format(**table, q=objects[asked]),
                     "corrupt": shot + QUESTION.format(**table, q=objects[other]),
                     "answer": f" {colors[asked].capitalize()}",
                     "wrong": [f" {colors[j].capitalize()}" for j in range(3) if j != asked], "asked": asked,
                     "other": f" {colors[other].capitalize()}"})
    return rows


def make(model, n: int = 50, seed: int = 0) -> ContrastSet:
    """`n` 1-shot prompts; the example and the question use different tables."""
    from workbench.core.contrast import ContrastSet, single_token_ids
    from workbench.models.loading import model_info

    tok = model_info(model).tokenizer
    single_token_ids(tok, [f" {o}" for o in OBJECTS], "objects")  # twins must align token by token
    single_token_ids(tok, [f" {c}" for c in COLORS], "colors")  # the table's colors, found by the repair edit
    ids = single_token_ids(tok, [f" {c.capitalize()}" for c in COLORS], "colors")
    rows = draw(n, seed)
    meta = [{"answer": r["answer"], "wrong": r["wrong"][0], "answer_id": ids[r["answer"]],
             "wrong_ids": [ids[w] for w in r["wrong"]], "asked": r["asked"], "corrupt_answer_id": ids[r["other"]]}
            for r in rows]
    name = f"colored-objects-{n}-s{seed}"
    return ContrastSet(name, PromptSet.from_texts(name, [r["clean"] for r in rows], metadata=meta),
                       PromptSet.from_texts(f"{name}-other-object", [r["corrupt"] for r in rows], metadata=meta),
                       "logit_diff")
