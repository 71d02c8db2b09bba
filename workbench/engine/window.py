"""One layer's attention for a window of query rows, from that layer's cached post-rotary q and k.

A prefill of the streaming twin (plain SDPA, no statistics) runs under a capturing attention implementation that
keeps each layer's post-rotary `q [H, T, D]` and `k [H_kv, T, D]` exactly as the attention function receives them,
with its scale, soft-cap and sliding window. They stay in an in-process LRU keyed by (model fingerprint, device,
dtype, token-ids hash, layer), at most CACHE_BYTES (1 GiB) on the model's device: SmolLM2 at 8192 tokens holds
q 18.9 MB + k 6.3 MB per layer, 755 MB for all 30 layers, so one prefill serves every page of every layer.
When all layers would not fit, only the asked layer is kept.

A window of queries `q0..q1-1` is then, per head h (GQA: h reads KV group h // (H / H_kv)),
`A = softmax(q_h[q0:q1]·k[:q1]ᵀ·scale + causal mask)`, one W×q1 matmul per head in float32 (float64 models: float64);
never a T×T×heads tensor. Each row is split into the window's keys `A[:, q0:q1]`, the mass on BOS (key 0) and
the mass on keys strictly between BOS and the window.
"""

from __future__ import annotations

import contextvars
import hashlib
import math
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from workbench.core.errors import PromptError
from workbench.engine import streaming
from workbench.engine.devices import ACCUMULATE
from workbench.engine.run import stream_forward
from workbench.models.loading import model_info

CACHE_BYTES = 2**30
WINDOW_ATTN_IMPL = "workbench_window"  # the capturing implementation: records q and k, then streaming attention
_CAPTURE: contextvars.ContextVar["dict[int, _Layer] | None"] = contextvars.ContextVar("workbench_window",
                                                                                       default=None)
_WANTED: contextvars.ContextVar["frozenset[int]"] = contextvars.ContextVar("workbench_window_layers",
                                                                           default=frozenset())
_REGISTERED = False


@dataclass(frozen=True)
class _Layer:
    q: torch.Tensor  # [H, T, D], post-rotary
    k: torch.Tensor  # [H_kv, T, D], post-rotary
    scale: float
    softcap: float | None
    sliding_window: int | None

    @property
    def nbytes(self) -> int:
        return self.q.numel() * self.q.element_size() + self.k.numel() * self.k.element_size()


@dataclass(frozen=True)
class WindowPattern:
    """Rows `start..stop-1` of one layer's attention: `pattern [H, W, W]` over the window's keys, `bos [H, W]`
    (None without BOS) and `before [H, W]` (keys between BOS and the window); W = stop − start."""

    layer: int
    start: int
    stop: int
    n_tokens: int
    pattern: torch.Tensor
    bos: torch.Tensor | None
    before: torch.Tensor


class _LRU:
    def __init__(self, max_bytes: int):
        self.max_bytes, self.items = max_bytes, OrderedDict()

    def get(self, key) -> _Layer | None:
        if key in self.items:
            self.items.move_to_end(key)
        return self.items.get(key)

    def put(self, key, value: _Layer) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while sum(v.nbytes for v in self.items.values()) > self.max_bytes and len(self.items) > 1:
            self.items.popitem(last=False)

    def clear(self) -> None:
        self.items.clear()


CACHE = _LRU(CACHE_BYTES)


def _capture_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention interface: record this layer's q and k (batch 0), then streaming attention."""
    store, layer = _CAPTURE.get(), int(getattr(module, "layer_idx", -1))
    if store is not None and layer in _WANTED.get():
        softcap = kwargs.get("softcap") or getattr(module, "attn_logit_softcapping", None)
        window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        store[layer] = _Layer(query[0], key[0], float(scale), softcap, int(window) if window else None)
    return streaming.stream_attention(module, query, key, value, attention_mask, scaling, dropout, **kwargs)


def _register() -> None:
    global _REGISTERED
    if not _REGISTERED:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(WINDOW_ATTN_IMPL, _capture_attention)
        AttentionMaskInterface.register(WINDOW_ATTN_IMPL, sdpa_mask)
        _REGISTERED = True


@contextmanager
def _capturing(twin, layers: frozenset[int]) -> Iterator[dict[int, _Layer]]:
    _register()
    store: dict[int, _Layer] = {}
    previous = twin.config._attn_implementation
    tokens = _CAPTURE.set(store), _WANTED.set(layers)
    twin.config._attn_implementation = WINDOW_ATTN_IMPL
    try:
        yield store
    finally:
        twin.config._attn_implementation = previous
        _CAPTURE.reset(tokens[0])
        _WANTED.reset(tokens[1])


