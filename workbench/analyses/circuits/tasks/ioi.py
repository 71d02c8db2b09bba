"""Indirect object identification (Wang et al. 2022): "When Mary and John went to the store, John gave a drink to"
→ " Mary" (ABBA, BABA); the ABC twin replaces the repeated subject. Metric: logit(IO) − logit(S).
"""

from __future__ import annotations

import random

from workbench.core.contrast import ContrastSet, single_token_ids
from workbench.core.errors import PromptError
from workbench.core.prompts import PromptSet
from workbench.models.loading import model_info

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


def make(model, n: int = 50, seed: int = 0, names: tuple[str, ...] = NAMES) -> ContrastSet:
    """`n` IOI prompts alternating ABBA/BABA over the templates, with ABC twins."""
    tok = model_info(model).tokenizer
    if len(names) < 3:
        raise PromptError(f"IOI needs at least three names (two in the sentence, one for the corruption); "
                          f"got {len(names)}.")
    ids = single_token_ids(tok, [f" {name}" for name in names], "names")
    rng = random.Random(seed)
    clean, corrupt, meta = [], [], []
    for i in range(n):
        io, s, c = rng.sample(names, 3)
        template = TEMPLATES[i % len(TEMPLATES)]
        fill = dict(place=rng.choice(PLACES), thing=rng.choice(THINGS))
        first, second = (io, s) if i % 2 == 0 else (s, io)  # ABBA, BABA
        clean.append(template.format(A=first, B=second, S=s, **fill))
        corrupt.append(template.format(A=first, B=second, S=c, **fill))
        meta.append({"answer": f" {io}", "wrong": f" {s}", "answer_id": ids[f" {io}"], "wrong_ids": [ids[f" {s}"]],
                     "order": "ABBA" if i % 2 == 0 else "BABA", "template": i % len(TEMPLATES)})
    name = f"ioi-{n}-s{seed}"
    return ContrastSet(name, PromptSet.from_texts(name, clean, metadata=meta),
                       PromptSet.from_texts(f"{name}-abc", corrupt, metadata=meta), "logit_diff")
