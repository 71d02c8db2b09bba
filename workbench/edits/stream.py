"""Per-head attention edits inside the streaming attention function (no bridge, any length, KV cache).

Edits act on query heads of chosen layers while the SDPA twin runs (prefill and decoding alike):

- `UniformHeads(heads)`: the head's pre-softmax logits of visible keys are set equal, so its output is
  the mean of the visible values, `o[q] = Σ_{k≤q} V[k] / (q+1)` (a cumulative mean over keys; a decoding
  step takes the mean over the cache). This is Wu et al.'s (2024) "masking" of a retrieval head and
  equals `workbench.edits.intervene.UniformAttention` applied through the bridge.
- `StreamingWindow(heads, sink, recent)`: DuoAttention-style streaming head: key k stays visible to
  query q only if `k < sink` or `q − recent < k ≤ q` (attention renormalised over those keys).

Only the edited heads are recomputed; the layer's other heads come from plain SDPA. Layers with edits
cannot also collect statistics in the same forward (streaming.py raises). Logit soft-capping is not
supported for edited layers (no bundled model needs it); a model's own sliding window is respected.

    with editing([UniformHeads(parse_heads("L3H1,L5H0"))]):
        stream_forward(model, ids, None, logits="last")
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from workbench.core.errors import InterventionError
from workbench.core.heads import HeadRef, parse_heads

ROWS_PER_BLOCK = 256
_EDITS: contextvars.ContextVar["dict[int, LayerEdits] | None"] = contextvars.ContextVar(
    "workbench_stream_edits", default=None)

__all__ = ["UniformHeads", "StreamingWindow", "LayerEdits", "editing", "for_layer", "edited_attention",
           "InterventionError"]


@dataclass(frozen=True)
class UniformHeads:
    heads: tuple[HeadRef, ...]


@dataclass(frozen=True)
class StreamingWindow:
    heads: tuple[HeadRef, ...]
    sink: int = 4
    recent: int = 128


@dataclass
class LayerEdits:
    uniform: list[int] = field(default_factory=list)
    window: dict[int, tuple[int, int]] = field(default_factory=dict)  # head -> (sink, recent)


def compile_edits(edits: Sequence, n_layers: int | None = None, n_heads: int | None = None) -> dict[int, LayerEdits]:
    """Edits grouped by layer; a head may carry one edit only."""
    by_layer: dict[int, LayerEdits] = {}
    seen: set[HeadRef] = set()
    for edit in edits:
        heads = parse_heads(edit.heads)
        if not heads:
            raise InterventionError(f"{type(edit).__name__} names no heads; give heads like 'L3H5'.")
        if isinstance(edit, StreamingWindow) and (edit.sink < 0 or edit.recent < 1):
            raise InterventionError(f"A streaming window needs sink >= 0 and recent >= 1, got "
                                    f"sink={edit.sink}, recent={edit.recent}.")
        for h in heads:
            if n_layers is not None and not (0 <= h.layer < n_layers and 0 <= h.head < n_heads):
                raise InterventionError(f"Head {h} does not exist: the model has layers 0..{n_layers - 1} "
                                        f"and heads 0..{n_heads - 1}.")
            if h in seen:
                raise InterventionError(f"Head {h} is edited twice; give each head one edit.")
            seen.add(h)
            layer = by_layer.setdefault(h.layer, LayerEdits())
            if isinstance(edit, UniformHeads):
                layer.uniform.append(h.head)
            elif isinstance(edit, StreamingWindow):
                layer.window[h.head] = (int(edit.sink), int(edit.recent))
            else:
                raise InterventionError(f"Unknown stream edit {edit!r}; use UniformHeads or StreamingWindow.")
    return by_layer


@contextmanager
def editing(edits: Sequence, model=None) -> Iterator[dict[int, LayerEdits]]:
    """Within this block, forwards of a streaming twin apply `edits` (checked against `model` if given)."""
    dims = (None, None)
    if model is not None:
        from workbench.models.loading import model_info

        info = model_info(model)
        dims = (info.n_layers, info.n_heads)
    compiled = compile_edits(list(edits), *dims)
    token = _EDITS.set(compiled or None)
    try:
        yield compiled
    finally:
        _EDITS.reset(token)


def for_layer(layer: int) -> LayerEdits | None:
    active = _EDITS.get()
    return None if active is None else active.get(layer)


def edited_attention(edits: LayerEdits, module, query, key, value, attention_mask, scaling=None, **kwargs):
    """`q[B,H,Tq,D], k/v[B,Hkv,Tk,D]` -> `out[B,Tq,H,D]`: SDPA, then the edited heads recomputed."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if kwargs.get("softcap") or getattr(module, "attn_logit_softcapping", None):
        raise InterventionError("Stream edits do not support attention logit soft-capping.")
    out, _ = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=scaling,
                                    **kwargs)
    out = out.clone()
    h, h_kv = query.shape[1], key.shape[1]
    group = h // h_kv
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
    if edits.uniform:
        heads = torch.tensor(sorted(edits.uniform))
        out[:, :, heads] = _uniform(value[:, heads // group], attention_mask, query.shape[2], window)
    for (sink, recent), heads in _group_windows(edits.window).items():
        idx = torch.tensor(heads)
        out[:, :, idx] = _windowed(query[:, idx], key[:, idx // group], value[:, idx // group], attention_mask,
                                   scale, sink, recent, window)
    return out


def _group_windows(window: dict[int, tuple[int, int]]) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for head, sr in sorted(window.items()):
        groups.setdefault(sr, []).append(head)
    return groups


def _visible(mask, b_rows: slice, q_abs: torch.Tensor, k_idx: torch.Tensor, window) -> torch.Tensor:
    """Bool `[B or 1, 1, rows, K]`: causal (+ the model's mask and sliding window) over keys `k_idx`."""
    vis = (k_idx[None, :] <= q_abs[:, None])[None, None]
    if window:
        vis = vis & (k_idx[None, :] > q_abs[:, None] - int(window))[None, None]
    if mask is not None:
        part = mask[:, :, b_rows][..., k_idx]
        part = part if part.dtype == torch.bool else part > torch.finfo(part.dtype).min / 2
        vis = vis & part
    return vis


def _uniform(v: torch.Tensor, mask, tq: int, window) -> torch.Tensor:
    """Mean of visible values per query: `v[B,n,Tk,D]` -> `[B,Tq,n,D]`."""
    b, n, tk, d = v.shape
    q_abs = torch.arange(tk - tq, tk, device=v.device)
    if mask is None and not window:  # plain causal: a cumulative mean
        if tq == 1:
            return v.mean(dim=2, keepdim=True).transpose(1, 2)
        csum = v.cumsum(dim=2)[:, :, q_abs]
        return (csum / (q_abs + 1).to(v.dtype)[None, None, :, None]).transpose(1, 2)
    out = v.new_empty(b, n, tq, d)
    keys = torch.arange(tk, device=v.device)
    for start in range(0, tq, ROWS_PER_BLOCK):
        stop = min(tq, start + ROWS_PER_BLOCK)
        w = _visible(mask, slice(start, stop), q_abs[start:stop], keys, window).to(v.dtype)  # [B|1,1,r,Tk]
        out[:, :, start:stop] = torch.matmul(w, v) / w.sum(-1, keepdim=True).clamp_min(1.0)
    return out.transpose(1, 2)


def _windowed(q, k, v, mask, scale, sink: int, recent: int, window) -> torch.Tensor:
    """Attention over sink + recent keys only: `q[B,n,Tq,D]`, `k/v[B,n,Tk,D]` -> `[B,Tq,n,D]`."""
    b, n, tq, d = q.shape
    tk = k.shape[2]
    q_abs = torch.arange(tk - tq, tk, device=q.device)
    out = q.new_empty(b, n, tq, d)
    for start in range(0, tq, ROWS_PER_BLOCK):
        stop = min(tq, start + ROWS_PER_BLOCK)
        lo, hi = int(q_abs[start]), int(q_abs[stop - 1])
        k_idx = torch.cat([torch.arange(0, min(sink, hi + 1)), torch.arange(max(sink, lo - recent + 1), hi + 1)]
                          ).to(q.device)
        rows = q_abs[start:stop]
        vis = _visible(mask, slice(start, stop), rows, k_idx, window)
        vis = vis & ((k_idx[None, :] < sink) | (k_idx[None, :] > rows[:, None] - recent))[None, None]
        out[:, :, start:stop] = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, start:stop], k[:, :, k_idx], v[:, :, k_idx], attn_mask=vis, scale=scale)
    return out.transpose(1, 2)
