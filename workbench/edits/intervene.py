"""Head interventions: one API every analysis uses, returning a tidy before/after table of a metric.

Edits (frozen dataclasses), applied through bridge hooks:
- `AblateHead(heads, mode="zero"|"mean")`: replace the head's output z (before W_O) by 0 or by its mean
  over every token of a reference prompt set (default: the prompts themselves).
- `ScaleHead(heads, alpha)`: z ← α·z (VHR-style reinforcement with α > 1).
- `UniformAttention(heads)`: pre-softmax scores of visible keys set equal, so the head averages its
  visible values; what Wu et al. (2024) call masking a retrieval head.
- `AttentionEdit(heads, keys, scale=… | logit_bias=…)`: re-weight attention to chosen key positions.
  Scale-and-renormalise by s is exactly a logit bias of log s (ZeroTuning: a0' = γa0/((γ−1)a0+1));
  s = 0 removes the keys. Negative key positions count from each prompt's end.
- `PatchHead(heads, source)`: z from the aligned prompt of `source` (same token length).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch

from workbench.core.errors import InterventionError
from workbench.core.heads import HeadRef, check_heads, parse_heads
from workbench.core.prompts import PromptSet, pad_batch, tokenize
from workbench.engine import hooks
from workbench.engine.metrics import Metric, get_metric
from workbench.models.loading import model_info


@dataclass(frozen=True)
class AblateHead:
    heads: tuple[HeadRef, ...]
    mode: str = "zero"
    reference: PromptSet | None = None


@dataclass(frozen=True)
class ScaleHead:
    heads: tuple[HeadRef, ...]
    alpha: float


@dataclass(frozen=True)
class UniformAttention:
    heads: tuple[HeadRef, ...]


@dataclass(frozen=True)
class AttentionEdit:
    heads: tuple[HeadRef, ...]
    keys: tuple[int, ...]
    scale: float | None = None
    logit_bias: float | None = None

    def bias(self) -> float:
        if (self.scale is None) == (self.logit_bias is None):
            raise InterventionError("AttentionEdit needs exactly one of scale= or logit_bias=.")
        if self.scale is not None:
            if self.scale < 0 or not math.isfinite(self.scale):
                raise InterventionError(f"Attention scale must be a finite number >= 0, got {self.scale}.")
            return math.log(self.scale) if self.scale > 0 else -math.inf
        return float(self.logit_bias)


@dataclass(frozen=True)
class PatchHead:
    heads: tuple[HeadRef, ...]
    source: PromptSet


Edit = AblateHead | ScaleHead | UniformAttention | AttentionEdit | PatchHead


def _by_layer(heads: Sequence[HeadRef]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for h in heads:
        out.setdefault(h.layer, []).append(h.head)
    return out


def _normalise(edit):
    heads = parse_heads(edit.heads)
    if not heads:
        raise InterventionError(f"{type(edit).__name__} names no heads; give heads like 'L3H5'.")
    return type(edit)(**{**edit.__dict__, "heads": heads})


def build_hooks(model, edits: Sequence, batch_ids: list[list[int]], prompt_rows: Sequence[int],
                context: dict) -> list[tuple[str, object]]:
    """Forward hooks implementing `edits` for one right-padded batch of prompts."""
    info = model_info(model)
    lengths = torch.tensor([len(x) for x in batch_ids])
    fwd = []
    for edit in edits:
        check_heads(edit.heads, info.n_layers, info.n_heads)
        for layer, heads in _by_layer(edit.heads).items():
            if isinstance(edit, (AblateHead, ScaleHead, PatchHead)):
                fwd.append((hooks.z(layer), _z_hook(edit, layer, heads, context, prompt_rows, lengths)))
            elif isinstance(edit, UniformAttention):
                fwd.append((hooks.attn_scores(layer), _uniform_hook(heads)))
            elif isinstance(edit, AttentionEdit):
                fwd.append((hooks.attn_scores(layer), _bias_hook(heads, edit, lengths)))
            else:
                raise InterventionError(f"Unknown edit {edit!r}.")
    return fwd


def _z_hook(edit, layer, heads, context, rows, lengths):
    def hook(z, hook=None):  # z: [B, T, H, D]
        z = z.clone()
        if isinstance(edit, ScaleHead):
            z[:, :, heads] *= edit.alpha
        elif isinstance(edit, AblateHead) and edit.mode == "zero":
            z[:, :, heads] = 0.0
        elif isinstance(edit, AblateHead):
            z[:, :, heads] = context["mean_z"][layer][heads].to(z.device, z.dtype)
        else:  # PatchHead
            for j, i in enumerate(rows):
                n = int(lengths[j])
                z[j, :n, heads] = context["source_z"][layer][i][:n, heads].to(z.device, z.dtype)
        return z
    return hook


def _uniform_hook(heads):
    def hook(scores, hook=None):  # [B, H, Tq, Tk]; masked entries hold finfo.min or -inf
        scores = scores.clone()
        part = scores[:, heads]
        visible = part > torch.finfo(part.dtype).min / 2
        scores[:, heads] = torch.where(visible, torch.zeros_like(part), part)
        return scores
    return hook


def _bias_hook(heads, edit: AttentionEdit, lengths):
    bias = edit.bias()

    def hook(scores, hook=None):
        scores = scores.clone()
        b, _, _, tk = scores.shape
        add = torch.zeros(b, 1, 1, tk, dtype=scores.dtype, device=scores.device)
        for row in range(b):
            for k in edit.keys:
                pos = k + int(lengths[row]) if k < 0 else k
                if not 0 <= pos < int(lengths[row]):
                    raise InterventionError(f"Key position {k} is outside a prompt of {int(lengths[row])} tokens.")
                add[row, 0, 0, pos] = bias
        part = scores[:, heads]
        edited = part + add
        hidden = edited <= torch.finfo(edited.dtype).min / 2  # the bridge masks with finfo.min, not -inf
        empty = hidden.all(-1, keepdim=True) | torch.isnan(edited).any(-1, keepdim=True)
        scores[:, heads] = torch.where(empty, part, edited)  # never leave a row with no visible key
        return scores
    return hook


@torch.inference_mode()
def _prepare(model, prompts: PromptSet, edits: Sequence) -> dict:
    """Activations some edits need: mean z of a reference set, z of the patch source."""
    from workbench.engine.store import ActivationStore

    info = model_info(model)
    context: dict = {}
    store = ActivationStore()
    for edit in edits:
        layers = sorted(_by_layer(edit.heads))
        if isinstance(edit, AblateHead):
            if edit.mode not in ("zero", "mean"):
                raise InterventionError(f"Ablation mode must be 'zero' or 'mean', got {edit.mode!r}.")
            if edit.mode == "mean":
                ref = edit.reference or prompts
                acts = store.ensure(model, ref, [hooks.z(x) for x in layers], progress=False)
                context.setdefault("mean_z", {}).update(
                    {x: torch.cat(acts[hooks.z(x)], dim=0).mean(0) for x in layers})
        elif isinstance(edit, PatchHead):
            if len(edit.source) != len(prompts):
                raise InterventionError(f"Patch source has {len(edit.source)} prompts for {len(prompts)} "
                                        "prompts; give one source prompt per prompt.")
            src_ids, dst_ids = tokenize(model, edit.source), tokenize(model, prompts)
            bad = [i for i, (a, b) in enumerate(zip(src_ids, dst_ids, strict=True)) if len(a) != len(b)]
            if bad:
                raise InterventionError(f"Patch source prompts {bad[:10]} differ in token length from their "
                                        "targets; patching needs aligned prompts of equal length.")
            acts = store.ensure(model, edit.source, [hooks.z(x) for x in layers], progress=False)
            context.setdefault("source_z", {}).update({x: acts[hooks.z(x)] for x in layers})
        elif isinstance(edit, AttentionEdit):
            edit.bias()
    del info
    return context


@torch.inference_mode()
def run_metric(model, prompts: PromptSet, metric: Metric, fwd_hooks_for=None, batch_size: int = 8) -> list[float]:
    """Metric per prompt, optionally under hooks built per batch by `fwd_hooks_for(batch_ids, rows)`."""
    info = model_info(model)
    ids = tokenize(model, prompts)
    pad_id = info.tokenizer.pad_token_id or 0
    values: list[float] = [math.nan] * len(ids)
    for start in range(0, len(ids), batch_size):
        rows = list(range(start, min(len(ids), start + batch_size)))
        batch_ids = [ids[i] for i in rows]
        tokens, _ = pad_batch(batch_ids, pad_id)
        fwd = fwd_hooks_for(batch_ids, rows) if fwd_hooks_for else []
        logits = (model.run_with_hooks(tokens, fwd_hooks=fwd) if fwd else model(tokens)).cpu()  # metrics on the CPU
        for j, i in enumerate(rows):
            n = len(batch_ids[j])
            values[i] = metric(logits[j, :n], batch_ids[j], prompts.metadata[i], info.tokenizer)
    return values


def intervene(model, prompts: PromptSet, edits: "Edit | Sequence[Edit]", metric: "str | Metric" = "loss",
              *, batch_size: int = 8) -> pd.DataFrame:
    """Run `prompts` clean and edited; one row per prompt: prompt, metric, before, after, delta."""
    edits = [edits] if not isinstance(edits, (list, tuple)) else list(edits)
    if not edits:
        raise InterventionError("No edits given.")
    edits = [_normalise(e) for e in edits]
    info = model_info(model)
    for edit in edits:  # fail before any forward pass
        check_heads(edit.heads, info.n_layers, info.n_heads)
    metric = get_metric(metric)
    context = _prepare(model, prompts, edits)
    before = run_metric(model, prompts, metric, batch_size=batch_size)
    after = run_metric(model, prompts, metric, batch_size=batch_size,
                       fwd_hooks_for=lambda batch_ids, rows: build_hooks(model, edits, batch_ids, rows, context))
    table = pd.DataFrame({"prompt": range(len(prompts)), "text": [t[:80] for t in prompts.texts],
                          "metric": metric.name, "before": before, "after": after})
    table["delta"] = table["after"] - table["before"]
    table.attrs["edits"] = [describe(e) for e in edits]
    return table


def describe(edit) -> str:
    heads = ",".join(str(h) for h in edit.heads)
    if isinstance(edit, AblateHead):
        return f"ablate[{edit.mode}] {heads}"
    if isinstance(edit, ScaleHead):
        return f"scale[α={edit.alpha:g}] {heads}"
    if isinstance(edit, UniformAttention):
        return f"uniform-attention {heads}"
    if isinstance(edit, AttentionEdit):
        how = f"scale={edit.scale:g}" if edit.scale is not None else f"bias={edit.logit_bias:g}"
        return f"attention[{how} keys={list(edit.keys)}] {heads}"
    return f"patch[{edit.source.name}] {heads}"


def summarize(table: pd.DataFrame) -> dict:
    """Aggregate of a before/after table: means and the share of prompts whose metric rose."""
    return {"metric": table["metric"].iloc[0], "n": len(table), "before": float(table["before"].mean()),
            "after": float(table["after"].mean()), "delta": float(table["delta"].mean()),
            "share_increased": float((table["delta"] > 0).mean())}
