"""Counterfactual QA from data/counterfactual_qa/facts.json: one-shot QA with a counterfactual or neutral passage.

`"Question: {example}\nAnswer: {example answer}\n\n{passage}\nQuestion: {question}\nAnswer:"`; the closed-book
twin drops the passage, so last positions align. `known_facts`: single-token answers the model gets right.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from workbench.core.errors import PromptError
from workbench.core.paths import shipped
from workbench.core.prompts import PromptSet, pad_batch, tokenize
from workbench.models.loading import model_info

DATA = shipped("data", "counterfactual_qa", "facts.json")


def load_facts(path: Path = DATA) -> tuple[list[dict], list[str]]:
    try:
        raw = json.loads(Path(path).read_text())
        facts, neutral = raw["facts"], raw["neutral_passages"]
    except (OSError, ValueError, KeyError) as exc:
        raise PromptError(f"Cannot read facts from {path} ({exc}); it must be JSON with 'facts' "
                          "({question, answer, counterfactual, passage}) and 'neutral_passages'.") from exc
    if not facts or not neutral:
        raise PromptError(f"{path} needs at least one fact and one neutral passage.")
    return facts, neutral


SHOT = "Question: What is the largest planet in the solar system?\nAnswer: Jupiter\n\n"


def qa_text(question: str, passage: str | None = None) -> str:
    return SHOT + (f"{passage}\n" if passage else "") + f"Question: {question}\nAnswer:"


def prompt_set(facts: list[dict], context: str, name: str, neutral: list[str] | None = None) -> PromptSet:
    """`context`: 'none' (closed book), 'counterfactual' or 'neutral'. Metadata: answer = passage's answer
    for counterfactual sets (so logit_diff > 0 means the model followed the passage), else the true one."""
    texts, meta = [], []
    for i, fact in enumerate(facts):
        passage = {"none": None, "counterfactual": fact["passage"],
                   "neutral": (neutral or [""])[i % len(neutral or [""])]}[context]
        follow = context == "counterfactual"
        texts.append(qa_text(fact["question"], passage))
        meta.append({"answer": " " + (fact["counterfactual"] if follow else fact["answer"]),
                     "wrong": " " + (fact["answer"] if follow else fact["counterfactual"]),
                     "question": fact["question"], "context": context})
    return PromptSet(name=name, texts=tuple(texts), metadata=tuple(meta), description=f"counterfactual QA ({context})")


def known_facts(model, facts: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """Facts with single-token answers that the model answers right closed-book (argmax), and why others left."""
    import torch

    tok = model_info(model).tokenizer
    single = [f for f in facts if all(len(tok(" " + f[k], add_special_tokens=False)["input_ids"]) == 1
                                      for k in ("answer", "counterfactual"))]
    if not single:
        raise PromptError(f"None of the {len(facts)} facts has single-token answers in this model's tokenizer; "
                          "head_divergence needs a word-level tokenizer (e.g. smollm2-135m), not a byte-level one.")
    closed = prompt_set(single, "none", "closed-book")
    ids = tokenize(model, closed)
    batch, _ = pad_batch(ids, tok.pad_token_id or 0)
    with torch.inference_mode():
        logits = model(batch)
    kept = []
    for row, (fact, seq) in enumerate(zip(single, ids, strict=True)):
        answer = tok(" " + fact["answer"], add_special_tokens=False)["input_ids"][0]
        if int(logits[row, len(seq) - 1].argmax()) == answer:
            kept.append(fact)
    report = {"facts": len(facts), "multi_token": len(facts) - len(single),
              "wrong_closed_book": len(single) - len(kept),
              "kept": len(kept)}
    if not kept:
        raise PromptError(f"The model answers none of the facts closed-book ({report}); add facts it knows.")
    return kept, report


def split(facts: list[dict], held_out: float = 0.5, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Deterministic split into (scoring, held-out) facts."""
    order = list(range(len(facts)))
    random.Random(seed).shuffle(order)
    cut = max(1, int(round(len(facts) * (1 - held_out))))
    return [facts[i] for i in order[:cut]], [facts[i] for i in order[cut:]]
