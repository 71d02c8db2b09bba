"""Sink interventions that the generic head edits cannot express, as bridge forward hooks.

- `MassiveDimEdit(layer, dims, mode, threshold, means)`: in the residual stream after `layer`
  (`resid_post`), every entry of a chosen dimension whose magnitude exceeds `threshold` (a massive
  activation) is set to 0 (`mode="zero"`) or to its mean value (`mode="mean"`). With `token_means`
  (token id → the mean massive value of each dimension on that token, e.g. BOS vs " the"), only those
  tokens are edited, in both modes, and "mean" uses the token's own mean; without it, every entry above
  the threshold is edited and "mean" uses the pooled `means`. Sun et al. (2024): zeroing them wrecks the
  model, setting them to their mean does not.
- `SinkCalibration(heads, keys, beta)` (ACT, Yu et al. 2024): attention of each head to its own
  per-prompt hidden-sink keys is multiplied by β (0.4) and the freed mass goes to the other keys in
  proportion to their attention, i.e. `log β` is added to those keys' logits.
  `keys[prompt][(layer, head)]` lists the key positions of that prompt.

Initial-token scaling (ZeroTuning, γ per head) and sink removal are `intervene.AttentionEdit`.
`run_edits` runs these (and the generic edits) through `intervene.run_metric`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from workbench.core.errors import InterventionError
from workbench.edits.intervene import build_hooks, run_metric
from workbench.engine import hooks
from workbench.models.loading import model_info


@dataclass(frozen=True)
class MassiveDimEdit:
    layer: int
    dims: tuple[int, ...]
    mode: str = "zero"  # "zero" | "mean"
    threshold: float = 0.0  # edit entries with |x| > threshold (0: every position)
    means: tuple[float, ...] = ()  # per-dim replacement for mode="mean" (tokens without their own mean)
    token_means: tuple[tuple[int, tuple[float, ...]], ...] = ()  # (token id, one mean per dim); limits the edit

    def check(self, n_layers: int, d_model: int) -> None:
        if self.mode not in ("zero", "mean"):
            raise InterventionError(f"Massive-dimension mode must be 'zero' or 'mean', got {self.mode!r}.")
        if not 0 <= self.layer < n_layers:
            raise InterventionError(f"Layer {self.layer} does not exist (layers 0..{n_layers - 1}).")
        if not self.dims or any(not 0 <= d < d_model for d in self.dims):
            raise InterventionError(f"Dimensions {list(self.dims)} must be non-empty and within 0..{d_model - 1}.")
        if self.mode == "mean" and len(self.means) != len(self.dims):
            raise InterventionError("mode='mean' needs one mean per dimension (means=...).")
        if any(len(values) != len(self.dims) for _, values in self.token_means):
            raise InterventionError("token_means must give one mean per dimension for each token id.")


@dataclass(frozen=True)
class SinkCalibration:
    heads: tuple[tuple[int, int], ...]
    keys: tuple[Mapping[tuple[int, int], Sequence[int]], ...]  # one mapping per prompt
    beta: float = 0.4

    def check(self) -> None:
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise InterventionError(f"β must be a finite number > 0, got {self.beta}.")


def massive_hook(edit: MassiveDimEdit, batch_ids: Sequence[Sequence[int]]):
    dims = torch.tensor(edit.dims, dtype=torch.long)
    per_token = {int(t): values for t, values in edit.token_means}

    def hook(x, hook=None):  # [B, T, d]
        x = x.clone()
        part = x[..., dims]
        hit = part.abs() > edit.threshold
        repl = torch.zeros_like(part) if edit.mode == "zero" else \
            torch.tensor(edit.means, dtype=x.dtype, device=x.device).expand_as(part).clone()
        if per_token:  # only the tokens that carried massive values in calibration are edited
            known = torch.zeros(part.shape[:2], dtype=torch.bool, device=x.device)
            for row, seq in enumerate(batch_ids):
                for pos, token in enumerate(seq):
                    if token in per_token:
                        known[row, pos] = True
                        if edit.mode == "mean":
                            repl[row, pos] = torch.tensor(per_token[token], dtype=x.dtype, device=x.device)
            hit &= known[..., None]
        x[..., dims] = torch.where(hit, repl, part)
        return x
    return hook


def calibration_hook(layer: int, edit: SinkCalibration, rows: Sequence[int], lengths: Sequence[int]):
    heads = sorted({h for (lay, h) in edit.heads if lay == layer})
    log_beta = math.log(edit.beta)

    def hook(scores, hook=None):  # [B, H, Tq, Tk]
        scores = scores.clone()
        add = torch.zeros(scores.shape[0], scores.shape[1], 1, scores.shape[-1], dtype=scores.dtype,
                          device=scores.device)
        for j, row in enumerate(rows):
            for h in heads:
                keys = [k for k in edit.keys[row].get((layer, h), ()) if 0 <= k < lengths[j]]
                add[j, h, 0, keys] = log_beta
        return scores + add
    return hook


def edit_hooks(model, edits: Sequence, batch_ids: list[list[int]], rows: Sequence[int], context: dict):
    """Forward hooks for a batch: sink edits here, generic head edits via `intervene.build_hooks`."""
    fwd, generic = [], []
    lengths = [len(x) for x in batch_ids]
    for edit in edits:
        if isinstance(edit, MassiveDimEdit):
            fwd.append((hooks.resid_post(edit.layer), massive_hook(edit, batch_ids)))
        elif isinstance(edit, SinkCalibration):
            for layer in sorted({lay for lay, _ in edit.heads}):
                fwd.append((hooks.attn_scores(layer), calibration_hook(layer, edit, rows, lengths)))
        else:
            generic.append(edit)
    if generic:
        from workbench.edits.intervene import _normalise

        fwd.extend(build_hooks(model, [_normalise(e) for e in generic], batch_ids, rows, context))
    return fwd


def check_edits(model, prompts, edits: Sequence) -> None:
    info = model_info(model)
    for edit in edits:
        if isinstance(edit, MassiveDimEdit):
            edit.check(info.n_layers, info.d_model)
        elif isinstance(edit, SinkCalibration):
            edit.check()
            if len(edit.keys) != len(prompts):
                raise InterventionError(f"SinkCalibration has sink keys for {len(edit.keys)} prompts, "
                                        f"the prompt set has {len(prompts)}; give one mapping per prompt.")


def run_edits(model, prompts, edits: Sequence, metric, *, batch_size: int = 8, context: dict | None = None):
    """Per-prompt metric values under `edits` (an empty list: the clean model)."""
    from workbench.edits.intervene import _normalise, _prepare

    edits = list(edits)
    check_edits(model, prompts, edits)
    generic = [_normalise(e) for e in edits if not isinstance(e, (MassiveDimEdit, SinkCalibration))]
    context = context if context is not None else (_prepare(model, prompts, generic) if generic else {})
    edits = [e if isinstance(e, (MassiveDimEdit, SinkCalibration)) else _normalise(e) for e in edits]
    if not edits:
        return run_metric(model, prompts, metric, batch_size=batch_size)
    return run_metric(model, prompts, metric, batch_size=batch_size,
                      fwd_hooks_for=lambda ids, rows: edit_hooks(model, edits, ids, rows, context))
