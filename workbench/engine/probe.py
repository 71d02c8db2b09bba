"""One head's post-softmax pattern `A[q, k]` on one prompt (at most `max_tokens`: BOS plus the last ones), and the
prompt helpers the app's views share.

`head_pattern` (Head map's pattern card) reads the layer's post-rotary q and k from `window.layer_qk`'s LRU: the
first head asked on a prompt costs one prefill (which keeps every layer), each further head on that prompt one
`T×T` matmul. `pattern_of` is the bridge's own `hook_pattern`, the reference the tests compare against.
`window_payload` is the attention text view's page of every head of a layer.
"""

from __future__ import annotations

from typing import Any

import torch

from workbench.core.errors import PromptError
from workbench.core.heads import HeadRef, check_heads
from workbench.core.scores import head_label
from workbench.engine import hooks, window
from workbench.models.loading import model_info

MAX_TEXT_CHARS = 200_000


def prompt_ids(model, text: str) -> list[int]:
    if not isinstance(text, str) or not text.strip():
        raise PromptError("The prompt is empty; type some text.")
    if len(text) > MAX_TEXT_CHARS:
        raise PromptError(f"The prompt has {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}. "
                          "Paste a shorter text.")
    tok = model_info(model).tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]  # no context limit here: views keep the last window
    return [tok.bos_token_id, *ids] if tok.bos_token_id is not None else ids


def last_window(ids: list[int], max_tokens: int, has_bos: bool) -> tuple[list[int], int]:
    """At most max_tokens ids: BOS (if any) + the last ones. Returns (ids, position of ids[1] in the prompt)."""
    if len(ids) <= max_tokens:
        return ids, 0
    keep = max_tokens - 1 if has_bos else max_tokens
    start = len(ids) - keep
    return ([ids[0]] if has_bos else []) + ids[start:], start


def check_max_tokens(max_tokens: int, low: int = 2, high: int = 4096) -> int:
    if not isinstance(max_tokens, int) or not low <= max_tokens <= high:
        raise PromptError(f"max_tokens must be an integer in {low}..{high}, got {max_tokens!r}.")
    return max_tokens


def token_labels(tok, ids: list[int]) -> list[str]:
    return [tok.decode([i]) for i in ids]


@torch.inference_mode()
def pattern_of(model, ids: list[int], layer: int, head: int) -> torch.Tensor:
    """The post-softmax pattern `A[q, k]` `[T, T]` (float32, CPU) of head L{layer}H{head} on one prompt's ids."""
    name = hooks.pattern(layer)
    _, cache = model.run_with_cache(torch.tensor([ids]), names_filter=lambda n: n == name)
    return cache[name][0, head].float().cpu()


@torch.inference_mode()
def head_pattern(model, text: str, layer: int, head: int, max_tokens: int = 256) -> dict[str, Any]:
    """Tokens and the attention pattern of one head on `text` (JSON-ready lists)."""
    info = model_info(model)
    check_heads([HeadRef(int(layer), int(head))], info.n_layers, info.n_heads)
    max_tokens = min(check_max_tokens(max_tokens, high=1024), info.n_ctx)
    ids = prompt_ids(model, text)
    has_bos = info.tokenizer.bos_token_id is not None and ids[0] == info.tokenizer.bos_token_id
    kept, start = last_window(ids, max_tokens, has_bos)
    rows = window.window_pattern(model, kept, int(layer), page=0, size=len(kept))
    pattern = rows.pattern[int(head)].float()
    return {"head": head_label(int(layer), int(head)), "layer": int(layer), "head_index": int(head),
            "tokens": token_labels(info.tokenizer, kept), "pattern": pattern.tolist(),
            "n_tokens_total": len(ids), "window_start": start, "truncated": start > 0}


def window_payload(model, text: str, layer: int, page: int = 0, size: int = 512) -> dict:
    """JSON-ready page of `text` for the app: window tokens, every head's rows (base64 uint16, lower triangle),
    BOS and before-window mass per row (5 decimals)."""
    import base64

    info = model_info(model)
    ids = prompt_ids(model, text)
    wp = window.window_pattern(model, ids, layer, page, size)
    n_heads = wp.pattern.shape[0]
    return {"layer": layer, "heads": [head_label(layer, h) for h in range(n_heads)], "page": page, "size": size,
            "n_pages": window.n_pages(len(ids), size), "start": wp.start, "stop": wp.stop, "n_tokens": wp.n_tokens,
            "tokens": token_labels(info.tokenizer, ids[wp.start:wp.stop]),
            "pattern_u16": base64.b64encode(window.lower_triangle_u16(wp.pattern)).decode("ascii"),
            "bos": None if wp.bos is None else wp.bos.double().round(decimals=5).tolist(),
            "before": wp.before.double().round(decimals=5).tolist()}
