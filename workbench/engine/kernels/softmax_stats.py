"""Typed wrapper of `softmax_stats.c`: softmax of a block of scores in place, with the streaming reducers' row
statistics and column sums, in one pass per row (float32 CPU tensors). `available()` says whether the compiled
kernel loaded and passed its self-check against `torch.softmax`; else the caller keeps its torch path.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass
from typing import Sequence

import torch

from workbench.engine import kernels

NAME = "softmax_stats"
SELF_CHECK_TOL = 1e-5  # float32 softmax (exp ~1 ulp, sums of ≤ 256 terms) vs a float64 reference
_I64, _PTR, _INT = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
_ARGTYPES = [_PTR, _I64, _I64, _I64, _I64, _I64, _INT, _I64, _I64, _PTR, _PTR, _I64, _PTR, _PTR, _I64, _PTR, _PTR,
             _PTR, _PTR, _I64, _INT, _PTR, _INT]
_LOG = logging.getLogger(__name__)
_STATE: dict[str, object] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class KeySets:
    """Key sets flattened for the kernel: keys of set j are `keys[offsets[j]:offsets[j + 1]]` (unique, sorted)."""

    keys: torch.Tensor  # int64
    offsets: torch.Tensor  # int64, n_sets + 1

    @staticmethod
    def of(sets: Sequence[torch.Tensor]) -> "KeySets":
        unique = [torch.unique(s.to(torch.int64).cpu()) for s in sets]
        sizes = torch.tensor([0, *[len(u) for u in unique]], dtype=torch.int64)
        keys = torch.cat(unique) if unique else torch.zeros(0, dtype=torch.int64)
        return KeySets(keys.contiguous(), torch.cumsum(sizes, 0).contiguous())

    @property
    def count(self) -> int:
        return len(self.offsets) - 1


@dataclass(frozen=True)
class RowStats:
    """Per head and query row `[B, H, T]`: max probability, its first key, distance; key-set masses `[S, B, H, T]`."""

    row_max: torch.Tensor
    row_argmax: torch.Tensor
    distance: torch.Tensor
    key_mass: torch.Tensor

    @staticmethod
    def empty(b: int, h: int, t: int, n_sets: int) -> "RowStats":
        return RowStats(torch.empty(b, h, t), torch.empty(b, h, t, dtype=torch.int64), torch.empty(b, h, t),
                        torch.empty(n_sets, b, h, t))

    def rows(self, start: int, stop: int) -> "RowStats":
        """Views of rows start..stop-1."""
        return RowStats(self.row_max[..., start:stop], self.row_argmax[..., start:stop],
                        self.distance[..., start:stop], self.key_mass[..., start:stop])


def available() -> bool:
    """Whether the kernel is built, loaded and agrees with torch's softmax on a random block."""
    with _LOCK:
        if "ok" not in _STATE:
            lib = kernels.load(NAME)
            if lib is not None:
                fn = lib.softmax_stats
                fn.argtypes, fn.restype = _ARGTYPES, None
                _STATE["fn"] = fn
            _STATE["ok"] = lib is not None and _self_check()
    return bool(_STATE["ok"])


