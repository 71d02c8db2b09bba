"""The prompt sets an intervention runs on, by name: bundled natural text, typed prompts (`prompt ⇥ answer ⇥
wrong`), the circuit tasks with their corrupted twins (IOI, Colored Objects, greater-than, docstring) and
needle-in-a-haystack retrieval prompts. Torch-free at import (the app validates requests with it); `build` needs
the model's tokenizer. Patching a task set patches clean ← corrupted twin, prompt by prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.core.errors import PromptError


@dataclass(frozen=True)
class Source:
    label: str  # as the app shows it
    metrics: tuple[str, ...]  # the metrics its prompts carry what they need for
    twins: bool = False  # corrupted twins: the source a patch takes


_TASK = ("logit_diff", "answer_logprob", "loss")
SOURCES: dict[str, Source] = {
    "natural": Source("bundled natural text", ("loss",)),
    "typed": Source("typed prompts (one per line)", _TASK),
    "ioi": Source("IOI (Wang et al. 2022)", _TASK, twins=True),
    "colored_objects": Source("Colored Objects", _TASK, twins=True),
    "greater_than": Source("greater-than (Hanna et al. 2023)", ("prob_diff", "loss"), twins=True),
    "docstring": Source("docstring", _TASK, twins=True),
    "niah": Source("needle in a haystack (retrieval)", ("answer_logprob", "loss")),
}
ANALYSIS, KIND = "interventions", "intervention"  # how intervention runs are filed in the catalog
TASKS = tuple(k for k, s in SOURCES.items() if s.twins)
NIAH_MIN_TOKENS = 96  # needle sentence + question + a little haystack
SEPARATORS = ("\t", "\\t")  # a real tab, or the two characters \t (a browser's Tab key leaves the text box)


def source(name: str) -> Source:
    if name not in SOURCES:
        raise PromptError(f"Unknown prompt set {str(name)[:40]!r}; choose one of {', '.join(SOURCES)}.")
    return SOURCES[name]


def parse_typed(lines: list[str]) -> tuple[list[str], list[dict]]:
    """(texts, metadata) of typed lines `prompt`, `prompt ⇥ answer` or `prompt ⇥ answer ⇥ wrong`; an answer is
    the next word, so it gets one leading space ("to ⇥ Mary" asks for " Mary")."""
    texts, meta = [], []
    for i, line in enumerate(lines, 1):
        for sep in SEPARATORS:
            line = line.replace(sep, "\t")
        parts = line.split("\t")
        if len(parts) > 3:
            raise PromptError(f"Line {i} has {len(parts) - 1} tabs; write 'prompt ⇥ answer' or "
                              "'prompt ⇥ answer ⇥ wrong' (at most two tabs).")
        if not parts[0].strip():
            raise PromptError(f"Line {i} has no prompt before its tab.")
        words = [p.strip() for p in parts[1:]]
        if any(not w for w in words):
            raise PromptError(f"Line {i}: an empty answer after a tab; write 'prompt ⇥ answer' or drop the tab.")
        texts.append(parts[0].rstrip() if words else parts[0].strip())
        meta.append(dict(zip(("answer", "wrong")[:len(words)], (" " + w for w in words), strict=True)))
    return texts, meta


def check_metric(name: str, metric: str, metadata: list[dict] | None = None) -> None:
    """Refuse a metric the prompt set cannot give, saying what would work."""
    src = source(name)
    if metric not in src.metrics:
        raise PromptError(f"{metric} cannot be measured on {src.label}; choose {' or '.join(src.metrics)} "
                          "(what its prompts carry the tokens for).")
    if name == "typed" and metric != "loss":
        need, form = (("answer", "wrong"), "prompt ⇥ answer ⇥ wrong") if metric == "logit_diff" else \
            (("answer",), "prompt ⇥ answer")
        lacking = [i + 1 for i, m in enumerate(metadata or []) if any(k not in m for k in need)]
        if lacking:
            raise PromptError(f"{metric} on typed prompts needs '{form}' on every line (separated by tabs); "
                              f"line{'s' if len(lacking) > 1 else ''} {', '.join(map(str, lacking[:10]))} "
                              f"lack{'' if len(lacking) > 1 else 's'} {' or '.join(need)}.")


def _one_token(tok, word: str, what: str) -> int:
    ids = tok(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = ", ".join(repr(tok.decode([t])) for t in ids[:6])
        raise PromptError(f"{what} {word!r} is {len(ids)} tokens ({pieces}); the answer must be one token: "
                          "give a single word the tokenizer keeps whole.")
    return ids[0]


def build(model, name: str, *, n: int, n_tokens: int, texts: list[str] | None = None, seed: int = 0):
    """(prompts, corrupted twins or None) of prompt set `name`: `n` prompts (natural text and NIAH: `n_tokens` each;
    typed: `texts`, lines of `parse_typed`)."""
    from workbench.core.prompts import PromptSet
    from workbench.models.loading import model_info

    src, tok = source(name), model_info(model).tokenizer
    if name == "natural":
        from workbench.core.natural_text import text_chunks

        return text_chunks(model, n, n_tokens), None
    if name == "typed":
        if not texts:
            raise PromptError("Type at least one prompt, one per line.")
        lines, meta = parse_typed(texts)
        for i, m in enumerate(meta, 1):
            if "answer" in m:
                m["answer_id"] = _one_token(tok, m["answer"], f"Line {i}: the answer")
            if "wrong" in m:
                m["wrong_ids"] = [_one_token(tok, m["wrong"], f"Line {i}: the wrong answer")]
        return PromptSet.from_texts("typed", lines, metadata=meta), None
    if name == "niah":
        return _niah(model, tok, n, n_tokens), None
    if src.twins:
        from workbench.analyses.circuits.tasks import make_task

        contrast = make_task(model, name, n=n, seed=seed)
        return contrast.clean, contrast.corrupt
    raise PromptError(f"No builder for prompt set {name!r}.")  # a SOURCES entry without a branch above


def _niah(model, tok, n: int, n_tokens: int):
    """`n` NIAH prompts of `n_tokens` tokens, needles cycled, depths spread over 0..100 %; `answer_id` is the first
    token of the answer (what the model must say after 'Answer:')."""
    from workbench.analyses.retrieval_heads.prompts import NEEDLES, niah_prompts
    from workbench.core.prompts import PromptSet

    if n_tokens < NIAH_MIN_TOKENS:
        raise PromptError(f"NIAH prompts need at least {NIAH_MIN_TOKENS} tokens each (needle, question and some "
                          f"haystack); got {n_tokens}.")
    depths = [100.0 * i / max(1, n - 1) for i in range(n)]
    parts = [niah_prompts(model, [n_tokens], [depths[i]], [NEEDLES[i % len(NEEDLES)]]) for i in range(n)]
    meta = [{**p.metadata[0], "answer_id": tok(" " + p.metadata[0]["answer"], add_special_tokens=False)
             ["input_ids"][0]} for p in parts]
    return PromptSet(name=f"niah-{n}x{n_tokens}", texts=tuple(p.texts[0] for p in parts), metadata=tuple(meta),
                     prepend_bos=parts[0].prepend_bos, max_length=parts[0].max_length,
                     description=parts[0].description)
