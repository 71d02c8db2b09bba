"""Streaming per-head attention statistics from blocks `probs[B, H, C, K]` of query rows at positions `q_pos[C]`.

Per (layer, head, token): row argmax `argmax_k A[q,k]` and value; column sums `Σ_q A[q,k]`; distance
`Σ_k A[q,k]·min(q−k, W)`; key-set mass `Σ_{k∈S} A[q,k]`; offsets `A[q, q−o]`; optional entropy
`−Σ_k A log A`. `stats_from_patterns` reduces full `[B, H, T, T]` patterns: the reference in tests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Mapping, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class ReducerRequest:
    """Which statistics to compute while the model runs, and for which layers (None: all)."""

    row_argmax: bool = True
    column_sums: bool = True
    distance: bool = True
    distance_window: int | None = None
    key_sets: Mapping[str, Sequence[int]] = field(default_factory=dict)
    offsets: Sequence[int] = ()
    entropy: bool = False
    output_positions: Sequence[int] = ()  # head-output vectors z·W_O at these query positions
    layers: Sequence[int] | None = None

    def wants(self, layer: int) -> bool:
        return self.layers is None or layer in self.layers


@dataclass
class LayerAccumulator:
    """Per-layer running statistics; rows are appended per block, columns summed."""

    row_pos: list[torch.Tensor] = field(default_factory=list)
    argmax_pos: list[torch.Tensor] = field(default_factory=list)
    argmax_val: list[torch.Tensor] = field(default_factory=list)
    distance: list[torch.Tensor] = field(default_factory=list)
    entropy: list[torch.Tensor] = field(default_factory=list)
    key_mass: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    offset_mass: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    col_sum: torch.Tensor | None = None
    head_out: dict[int, torch.Tensor] = field(default_factory=dict)  # abs position -> [B, H, d_model]

    def add_block(self, probs: torch.Tensor, q_pos: torch.Tensor, request: ReducerRequest,
                  query_valid: torch.Tensor | None, key_index: dict[str, torch.Tensor],
                  projected: torch.Tensor | None = None, row_stats=None) -> None:
        """Reduce `probs[B, H, C, K]` at `q_pos[C]`; `query_valid[B, C]` masks padding; accumulates in float32.
        `projected[B, H, C, E]`: `probs · value_columns(...)[:K]` when the caller got it from its P·V matmul.
        `row_stats` (`kernels.softmax_stats.RowStats`): row max/argmax, distance and key-set masses the fused
        kernel computed with the softmax, which also added this block's column sums (`grow_col_sum`).
        """
        if probs.dtype != torch.float32:
            probs = probs.to(torch.float32)
        self.row_pos.append(q_pos)
        if row_stats is not None:
            if request.row_argmax:
                self.argmax_val.append(row_stats.row_max)
                self.argmax_pos.append(row_stats.row_argmax)
            if request.distance:
                self.distance.append(row_stats.distance)
            for i, name in enumerate(key_index):
                self.key_mass.setdefault(name, []).append(row_stats.key_mass[i])
        else:
            if projected is None:
                columns = value_columns(request, key_index, probs.shape[-1], probs)
                projected = torch.matmul(probs, columns) if columns.shape[-1] else None
            if request.row_argmax:
                val, pos = _row_max(probs)
                self.argmax_val.append(val)
                self.argmax_pos.append(pos)
            if request.distance:
                self.distance.append(_distance(probs, q_pos, request.distance_window, projected[..., 0]))
            for i, name in enumerate(key_index, start=int(request.distance)):
                self.key_mass.setdefault(name, []).append(projected[..., i].contiguous())  # not a view of P·V
            if request.column_sums:
                self._add_columns(probs, query_valid)
        if request.entropy:
            self.entropy.append(-(probs * probs.clamp_min(1e-30).log()).sum(-1))
        for offset in request.offsets:
            idx = q_pos - int(offset)
            picked = probs.gather(-1, idx.clamp(min=0)[:, None].expand(*probs.shape[:-1], 1))[..., 0]
            self.offset_mass.setdefault(int(offset), []).append(picked * (idx >= 0))

    def grow_col_sum(self, b: int, h: int, n_keys: int, like: torch.Tensor) -> None:
        """Make `col_sum` a contiguous float32 `[b, h, ≥ n_keys]` of running sums (zeros where new)."""
        if self.col_sum is None:
            self.col_sum = torch.zeros(b, h, n_keys, dtype=torch.float32, device=like.device)
        elif self.col_sum.shape[-1] < n_keys or not self.col_sum.is_contiguous():
            width = max(n_keys, self.col_sum.shape[-1])
            self.col_sum = torch.nn.functional.pad(self.col_sum, (0, width - self.col_sum.shape[-1])).contiguous()

    def _add_columns(self, probs: torch.Tensor, query_valid: torch.Tensor | None) -> None:
        """`col_sum[k] += Σ_q valid[q]·A[q,k]` as one vector-matrix product per head (one read of the block)."""
        b, _, c, k_len = probs.shape
        weights = probs.new_ones(b, 1, 1, c) if query_valid is None else query_valid.to(probs.dtype)[:, None, None]
        cols = torch.matmul(weights, probs)[..., 0, :]  # [B, H, K]
        if self.col_sum is None:
            self.col_sum = cols
            return
        if k_len > self.col_sum.shape[-1]:
            self.col_sum = torch.nn.functional.pad(self.col_sum, (0, k_len - self.col_sum.shape[-1]))
        self.col_sum[..., :k_len] += cols


def _row_max(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(max, first argmax)` over the last axis; on the CPU through numpy's SIMD argmax (~4× faster than
    `torch.max(dim)`, whose index-tracking loop is scalar), elsewhere `torch.max`."""
    if probs.device.type != "cpu":
        return probs.max(dim=-1)
    pos = torch.from_numpy(np.argmax(probs.detach().numpy(), axis=-1))
    return probs.gather(-1, pos[..., None])[..., 0], pos


