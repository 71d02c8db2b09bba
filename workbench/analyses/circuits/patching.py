"""Per-head causal effects on a contrast set (clean prompts + corrupted twins), three ways.

M = mean metric over prompts (always with the clean answer tokens); score = (M_patched − M_clean) /
(M_corrupt − M_clean) (1: the head alone carries the corruption's whole effect).
- activation patching (Wang et al. 2022): clean run with head h's z set to its corrupted value.
- attribution patching (Nanda 2023; Syed et al. 2023): `ΔM[h] ≈ Σ_{n,t} (z_corrupt − z_clean) · ∂M/∂z`.
- path patching to receivers R (Wang et al. 2022; Goldowsky-Dill et al. 2023): (1) clean run with h corrupted
  and every other head outside R frozen clean, record R's z; (2) clean run with R's z patched in (all positions
  or END only). R = ∅: h's direct path to the logits.
`per_prompt=True` gives `[L, H, N]`: `(M_patched[n] − M_clean)/(M_corrupt − M_clean)`, whose mean is the score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from workbench.core.contrast import ContrastSet, aligned_ids
from workbench.core.errors import WorkbenchError
from workbench.core.heads import HeadRef, check_heads, parse_heads
from workbench.engine.head_io import Prefix, capture_z, last_logits
from workbench.engine.metrics import metric_values
from workbench.models.loading import model_info

RECEIVER_POSITIONS = ("all", "last")


@dataclass
class Baseline:
    """Clean and corrupted runs of a contrast set, grouped by token length (no padding inside a group)."""

    groups: list[list[int]]  # prompt rows per equal-length group
    prefixes: list[Prefix | None]  # per group: keys/values of the tokens every clean/corrupt pair shares
    suffix_ids: list[list[list[int]]]  # per group: the clean tokens after the prefix
    clean_z: list[torch.Tensor]  # per group [L, B, T_suffix, H, d]
    corrupt_z: list[torch.Tensor]
    clean_metric: np.ndarray  # per prompt
    corrupt_metric: np.ndarray

    @property
    def m_clean(self) -> float:
        return float(self.clean_metric.mean())

    @property
    def m_corrupt(self) -> float:
        return float(self.corrupt_metric.mean())

    def normalise(self, m_patched: np.ndarray | float) -> np.ndarray:
        gap = self.m_corrupt - self.m_clean
        if abs(gap) < 1e-6:
            raise WorkbenchError("The corruption does not change the metric (M_corrupt ≈ M_clean); patching "
                                 "scores would divide by zero. Check the corrupted twins.")
        return (np.asarray(m_patched) - self.m_clean) / gap


def by_length(ids: Sequence[Sequence[int]]) -> list[list[int]]:
    """Indices of `ids` grouped by token length (first-seen order): prompts of a group batch without padding."""
    groups: dict[int, list[int]] = {}
    for i, seq in enumerate(ids):
        groups.setdefault(len(seq), []).append(i)
    return list(groups.values())


def baseline(model, contrast: ContrastSet, *, batch_size: int = 64) -> Baseline:
    """Clean/corrupted metrics and every head's z on both, batched by token length."""
    clean_ids, corrupt_ids = aligned_ids(model, contrast)
    groups = [rows[s:s + batch_size] for rows in by_length(clean_ids) for s in range(0, len(rows), batch_size)]
    meta = contrast.clean.metadata
    clean_m, corrupt_m = np.zeros(len(contrast)), np.zeros(len(contrast))
    clean_z, corrupt_z, prefixes, suffixes = [], [], [], []
    for rows in groups:
        p = min(_shared_prefix(clean_ids[i], corrupt_ids[i]) for i in rows)
        prefix = Prefix(model, torch.tensor([clean_ids[i][:p] for i in rows])) if p > 0 else None
        prefixes.append(prefix)
        suffixes.append([clean_ids[i][p:] for i in rows])
        for ids, zs, out in ((clean_ids, clean_z, clean_m), (corrupt_ids, corrupt_z, corrupt_m)):
            logits, z = capture_z(model, [ids[i][p:] for i in rows], prefix)
            zs.append(z)
            out[rows] = metric_values(logits, [meta[i] for i in rows], contrast.metric).detach().numpy()
    return Baseline(groups, prefixes, suffixes, clean_z, corrupt_z, clean_m, corrupt_m)