def softmax_stats_(scores: torch.Tensor, q0: int, *, causal: bool, window: int | None, distance_window: int | None,
                   key_sets: KeySets, weights: torch.Tensor | None, col_sum: torch.Tensor | None,
                   into: RowStats, row0: int, normalized: bool = True) -> None:
    """Softmax `scores[B, H, C, K]` over K in place (rows at positions q0…q0+C−1; causal: keys > q invisible;
    window: keys ≤ q − window invisible; −inf logits invisible) and write each row's statistics to rows
    row0…row0+C−1 of `into` (from `RowStats.empty`). `weights[B, C]` scales each row's column sums;
    `col_sum[B, H, ≥K]` is added to in place (or None). `normalized=False` leaves `e = exp(s − max)` instead of
    P = e · row_max (one pass fewer when nothing else reads P: scale `e·V` by `row_max` instead)."""
    b, h, c, k = scores.shape
    if scores.dtype != torch.float32 or scores.device.type != "cpu" or not scores.is_contiguous():
        raise ValueError("softmax_stats_ needs a contiguous float32 CPU tensor")
    if col_sum is not None and (col_sum.shape[:2] != (b, h) or col_sum.shape[-1] < k or not col_sum.is_contiguous()
                                or col_sum.dtype != torch.float32):
        raise ValueError(f"col_sum must be a contiguous float32 [{b}, {h}, >= {k}] tensor, got {tuple(col_sum.shape)}")
    if weights is not None:
        weights = weights.to(torch.float32).contiguous()
        if weights.shape != (b, c):
            raise ValueError(f"weights must be [{b}, {c}], got {tuple(weights.shape)}")
    t = into.row_max.shape[-1]
    if into.row_max.shape != (b, h, t) or into.key_mass.shape != (key_sets.count, b, h, t) or row0 + c > t:
        raise ValueError(f"rows {row0}..{row0 + c} do not fit the output arrays {tuple(into.row_max.shape)}")
    threads = max(1, torch.get_num_threads())
    scratch = _scratch(2 * threads * k) if col_sum is not None else None
    _STATE["fn"](scores.data_ptr(), b * h, h, c, k, q0, int(causal), int(window or 0),
                 -1 if distance_window is None else int(distance_window), key_sets.keys.data_ptr(),
                 key_sets.offsets.data_ptr(), key_sets.count, _ptr(weights), _ptr(col_sum),
                 col_sum.shape[-1] if col_sum is not None else 0, into.row_max.data_ptr() + 4 * row0,
                 into.row_argmax.data_ptr() + 8 * row0, into.distance.data_ptr() + 4 * row0,
                 into.key_mass.data_ptr() + 4 * row0, t, int(normalized), _ptr(scratch), threads)


_SCRATCH = threading.local()


def _scratch(numel: int) -> torch.Tensor:
    """A per-thread float32 buffer of at least `numel` (the kernel's private column sums)."""
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.numel() < numel:
        buf = _SCRATCH.buf = torch.empty(numel)
    return buf


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _self_check() -> bool:
    """One causal block with a key set and column sums against float64 torch; a mismatch disables the kernel."""
    gen = torch.Generator().manual_seed(0)
    b, h, c, k, q0 = 2, 3, 5, 300, 295
    scores = torch.randn(b, h, c, k, generator=gen) * 4
    scores[1, :, 0] = float("-inf")  # a row with no visible key
    reference = scores.double().masked_fill(torch.arange(k)[None, :] > torch.arange(q0, q0 + c)[:, None],
                                            float("-inf")).softmax(-1).nan_to_num(0.0)
    col_sum = torch.zeros(b, h, k)
    weights = torch.ones(b, c)
    weights[0, 2] = 0.0
    sets = KeySets.of([torch.tensor([0, 1, 2, 3])])
    stats = RowStats.empty(b, h, c + 2, sets.count)
    try:
        softmax_stats_(scores, q0, causal=True, window=None, distance_window=None, key_sets=sets, weights=weights,
                       col_sum=col_sum, into=stats, row0=1)
        stats = stats.rows(1, c + 1)
    except (OSError, ValueError) as exc:
        _LOG.warning("The native kernel %r failed its self-check (%s); using the torch path.", NAME, exc)
        return False
    dist = (reference * (torch.arange(q0, q0 + c)[:, None] - torch.arange(k)[None, :]).double()).sum(-1)
    checks = {
        "softmax": (scores.double() - reference).abs().max(),
        "row max": (stats.row_max.double() - reference.max(-1).values).abs().max(),
        "column sums": (col_sum.double() - (reference * weights.double()[:, None, :, None]).sum(2)).abs().max(),
        "distance": ((stats.distance.double() - dist) / dist.abs().clamp_min(1.0)).abs().max(),
        "key mass": (stats.key_mass[0].double() - reference[..., :4].sum(-1)).abs().max(),
    }
    bad = {name: float(err) for name, err in checks.items() if not float(err) <= SELF_CHECK_TOL}
    argmax_ok = bool((stats.row_argmax[0] == reference[0].argmax(-1)).all())
    if bad or not argmax_ok:
        _LOG.warning("The native kernel %r disagrees with torch (%s%s); using the torch path.", NAME, bad,
                     "" if argmax_ok else ", argmax")
        return False
    return True