def value_columns(request: ReducerRequest, key_index: Mapping[str, torch.Tensor], n_keys: int,
                  like: torch.Tensor) -> torch.Tensor:
    """`[n_keys, E]` columns whose product with a pattern row gives `Σ_k A·k` (if distance), then `Σ_{k∈S} A`
    for each key set: appended to V, the P·V matmul yields them with the head output (no extra pass)."""
    cols = []
    if request.distance:
        cols.append(torch.arange(n_keys, device=like.device, dtype=like.dtype))
    for idx in key_index.values():
        member = torch.zeros(n_keys, device=like.device, dtype=like.dtype)
        member[idx[idx < n_keys].to(like.device)] = 1.0
        cols.append(member)
    return torch.stack(cols, dim=-1) if cols else like.new_zeros(n_keys, 0)


@dataclass
class AttentionStats:
    """Stacked statistics: row stats `[B, L, H, Tq]`, `col_sum [B, L, H, Tk]`, `head_out [B, L, P, H, d]`."""

    layers: tuple[int, ...]
    q_pos: torch.Tensor
    argmax_pos: torch.Tensor | None = None
    argmax_val: torch.Tensor | None = None
    distance: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    col_sum: torch.Tensor | None = None
    key_mass: dict[str, torch.Tensor] = field(default_factory=dict)
    offset_mass: dict[int, torch.Tensor] = field(default_factory=dict)
    head_out: torch.Tensor | None = None
    output_positions: tuple[int, ...] = ()

    def layer_index(self, layer: int) -> int:
        return self.layers.index(layer)

    def cpu(self) -> "AttentionStats":
        """The same statistics with every tensor on the CPU (small: per row or per key, never T×T)."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.cpu()
            elif isinstance(value, dict):
                moved[name] = {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in value.items()}
        return AttentionStats(**moved)


def _distance(probs: torch.Tensor, q_pos: torch.Tensor, window: int | None,
              weighted_keys: torch.Tensor) -> torch.Tensor:
    """`Σ_k A[q,k]·min(q−k, W)`: unclipped `q − Σ_k A·k` (`weighted_keys`); clipped
    `Σ_band A·(q−k) + W·(1 − Σ_band A)`."""
    k_len = probs.shape[-1]
    if window is None or window >= k_len:
        return q_pos.to(probs.dtype) - weighted_keys
    offsets = torch.arange(window, device=probs.device)
    idx = q_pos[:, None] - offsets[None, :]  # [C, W] keys at distance 0..W-1
    inside = idx >= 0
    band = probs.gather(-1, idx.clamp(min=0).expand(*probs.shape[:-1], window)) * inside
    near = (band * offsets.to(probs.dtype)).sum(-1)
    return near + window * (1.0 - band.sum(-1))


def finalize(accs: Mapping[int, LayerAccumulator], request: ReducerRequest) -> AttentionStats:
    """Concatenate each layer's blocks (sorted by query position) and stack layers."""
    layers = tuple(sorted(accs))
    if not layers:
        raise ValueError("No layer was reduced: check ReducerRequest.layers against the model's layers.")

    def rows(get) -> torch.Tensor | None:
        per_layer = []
        for layer in layers:
            acc = accs[layer]
            parts = get(acc)
            if not parts:
                return None
            order = torch.argsort(torch.cat(acc.row_pos))
            per_layer.append(torch.cat(parts, dim=-1)[..., order])
        return torch.stack(per_layer, dim=1)

    first = accs[layers[0]]
    stats = AttentionStats(layers=layers, q_pos=torch.sort(torch.cat(first.row_pos)).values)
    stats.argmax_pos = rows(lambda a: a.argmax_pos)
    stats.argmax_val = rows(lambda a: a.argmax_val)
    stats.distance = rows(lambda a: a.distance)
    stats.entropy = rows(lambda a: a.entropy)
    for name in request.key_sets:
        stats.key_mass[name] = rows(lambda a, n=name: a.key_mass.get(n, []))
    for offset in request.offsets:
        stats.offset_mass[int(offset)] = rows(lambda a, o=int(offset): a.offset_mass.get(o, []))
    if request.column_sums:
        width = max(accs[layer].col_sum.shape[-1] for layer in layers)
        stats.col_sum = torch.stack(
            [torch.nn.functional.pad(accs[layer].col_sum, (0, width - accs[layer].col_sum.shape[-1]))
             for layer in layers], dim=1)
    positions = sorted(first.head_out)
    if positions:
        stats.output_positions = tuple(positions)
        stats.head_out = torch.stack(
            [torch.stack([accs[layer].head_out[p] for p in positions], dim=1) for layer in layers], dim=1)
    return stats