def layer_qk(model, ids: list[int], layer: int) -> _Layer:
    """Post-rotary q and k of `layer` on `ids`, from the LRU or one prefill (which caches every layer that fits)."""
    info = model_info(model)
    twin = info.stream_model
    weight = twin.get_input_embeddings().weight
    digest = hashlib.sha1(torch.tensor(ids, dtype=torch.int64).numpy().tobytes()).hexdigest()
    base = (info.fingerprint, str(weight.device), str(weight.dtype), digest)
    hit = CACHE.get((*base, layer))
    if hit is not None:
        return hit
    per_layer = len(ids) * (info.n_heads + info.n_kv_heads) * info.d_head * max(4, weight.element_size())
    layers = range(info.n_layers) if per_layer * info.n_layers <= CACHE.max_bytes else [layer]
    with _capturing(twin, frozenset(layers)) as store:
        stream_forward(model, torch.tensor([ids]), None)
    for other in (x for x in layers if x != layer):  # the asked layer goes in last: the freshest entry
        CACHE.put((*base, other), store[other])
    CACHE.put((*base, layer), store[layer])
    return store[layer]


def n_pages(n_tokens: int, size: int) -> int:
    return max(1, math.ceil(n_tokens / size))


def check_window(n_tokens: int, n_ctx: int, page: int, size: int) -> tuple[int, int]:
    """(start, stop) of page `page` (0-based) of `size` query tokens; clear errors for what cannot be shown."""
    if n_tokens > n_ctx:
        raise PromptError(f"The prompt has {n_tokens:,} tokens; the model's context is {n_ctx:,}. Shorten it.")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 1024:
        raise PromptError(f"The window size must be a whole number of tokens in 1..1024; got {size!r}.")
    pages = n_pages(n_tokens, size)
    if isinstance(page, bool) or not isinstance(page, int) or not 0 <= page < pages:
        raise PromptError(f"Page {page!r} does not exist: {n_tokens:,} tokens make {pages} pages of {size} "
                          f"(pages 0..{pages - 1}).")
    return page * size, min(n_tokens, (page + 1) * size)


@torch.inference_mode()
def window_pattern(model, ids: list[int], layer: int, page: int = 0, size: int = 512) -> WindowPattern:
    """Rows of page `page` (queries page·size .. +size) of every head of `layer` on `ids` (see the module doc)."""
    info = model_info(model)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < info.n_layers:
        raise PromptError(f"Layer {layer!r} does not exist; {info.spec.name} has layers 0..{info.n_layers - 1}.")
    start, stop = check_window(len(ids), info.n_ctx, page, size)
    cached = layer_qk(model, ids, layer)
    has_bos = info.tokenizer.bos_token_id is not None and ids[0] == info.tokenizer.bos_token_id
    dtype = torch.promote_types(cached.q.dtype, ACCUMULATE)
    (n_heads, _, d), n_kv, width = cached.q.shape, cached.k.shape[0], stop - start
    q = cached.q[:, start:stop].to(dtype).reshape(n_kv, n_heads // n_kv * width, d)  # head h = kv·group + j
    probs = torch.bmm(q, cached.k[:, :stop].to(dtype).transpose(1, 2)).view(n_heads, width, stop)
    if cached.softcap:
        probs.mul_(cached.scale / cached.softcap).tanh_().mul_(cached.softcap)
    else:
        probs.mul_(cached.scale)
    q_pos = torch.arange(start, stop, device=q.device)[:, None]
    k_pos = torch.arange(stop, device=q.device)[None, :]
    lo = 0 if cached.sliding_window else start  # keys before the window are never in a query's future
    hidden = k_pos[:, lo:] > q_pos
    if cached.sliding_window:
        hidden |= k_pos <= q_pos - cached.sliding_window
    probs[:, :, lo:].masked_fill_(hidden, float("-inf"))
    probs.sub_(probs.amax(dim=-1, keepdim=True)).exp_()
    probs.div_(probs.sum(dim=-1, keepdim=True))  # softmax in place: one [H, W, stop] buffer
    first = 1 if has_bos else 0
    return WindowPattern(layer=layer, start=start, stop=stop, n_tokens=len(ids),
                         pattern=probs[:, :, start:].cpu().contiguous(), bos=probs[:, :, 0].cpu() if has_bos else None,
                         before=probs[:, :, first:max(first, start)].sum(-1).cpu())


def lower_triangle_u16(pattern: torch.Tensor) -> bytes:
    """`pattern [H, W, W]` (causal) as uint16 `round(65535·A)` over each head's lower triangle, row by row:
    head h, row i, key j ≤ i at h·W(W+1)/2 + i(i+1)/2 + j; absolute error ≤ 1/131070."""
    w = pattern.shape[-1]
    rows, cols = torch.tril_indices(w, w)
    values = (pattern[:, rows, cols].clamp(0, 1) * 65535).round().to(torch.int32)
    return values.numpy().astype("<u2").tobytes()
