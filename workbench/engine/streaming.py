"""Streaming attention: per-head statistics while the model runs, never holding a T×T×heads tensor.

A twin HF model shares the bridge's weights and uses our attention function: statistics layers compute
q·kᵀ·scale + mask block by block over query rows (blocks sized to a memory budget). On the CPU one native kernel
(`kernels.softmax_stats`) then does the softmax and every row statistic and column sum in one pass per row, and
one matmul gives P·V; elsewhere (or without a C compiler) torch's fused softmax, one matmul by
`[V | reducers.value_columns]` (head output, distance, key-set masses) and `reducers.LayerAccumulator` reduce
the rest. Other layers run SDPA. Handles KV caches, GQA
(query head h reads KV group h // (H / H_kv)), sliding windows, soft-capping; statistics run in float32.
Edits (`HeadEdit`, from workbench.edits.apply): score edits recompute their heads block by block, z edits
rewrite head outputs. When every score edit of a layer gives `visible_keys`, only those keys' logits are
computed (same numbers, O(T·window)). A layer with edits cannot also collect statistics in that forward.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import torch

from workbench.core.errors import InterventionError
from workbench.engine.devices import ACCUMULATE
from workbench.engine.kernels import softmax_stats
from workbench.engine.reducers import (
    AttentionStats,
    LayerAccumulator,
    ReducerRequest,
    finalize,
    key_index_tensors,
    value_columns,
)

BLOCK_BYTES = 48 * 2**20  # budget for one block of scores; peaks hold a few such tensors
ROWS_PER_BLOCK = 64  # torch path at 8192 tokens, whole model vs SDPA: 64 rows 1.54x, 32 rows 1.61x, 16 rows 2.01x
STREAM_ATTN_IMPL = "workbench_stream"  # the attention implementation name the twin is built with
_ACTIVE: contextvars.ContextVar["_Collector | None"] = contextvars.ContextVar("workbench_stream", default=None)
_EDITS: contextvars.ContextVar["Mapping[int, Sequence[HeadEdit]] | None"] = contextvars.ContextVar(
    "workbench_stream_edits", default=None)
_REGISTERED = False


@dataclass(frozen=True)
class HeadEdit:
    """A pure edit `fn(x, q_pos) -> x` of some heads of one layer at `site` (shapes: workbench.edits.kinds).
    Optional for score edits, `visible_keys(q0, q1)`: half-open key ranges holding every key queries q0..q1 may see;
    then `fn(x, q_pos, k_pos)` must also accept the scores of just those keys `k_pos`.
    """

    site: str
    heads: tuple[int, ...]
    fn: Callable[..., torch.Tensor]
    visible_keys: Callable[[int, int], Sequence[tuple[int, int]]] | None = None


def apply_head_edit(edit: HeadEdit, x: torch.Tensor, q_pos: torch.Tensor) -> torch.Tensor:
    """`x` (every head, or the residual) with `edit` applied to its heads; a new tensor."""
    if edit.site == "resid":
        return edit.fn(x, q_pos)
    x, idx = x.clone(), list(edit.heads)
    if edit.site == "scores":
        x[:, idx] = edit.fn(x[:, idx], q_pos)
    else:
        x[:, :, idx] = edit.fn(x[:, :, idx], q_pos)
    return x


@contextmanager
def edited(per_layer: Mapping[int, Sequence[HeadEdit]]) -> Iterator[None]:
    """Within this block, forwards of a streaming twin apply the score and z edits of `per_layer`."""
    token = _EDITS.set(dict(per_layer) or None)
    try:
        yield
    finally:
        _EDITS.reset(token)


@dataclass
class _Collector:
    request: ReducerRequest
    query_valid: torch.Tensor | None  # [B, T_total] over absolute positions, True for real tokens
    output_positions: torch.Tensor | None  # [B, P] absolute positions, or None
    accs: dict[int, LayerAccumulator] = field(default_factory=dict)
    keys: dict[str, torch.Tensor] = field(default_factory=dict)
    scratch: torch.Tensor | None = None  # one score buffer reused by every block of every layer
    flat_key_sets: softmax_stats.KeySets | None = None
    position_lists: list[list[int]] | None = None

    def output_position_lists(self) -> list[list[int]]:
        """`output_positions[:, p]` for each p as Python ints (a block checks them without a device sync)."""
        if self.position_lists is None:
            self.position_lists = self.output_positions.T.tolist()
        return self.position_lists

    def key_sets(self) -> softmax_stats.KeySets:
        """The request's key sets in the fused kernel's layout (built once)."""
        if self.flat_key_sets is None:
            self.flat_key_sets = softmax_stats.KeySets.of(list(self.keys.values()))
        return self.flat_key_sets

    def score_buffer(self, numel: int, like: torch.Tensor) -> torch.Tensor:
        """Reusing one buffer keeps the allocator from fragmenting (RSS grew ~0.8 GB at 2048 tokens without). It is
        sized for a layer's last (largest) block before the first: a buffer regrown for each causal block, every one
        larger than the one freed before it, left ~0.8 GB of unusable heap at 8192 tokens."""
        if self.scratch is None or self.scratch.numel() < numel or self.scratch.dtype != like.dtype:
            self.scratch = like.new_empty(numel)
        return self.scratch[:numel]


def register() -> None:
    """Register the attention function and its mask function with transformers (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(STREAM_ATTN_IMPL, stream_attention)
    AttentionMaskInterface.register(STREAM_ATTN_IMPL, sdpa_mask)
    _REGISTERED = True


@contextmanager
def collecting(request: ReducerRequest, query_valid: torch.Tensor | None = None,
               output_positions: torch.Tensor | None = None) -> Iterator[_Collector]:
    """Within this block, forwards of a streaming twin accumulate statistics into the collector."""
    collector = _Collector(request, query_valid, output_positions, keys=key_index_tensors(request))
    token = _ACTIVE.set(collector)
    try:
        yield collector
    finally:
        _ACTIVE.reset(token)


def collected_stats(collector: _Collector) -> AttentionStats:
    return finalize(collector.accs, collector.request)


def stream_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention interface: `(module, q[B,H,Tq,D], k[B,Hkv,Tk,D], v, mask) -> (out[B,Tq,H,D], None)`."""
    collector = _ACTIVE.get()
    layer = int(getattr(module, "layer_idx", -1))
    layer_edits = (_EDITS.get() or {}).get(layer)
    if layer_edits:
        if collector is not None and collector.request.wants(layer):
            raise InterventionError(f"Layer {layer} has edits and statistics requested; restrict the request's "
                                    "layers.")
        return _edited_attention(layer_edits, module, query, key, value, attention_mask, scaling, kwargs), None
    if collector is None or not collector.request.wants(layer):
        return _sdpa(module, query, key, value, attention_mask, scaling, kwargs)
    acc = collector.accs.setdefault(layer, LayerAccumulator())
    out = _blockwise(collector, acc, module, query, key, value, attention_mask, scaling, kwargs)
    return out.transpose(1, 2).contiguous(), None


def _sdpa(module, query, key, value, mask, scaling, kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, mask, dropout=0.0, scaling=scaling, **kwargs)


def _edited_attention(edits, module, query, key, value, mask, scaling, kwargs) -> torch.Tensor:
    """SDPA for every head, then the score-edited heads recomputed and the z edits applied: `out[B,Tq,H,D]`."""
    out = _sdpa(module, query, key, value, mask, scaling, kwargs)[0]
    q_pos = torch.arange(key.shape[2] - query.shape[2], key.shape[2], device=query.device)
    scored = sorted({h for e in edits if e.site == "scores" for h in e.heads})
    if scored:
        if kwargs.get("softcap") or getattr(module, "attn_logit_softcapping", None):
            raise InterventionError("Attention edits do not support attention logit soft-capping.")
        window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
        out = out.clone()
        out[:, :, scored] = _scored_heads(edits, scored, query, key, value, mask, scaling, window, q_pos)
    for edit in edits:
        if edit.site == "z":
            out = apply_head_edit(edit, out, q_pos)
    return out


def _scored_heads(edits, heads, query, key, value, mask, scaling, window, q_pos) -> torch.Tensor:
    """softmax(edit(q·kᵀ·scale + mask))·V for `heads`, block by block over query rows: `[B, Tq, n, D]`."""
    group = query.shape[1] // key.shape[1]
    idx = torch.tensor(heads, device=query.device)
    q, k, v = query[:, idx], key[:, idx // group], value[:, idx // group]
    scale = scaling if scaling is not None else q.shape[-1] ** -0.5
    where = {h: i for i, h in enumerate(heads)}
    score_edits = [e for e in edits if e.site == "scores"]
    tq, tk = q.shape[2], k.shape[2]
    out = q.new_empty(q.shape)
    for start in range(0, tq, ROWS_PER_BLOCK):
        stop, rows = min(tq, start + ROWS_PER_BLOCK), q_pos[start:start + ROWS_PER_BLOCK]
        keys = _block_keys(score_edits, int(rows[0]), int(rows[-1]), tk, q.device)
        k_b, v_b = (k, v) if keys is None else (k[:, :, keys], v[:, :, keys])
        keys_b = torch.arange(tk, device=q.device) if keys is None else keys
        scores = torch.matmul(q[:, :, start:stop] * scale, k_b.transpose(-1, -2))  # [B, n, rows, keys]
        far = keys_b[None, :] > rows[:, None]
        if window:
            far |= keys_b[None, :] <= rows[:, None] - int(window)
        scores.masked_fill_(far, float("-inf"))
        if mask is not None:
            block = mask[..., start:stop, :tk] if keys is None else mask[..., start:stop, keys]
            scores = scores.masked_fill(~block, float("-inf")) if block.dtype == torch.bool else scores + block
        for edit in score_edits:
            sel = [where[h] for h in edit.heads]
            part = edit.fn(scores[:, sel], rows) if keys is None else edit.fn(scores[:, sel], rows, keys)
            scores[:, sel] = part
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a row with no visible key carries no attention
        out[:, :, start:stop] = torch.matmul(probs, v_b)
    return out.transpose(1, 2)


def _block_keys(score_edits, q0: int, q1: int, tk: int, device) -> torch.Tensor | None:
    """The keys some edit lets queries q0..q1 see, when every score edit hints them; None: all `tk` keys."""
    if not all(e.visible_keys is not None for e in score_edits):
        return None
    seen = torch.zeros(tk, dtype=torch.bool)
    for e in score_edits:
        for lo, hi in e.visible_keys(q0, q1):
            seen[max(0, lo):max(0, min(hi, tk))] = True
    return None if bool(seen.all()) else seen.nonzero()[:, 0].to(device)


def _blockwise(collector, acc, module, query, key, value, mask, scaling, kwargs) -> torch.Tensor:
    """Scores, softmax, P·V and every reduction in float32 (ACCUMULATE) whatever the model's dtype.
    Per block: one Q·Kᵀ matmul per KV head (its query heads stacked as rows), then on the CPU the fused kernel
    (`kernels.softmax_stats`: softmax, row max/argmax, distance, key-set masses and column sums in one pass per
    row) and `P·V`; elsewhere (or without the kernel) one fused softmax, one matmul `P·[V | value_columns]`
    (head output, `Σ P·k`, key-set masses), row max and column sums (a vector·matrix).
    """
    out_dtype = query.dtype
    query, key, value = (x.to(ACCUMULATE) for x in (query, key, value))
    b, h, tq, d = query.shape
    h_kv, tk = key.shape[1], key.shape[2]
    group = h // h_kv
    scale = scaling if scaling is not None else d**-0.5
    softcap = kwargs.get("softcap") or getattr(module, "attn_logit_softcapping", None)
    window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
    q_offset = tk - tq
    qg = (query if softcap else query * scale).view(b, h_kv, group, tq, d)
    k_t = key.transpose(-1, -2)  # [B, Hkv, D, Tk]
    fused = query.device.type == "cpu" and softmax_stats.available()
    if fused:
        v_aug, row_stats = value, softmax_stats.RowStats.empty(b, h, tq, collector.key_sets().count)
        needs_probs = bool(collector.request.entropy or collector.request.offsets)  # else the kernel skips P
        if collector.request.column_sums:
            acc.grow_col_sum(b, h, tk, query)
    else:
        extra = value_columns(collector.request, collector.keys, tk, value)  # [Tk, E]
        v_aug = torch.cat([value, extra.expand(b, h_kv, tk, extra.shape[-1])], dim=-1) if extra.numel() else value
    rows = max(1, min(tq, ROWS_PER_BLOCK, BLOCK_BYTES // max(1, b * h * tk * 4)))
    collector.score_buffer(b * h * rows * tk, query)  # the largest block first: growing blocks fragment the heap
    out = query.new_empty(b, h, tq, d)
    for start in range(0, tq, rows):
        stop = min(tq, start + rows)
        c, k_len = stop - start, min(tk, q_offset + stop)  # causal: later keys are never visible to this block
        q_pos = torch.arange(q_offset + start, q_offset + stop, device=query.device)
        buffer = collector.score_buffer(b * h * c * k_len, query).view(b, h_kv, group * c, k_len)
        q_block = qg[:, :, :, start:stop].reshape(b, h_kv, group * c, d)
        scores = torch.matmul(q_block, k_t[..., :k_len], out=buffer)
        if softcap:
            scores.mul_(scale / softcap).tanh_().mul_(softcap)
        scores = scores.view(b, h, c, k_len)
        valid = None if collector.query_valid is None else collector.query_valid[:, q_pos]
        if fused:
            if mask is not None:
                _mask_block(scores, mask, q_pos, start, stop, window)
            softmax_stats.softmax_stats_(
                scores, q_offset + start, causal=mask is None, window=window if mask is None else None,
                distance_window=collector.request.distance_window, key_sets=collector.key_sets(),
                weights=valid, col_sum=acc.col_sum if collector.request.column_sums else None, into=row_stats,
                row0=start, normalized=needs_probs)
            probs = scores  # P if needs_probs, else e = P / row max
            pv = torch.matmul(probs.view(b, h_kv, group * c, k_len), value[..., :k_len, :]).view(b, h, c, d)
            out[:, :, start:stop] = pv if needs_probs else pv.mul_(row_stats.row_max[..., start:stop, None])
            acc.add_block(probs, q_pos, collector.request, valid, collector.keys,
                          row_stats=row_stats.rows(start, stop))
        else:
            _mask_block(scores, mask, q_pos, start, stop, window)
            probs = _softmax_(scores)
            if mask is not None:
                probs.nan_to_num_(0.0)  # rows with no visible key (padding) carry no attention
            pv = torch.matmul(probs.view(b, h_kv, group * c, k_len), v_aug[..., :k_len, :]).view(b, h, c, -1)
            out[:, :, start:stop] = pv[..., :d]
            acc.add_block(probs, q_pos, collector.request, valid, collector.keys, projected=pv[..., d:])
        _gather_head_outputs(collector, acc, module, out, q_pos, start, stop)
    return out.to(out_dtype)


def _softmax_(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis, in place: one fused kernel, row by row (no second block-sized buffer)."""
    return torch.ops.aten._softmax.out(scores, -1, False, out=scores)


def _mask_block(scores, mask, q_pos, start, stop, window) -> None:
    """Set invisible keys of a block of rows to -inf, in place."""
    k_len = scores.shape[-1]
    if mask is not None:
        block = mask[..., start:stop, :k_len]
        if block.dtype == torch.bool:
            scores.masked_fill_(~block, float("-inf"))
        else:
            scores.add_(block.to(scores.dtype))
        return
    # Causal: only the last `rows` columns can lie in the future of some row of the block.
    lo = max(0, k_len - (stop - start))
    k_pos = torch.arange(lo, k_len, device=scores.device)
    scores[..., lo:].masked_fill_(k_pos[None, :] > q_pos[:, None], float("-inf"))
    if window:
        far = torch.arange(k_len, device=scores.device)[None, :] <= q_pos[:, None] - int(window)
        scores.masked_fill_(far, float("-inf"))


def _gather_head_outputs(collector, acc, module, out, q_pos, start, stop) -> None:
    """Store z·W_O per head at the requested absolute positions that fall in this block."""
    wanted = collector.output_positions
    if wanted is None or wanted.numel() == 0:
        return
    first, last = int(q_pos[0]), int(q_pos[-1])  # q_pos: the block's absolute positions, ascending
    hits = [p for p, column in enumerate(collector.output_position_lists()) if any(first <= x <= last for x in column)]
    if not hits:
        return
    w_o = module.o_proj.weight.to(out.dtype)  # [d_model, H*D]
    b, h, _, d = out.shape
    w_heads = w_o.reshape(w_o.shape[0], h, d).permute(1, 2, 0)  # [H, D, d_model]
    for p in hits:
        pos = wanted[:, p]
        inside = (pos >= first) & (pos <= last)
        rel = (pos - first + start).clamp(start, stop - 1)
        z = out[torch.arange(b, device=out.device), :, rel]  # [B, H, D]
        vec = torch.einsum("bhd,hdm->bhm", z, w_heads)
        prev = acc.head_out.get(p, torch.zeros_like(vec))
        acc.head_out[p] = torch.where(inside[:, None, None], vec, prev)