def key_index_tensors(request: ReducerRequest, device=None) -> dict[str, torch.Tensor]:
    out = {}
    for name, positions in request.key_sets.items():
        idx = torch.as_tensor(sorted(set(int(p) for p in positions)), dtype=torch.long, device=device)
        if idx.numel() and idx.min() < 0:
            raise ValueError(f"Key set {name!r} has negative positions; give absolute token positions.")
        out[name] = idx
    return out


def stats_from_patterns(patterns: Mapping[int, torch.Tensor], request: ReducerRequest,
                        query_valid: torch.Tensor | None = None) -> AttentionStats:
    """Reference: reduce full post-softmax patterns `{layer: [B, H, T, T]}` in one block per layer."""
    keys = key_index_tensors(request)
    accs = {}
    for layer, pattern in patterns.items():
        if not request.wants(layer):
            continue
        acc = LayerAccumulator()
        acc.add_block(pattern.float(), torch.arange(pattern.shape[-2], device=pattern.device), request,
                      query_valid, keys)
        accs[layer] = acc
    return finalize(accs, request)


_STAT_FIELDS = ("q_pos", "argmax_pos", "argmax_val", "distance", "entropy", "col_sum", "head_out")


def request_fingerprint(request: ReducerRequest) -> str:
    payload = asdict(request)
    payload["key_sets"] = {k: sorted(int(p) for p in v) for k, v in request.key_sets.items()}
    payload["output_positions"] = [int(p) for p in request.output_positions]
    payload["offsets"] = [int(o) for o in request.offsets]
    payload["layers"] = None if request.layers is None else [int(x) for x in request.layers]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def stats_to_tensors(stats: AttentionStats) -> dict[str, torch.Tensor]:
    """Flatten stats into named tensors (for safetensors)."""
    out = {"layers": torch.tensor(stats.layers, dtype=torch.long),
           "output_positions": torch.tensor(stats.output_positions, dtype=torch.long)}
    for name in _STAT_FIELDS:
        value = getattr(stats, name)
        if value is not None:
            out[name] = value
    out.update({f"key_mass.{k}": v for k, v in stats.key_mass.items()})
    out.update({f"offset_mass.{o}": v for o, v in stats.offset_mass.items()})
    return out


def stats_from_tensors(tensors: Mapping[str, torch.Tensor], request: ReducerRequest) -> AttentionStats:
    stats = AttentionStats(layers=tuple(tensors["layers"].tolist()), q_pos=tensors["q_pos"],
                           output_positions=tuple(tensors["output_positions"].tolist()))
    for f in fields(AttentionStats):
        if f.name in _STAT_FIELDS and f.name != "q_pos":
            setattr(stats, f.name, tensors.get(f.name))
    stats.key_mass = {k: tensors[f"key_mass.{k}"] for k in request.key_sets}
    stats.offset_mass = {int(o): tensors[f"offset_mass.{int(o)}"] for o in request.offsets}
    return stats
