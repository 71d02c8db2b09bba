"""Natural-text prompt sets cut from public-domain text that ships with Python (`pydoc_data.topics`)."""

from __future__ import annotations

from workbench.core.errors import PromptError
from workbench.core.prompts import PromptSet


def public_domain_text() -> str:
    """The Python documentation topics bundled with CPython (PSF-licensed, shipped offline)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def text_chunks(model, n_prompts: int = 4, n_tokens: int = 256, *, offset: int = 0,
                name: str | None = None) -> PromptSet:
    """`n_prompts` consecutive windows of about `n_tokens` tokens (BOS added on top) of bundled text."""
    from workbench.models.loading import model_info

    info = model_info(model)
    if n_prompts < 1 or n_tokens < 2:
        raise PromptError("Need at least one prompt of at least two tokens.")
    if n_tokens + 1 > info.n_ctx:
        raise PromptError(f"{n_tokens} tokens (+ BOS) exceed the context of {info.spec.name} ({info.n_ctx}).")
    tok = info.tokenizer
    ids = tok(public_domain_text(), add_special_tokens=False)["input_ids"]
    need = offset + n_prompts * n_tokens
    if need > len(ids):
        raise PromptError(f"The bundled text has {len(ids)} tokens; {need} were asked for.")
    texts = []
    for i in range(n_prompts):
        window = ids[offset + i * n_tokens: offset + (i + 1) * n_tokens]
        texts.append(tok.decode(window))
    return PromptSet(name=name or f"pydoc-{n_prompts}x{n_tokens}", texts=tuple(texts),
                     description="windows of Python's bundled pydoc topics text",
                     max_length=info.n_ctx)