def _shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Tokens the two prompts share at the start, keeping at least one token to run."""
    n = 0
    while n < len(a) - 1 and a[n] == b[n]:
        n += 1
    return n


def _group_metric(model, contrast, base: Baseline, g: int, n_copies: int, z_edit) -> np.ndarray:
    """Metric of group g, tiled `n_copies` times in the batch → `[n_copies, B]` per copy and prompt."""
    rows = base.groups[g]
    ids = base.suffix_ids[g] * n_copies
    meta = [contrast.clean.metadata[i] for i in rows] * n_copies
    with torch.no_grad():
        values = metric_values(last_logits(model, ids, z_edit, base.prefixes[g], n_copies), meta, contrast.metric)
    return values.view(n_copies, len(rows)).double().numpy()


def activation_patching(model, contrast: ContrastSet, base: Baseline | None = None, *,
                        layers: Iterable[int] | None = None, max_rows: int = 256, progress: bool = True,
                        per_prompt: bool = False) -> np.ndarray:
    """Exact per-head patching scores `[L, H]` (`[L, H, N]` per prompt; NaN for layers not asked for)."""
    info = model_info(model)
    base = base or baseline(model, contrast)
    layers = list(range(info.n_layers)) if layers is None else sorted(set(layers))
    n, h_all = len(contrast), info.n_heads
    values = np.full((info.n_layers, h_all, n), np.nan)
    bar = tqdm(total=len(layers) * h_all * n, desc="activation patching", unit="prompt×head", disable=not progress)
    for g, rows in enumerate(base.groups):
        per_pass = max(1, max_rows // len(rows))
        for layer in layers:
            for start in range(0, h_all, per_pass):
                heads = list(range(start, min(h_all, start + per_pass)))
                corrupt = base.corrupt_z[g][layer]

                def edit(lay, z, layer=layer, heads=heads, corrupt=corrupt):
                    if lay != layer:
                        return z
                    z = z.clone()
                    b = corrupt.shape[0]
                    for copy, head in enumerate(heads):
                        z[copy * b:(copy + 1) * b, :, head] = corrupt[:, :, head]
                    return z
                values[layer][heads[0]:heads[-1] + 1, rows] = _group_metric(model, contrast, base, g, len(heads), edit)
                bar.update(len(heads) * len(rows))
    bar.close()
    return _scores(base, values, per_prompt)


def _scores(base: Baseline, metric: np.ndarray, per_prompt: bool) -> np.ndarray:
    """Patched metrics `[L, H, N]` → normalised per-prompt shares, or their mean over prompts `[L, H]`."""
    shares = base.normalise(metric)
    return shares if per_prompt else shares.mean(-1)


def attribution_patching(model, contrast: ContrastSet, base: Baseline | None = None, *,
                         per_prompt: bool = False) -> np.ndarray:
    """First-order activation-patching scores `[L, H]` (`[L, H, N]`), gradients through every downstream path."""
    info = model_info(model)
    base = base or baseline(model, contrast)
    params = [p for p in info.stream_model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        delta = torch.zeros(info.n_layers, info.n_heads, len(contrast), dtype=torch.float64)
        for g, rows in enumerate(base.groups):
            leaves: dict[int, torch.Tensor] = {}

            def edit(layer, z, leaves=leaves):
                # z + 0 with a zero leaf: ∂M/∂leaf is the total derivative, through later heads too
                leaves[layer] = torch.zeros_like(z, requires_grad=True)
                return z + leaves[layer]
            with torch.enable_grad():
                logits = last_logits(model, base.suffix_ids[g], edit, base.prefixes[g])
                metric = metric_values(logits, [contrast.clean.metadata[i] for i in rows], contrast.metric).sum()
                grads = torch.autograd.grad(metric, [leaves[x] for x in range(info.n_layers)])
            for layer, grad in enumerate(grads):
                diff = base.corrupt_z[g][layer] - base.clean_z[g][layer]  # [B, T, H, d]
                delta[layer][:, rows] = (diff * grad).sum((1, 3)).T.double()  # [H, B]: prompts don't interact
    finally:
        for p in params:
            p.requires_grad_(True)
    return _scores(base, base.m_clean + delta.numpy(), per_prompt)


def path_patching(model, contrast: ContrastSet, receivers: Sequence, base: Baseline | None = None, *,
                  senders: Sequence | None = None, receiver_positions: str = "all", max_rows: int = 256,
                  progress: bool = True, per_prompt: bool = False) -> np.ndarray:
    """Path-patching scores `[L, H]` (`[L, H, N]`); NaN for non-senders. `receiver_positions`: "all" or "last"."""
    if receiver_positions not in RECEIVER_POSITIONS:
        raise WorkbenchError(f"receiver_positions must be one of {', '.join(RECEIVER_POSITIONS)}; "
                             f"got {receiver_positions!r}.")
    at = slice(None) if receiver_positions == "all" else slice(-1, None)

    info = model_info(model)
    receivers = parse_heads(receivers) if receivers else ()
    check_heads(receivers, info.n_layers, info.n_heads)
    last_layer = max((r.layer for r in receivers), default=info.n_layers)
    if senders is None:
        senders = [HeadRef(lay, h) for lay in range(last_layer) for h in range(info.n_heads)]
    senders = [s for s in parse_heads(senders) if s not in receivers]
    check_heads(senders, info.n_layers, info.n_heads)
    if not senders:
        raise WorkbenchError("No sender heads: senders must sit in layers before the last receiver.")
    base = base or baseline(model, contrast)
    recv = {}
    for r in receivers:
        recv.setdefault(r.layer, []).append(r.head)
    totals = np.zeros((len(senders), len(contrast)))
    bar = tqdm(total=len(senders) * len(contrast), desc="path patching", unit="prompt×sender", disable=not progress)
    for g, rows in enumerate(base.groups):
        per_pass = max(1, max_rows // len(rows))
        b = len(rows)
        for start in range(0, len(senders), per_pass):
            chunk = senders[start:start + per_pass]
            copies = len(chunk)
            clean = base.clean_z[g].repeat(1, copies, 1, 1, 1)  # [L, copies·B, T, H, d]
            frozen = clean.clone()
            for c, s in enumerate(chunk):
                frozen[s.layer, c * b:(c + 1) * b, :, s.head] = base.corrupt_z[g][s.layer][:, :, s.head]
            recorded: dict[int, torch.Tensor] = {}

            def stage1(layer, z, frozen=frozen, recorded=recorded):
                keep = recv.get(layer, [])
                if keep:
                    recorded[layer] = z[:, :, keep].clone()
                out = frozen[layer].clone()
                if keep:
                    out[:, :, keep] = z[:, :, keep]
                return out
            sums = _group_metric(model, contrast, base, g, copies, stage1)
            if receivers:
                def stage2(layer, z, recorded=recorded):
                    if layer not in recorded:
                        return z
                    z = z.clone()
                    heads = recv[layer]
                    z[:, at, heads] = recorded[layer][:, at]
                    return z
                sums = _group_metric(model, contrast, base, g, copies, stage2)
            totals[start:start + copies, rows] = sums
            bar.update(copies * b)
    bar.close()
    metric = np.full((info.n_layers, info.n_heads, len(contrast)), np.nan)
    for s, total in zip(senders, totals, strict=True):
        metric[s.layer, s.head] = total
    return _scores(base, metric, per_prompt)
