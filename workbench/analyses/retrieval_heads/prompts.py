"""Needle-in-a-haystack prompt sets (Wu et al. 2024; official code nightdessert/Retrieval_Head).

A needle sentence goes at a sentence break at `depth` % of a haystack (Python's pydoc topics, offline), then a
question. Formats: "paper" `<context>Based on the content of the book, Question: <q>\\nAnswer:` (BOS, as the
official code); "chat" one user turn through the chat template. `context_length`: total prompt tokens (± a few).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from workbench.core.errors import PromptError
from workbench.core.natural_text import public_domain_text
from workbench.core.prompts import PromptSet
from workbench.models.loading import model_info

PAPER_QUESTION = "Based on the content of the book, Question: {question}\nAnswer:"


@dataclass(frozen=True)
class Needle:
    """A fact that cannot be guessed: the sentence to hide, its question and the answer span in it."""

    name: str
    sentence: str
    question: str
    answer: str

    def __post_init__(self):
        if not self.answer.strip() or self.answer not in self.sentence:
            raise PromptError(f"Needle {self.name!r}: the answer {self.answer!r} must be a non-empty part of "
                              f"its sentence {self.sentence!r}.")


NEEDLES: tuple[Needle, ...] = (
    Needle("soup", "The secret ingredient in Aunt Mirela's soup is blue cardamom.",
           "What is the secret ingredient in Aunt Mirela's soup?", "blue cardamom"),
    Needle("lighthouse", "The password for the old lighthouse on Kellan Point is violet anchor.",
           "What is the password for the old lighthouse on Kellan Point?", "violet anchor"),
    Needle("tortoise", "Professor Okonkwo's pet tortoise is named Captain Biscuit.",
           "What is the name of Professor Okonkwo's pet tortoise?", "Captain Biscuit"),
)
DEFAULT_LENGTHS = (500, 2000)
DEFAULT_DEPTHS = (0.0, 25.0, 50.0, 75.0, 100.0)


def haystack_ids(tokenizer, n_tokens: int) -> list[int]:
    text = public_domain_text()
    ids = tokenizer(text[: 8 * n_tokens + 1000], add_special_tokens=False)["input_ids"]
    if len(ids) < n_tokens:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < n_tokens:
        raise PromptError(f"The bundled haystack has {len(ids)} tokens; {n_tokens} were asked for.")
    return ids[:n_tokens]


def _sentence_break(tokenizer, ids: list[int], at: int) -> int:
    """Move `at` back to just after a token ending a sentence ('.' or a newline), as the official code."""
    while at > 0:
        piece = tokenizer.decode(ids[at - 1: at])
        if piece.rstrip(" ").endswith((".", "\n")):
            return at
        at -= 1
    return 0


def _wrap(tokenizer, context: str, question: str, fmt: str) -> tuple[str, bool]:
    """(prompt text, prepend_bos) for a format."""
    if fmt == "paper":
        return context + "\n" + PAPER_QUESTION.format(question=question), True
    if fmt == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise PromptError("This tokenizer has no chat template; use format 'paper'.")
        user = context + "\n\n" + PAPER_QUESTION.format(question=question).replace("\nAnswer:", "")
        text = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                             add_generation_prompt=True)
        return text, False
    raise PromptError(f"Unknown NIAH format {fmt!r}; use 'paper', 'chat' or 'auto'.")


def niah_prompts(model, lengths: Sequence[int] = DEFAULT_LENGTHS, depths: Sequence[float] = DEFAULT_DEPTHS,
                 needles: Sequence[Needle] = NEEDLES, *, fmt: str = "paper", max_new_tokens: int = 32,
                 name: str | None = None) -> PromptSet:
    """One prompt per (length, depth, needle); metadata holds the needle, question, answer and settings."""
    info = model_info(model)
    tok = info.tokenizer
    if fmt == "auto":  # the chat template where the tokenizer has one (instruct models), else the paper's format
        fmt = "chat" if getattr(tok, "chat_template", None) else "paper"
    if not needles or not lengths or not depths:
        raise PromptError("Give at least one needle, one context length and one depth.")
    bad_depth = [d for d in depths if not 0 <= float(d) <= 100]
    if bad_depth:
        raise PromptError(f"Depths are percentages in 0..100; got {bad_depth}.")
    limit = info.n_ctx - max_new_tokens
    too_long = [n for n in lengths if int(n) > limit]
    if too_long:
        raise PromptError(f"Context lengths {too_long} plus {max_new_tokens} new tokens exceed the context of "
                          f"{info.spec.name} ({info.n_ctx}); use lengths <= {limit}.")
    hay = haystack_ids(tok, max(int(n) for n in lengths))
    texts, meta, bos = [], [], True
    for length in lengths:
        for depth in depths:
            for needle in needles:
                text, bos = _build(tok, hay, int(length), float(depth), needle, fmt)
                texts.append(text)
                meta.append({"needle": needle.name, "question": needle.question, "answer": needle.answer,
                             "sentence": needle.sentence, "context_length": int(length), "depth": float(depth),
                             "format": fmt})
    return PromptSet(name=name or f"niah-{fmt}-{len(lengths)}x{len(depths)}x{len(needles)}", texts=tuple(texts),
                     metadata=tuple(meta), prepend_bos=bos, max_length=limit,
                     description="needle in a haystack (pydoc topics haystack)",
                     extra={"needles": [asdict(n) for n in needles], "max_new_tokens": max_new_tokens})


def _build(tok, hay: list[int], length: int, depth: float, needle: Needle, fmt: str) -> tuple[str, bool]:
    """Prompt text of at most `length` tokens (BOS included); re-tokenisation drift is trimmed off the haystack."""
    shell, bos = _wrap(tok, "", needle.question, fmt)
    n_hay = length - len(tok(shell + " " + needle.sentence + " ", add_special_tokens=False)["input_ids"]) - int(bos)
    for _ in range(5):
        text, bos = _insert(tok, hay, n_hay, length, depth, needle, fmt)
        excess = len(tok(text, add_special_tokens=False)["input_ids"]) + int(bos) - length
        if excess <= 0:
            return text, bos
        n_hay -= excess
    raise PromptError(f"Could not fit the needle {needle.name!r} into a {length}-token prompt.")


def _insert(tok, hay: list[int], n_hay: int, length: int, depth: float, needle: Needle, fmt: str):
    if n_hay < 16:
        raise PromptError(f"Context length {length} leaves no room for a haystack (template, needle and question "
                          f"take {length - n_hay} tokens); use a longer context.")
    ids = hay[:n_hay]
    at = _sentence_break(tok, ids, int(round(len(ids) * depth / 100.0)))
    before, after = tok.decode(ids[:at]), tok.decode(ids[at:])
    sep = "" if not before or before.endswith((" ", "\n")) else " "
    context = before + sep + needle.sentence + (" " if after and not after.startswith((" ", "\n")) else "") + after
    return _wrap(tok, context, needle.question, fmt)
