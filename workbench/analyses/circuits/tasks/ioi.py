"""Indirect object identification (Wang et al. 2022): "When Mary and John went to the store, John gave a drink to"
→ " Mary" (ABBA, BABA); the ABC twin replaces the repeated subject. Metric: logit(IO) − logit(S).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from workbench.core.errors import PromptError
from workbench.core.prompts import PromptSet

if TYPE_CHECKING:
    from workbench.core.contrast import ContrastSet

NAMES = ("Mary", "John", "Tom", "James", "Anna", "Paul", "Sarah", "David", "Lisa", "Mark", "Kate", "Peter",
         "Emma", "Jack", "Laura", "Mike", "Alice", "Bob", "Susan", "Daniel", "Chris", "Rachel", "Steve",
         "Linda", "Ryan", "Amy", "Kevin", "Helen", "Eric", "Jane")
TEMPLATES = (
    "When {A} and {B} went to the {place}, {S} gave a {thing} to",
    "After {A} and {B} went to the {place}, {S} gave a {thing} to",
    "While {A} and {B} were working at the {place}, {S} gave a {thing} to",
    "Then, {A} and {B} had a long argument, and afterwards {S} said to",
    "Friends {A} and {B} found a {thing} at the {place}. {S} gave it to",
    "When {A} and {B} got a {thing} at the {place}, {S} decided to give it to",
)
PLACES = ("store", "park", "school", "garden", "restaurant", "office", "station", "hospital")
THINGS = ("drink", "book", "ball", "gift", "letter", "key", "bag", "ring")


def draw(n: int = 50, seed: int = 0, names: tuple[str, ...] = NAMES) -> list[dict]:
    """The strings of `n` prompts (torch-free, no tokenizer): clean, corrupt, answer, wrong, order, template."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        io, s, c = rng.sample(names, 3)
        template = TEMPLATES[i % len(TEMPLATES)]
        fill = dict(place=rng.choice(PLACES), thing=rng.choice(THINGS))
        first, second = (io, s) if i % 2 == 0 else (s, io)  # ABBA, BABA
        rows.append({"clean": template.format(A=first, B=second, S=s, **fill),
                     "corrupt": template.format(A=first, B=second, S=c, **fill), "answer": f" {io}",
                     "wrong": f" {s}", "order": "ABBA" if i % 2 == 0 else "BABA", "template": i % len(TEMPLATES)})
    return rows


def make(model, n: int = 50, seed: int = 0, names: tuple[str, ...] = NAMES) -> ContrastSet:
    """`n` IOI prompts alternating ABBA/BABA over the templates, with ABC twins."""
    from workbench.core.contrast import ContrastSet, single_token_ids
    from workbench.models.loading import model_info

    tok = model_info(model).tokenizer
    if len(names) < 3:
        raise PromptError(f"IOI needs at least three names (two in the sentence, one for the corruption); "
                          f"got {len(names)}.")
    ids = single_token_ids(tok, [f" {name}" for name in names], "names")
    rows = draw(n, seed, names)
    meta = [{"answer": r["answer"], "wrong": r["wrong"], "answer_id": ids[r["answer"]], "wrong_ids": [ids[r["wrong"]]],
             "order": r["order"], "template": r["template"]} for r in rows]
    name = f"ioi-{n}-s{seed}"
    return ContrastSet(name, PromptSet.from_texts(name, [r["clean"] for r in rows], metadata=meta),
                       PromptSet.from_texts(f"{name}-abc", [r["corrupt"] for r in rows], metadata=meta), "logit_diff")
