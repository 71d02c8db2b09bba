"""Every edit, one frozen dataclass each; `workbench.edits.apply` runs them on the bridge or the SDPA twin.

`site` says where an edit acts, `fn(layer, heads, batch)` gives a pure `(x, q_pos) -> x` (`q_pos`: absolute
query positions `[Tq]`): "scores" = masked pre-softmax logits `[B, n, Tq, Tk]` (hidden keys ≤ finfo.min / 2),
"z" = head outputs before W_O `[B, Tq, n, d_head]`, "resid" = residual stream after a layer `[B, Tq, d_model]`.
- `AblateHead`: z ← 0, or the mean z of `reference` over all tokens or per position (Wang et al. 2022).
- `ScaleHead`: z ← α·z (VHR-style reinforcement with α > 1). `PatchHead`: z ← z of `source`'s aligned prompt.
- `UniformAttention`: visible logits equal, `o[q] = Σ_{k≤q} V[k] / (q+1)` (Wu et al. 2024's head masking).
- `AttentionEdit`: log s added to chosen keys' logits = scale-and-renormalise (ZeroTuning:
  a0' = γa0/((γ−1)a0+1)); s = 0 removes them; negative keys count from the end; a row keeps ≥ 1 visible key.
- `FinalQueryBias`: `bias` at the last query only, per-prompt keys (repair).
- `SinkCalibration`: ACT (Yu et al. 2024): log β on each head's per-prompt hidden-sink keys (attention ×β).
- `StreamingWindow`: DuoAttention streaming head: k visible to q iff k < sink or q − recent < k ≤ q.
- `MassiveDimEdit`: residual entries of `dims` with |x| > threshold (Sun et al. 2024) → 0 or their mean;
  with `token_means` only those tokens, each with its own mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

from workbench.core.errors import InterventionError
from workbench.core.heads import HeadRef, check_heads, parse_heads
from workbench.core.prompts import PromptSet


@dataclass(frozen=True)
class Batch:
    """The prompts a forward runs: their rows in the prompt set, token ids, and prepared activations.
    Decoding without a batch (`Batch()`): every key so far is a real token."""

    rows: tuple[int, ...] | None = None
    ids: tuple[tuple[int, ...], ...] | None = None
    context: Mapping[str, Any] = field(default_factory=dict)

    def lengths(self, b: int, n_keys: int) -> list[int]:
        return [len(x) for x in self.ids] if self.ids is not None else [n_keys] * b

    def need_rows(self, edit) -> tuple[int, ...]:
        if self.rows is None:
            raise InterventionError(f"{type(edit).__name__} needs its prompts' rows; run it through "
                                    "workbench.edits.apply.run_metric (not during free generation).")
        return self.rows


def _hidden(x):
    import torch

    return x <= torch.finfo(x.dtype).min / 2


class _OnHeads:
    """Edits of attention heads: `heads` parsed lazily, so malformed labels fail when the edit is run."""

    site: ClassVar[str] = "z"

    def parsed(self) -> tuple[HeadRef, ...]:
        heads = parse_heads(self.heads)
        if not heads:
            raise InterventionError(f"{type(self).__name__} names no heads; give heads like 'L3H5'.")
        return heads

    def targets(self) -> dict[int, tuple[int, ...]]:
        out: dict[int, list[int]] = {}
        for h in self.parsed():
            out.setdefault(h.layer, []).append(h.head)
        return {layer: tuple(heads) for layer, heads in out.items()}

    def check(self, info, n_prompts: int | None) -> None:
        check_heads(self.parsed(), info.n_layers, info.n_heads)
        per_prompt = getattr(self, "keys", None) if isinstance(self, (FinalQueryBias, SinkCalibration)) else None
        if per_prompt is not None and n_prompts is not None and len(per_prompt) != n_prompts:
            raise InterventionError(f"{type(self).__name__} has keys for {len(per_prompt)} prompts, the prompt "
                                    f"set has {n_prompts}; give one entry per prompt.")


@dataclass(frozen=True)
class AblateHead(_OnHeads):
    heads: tuple[HeadRef, ...]
    mode: str = "zero"
    reference: PromptSet | None = None
    per_position: bool = False

    def check(self, info, n_prompts):
        super().check(info, n_prompts)
        if self.mode not in ("zero", "mean"):
            raise InterventionError(f"Ablation mode must be 'zero' or 'mean', got {self.mode!r}.")

    def fn(self, layer, heads, batch):
        import torch

        if self.mode == "zero":
            return lambda z, q: torch.zeros_like(z)
        mean = batch.context["mean_z"][(self.reference.fingerprint, self.per_position)][layer][..., heads, :]

        def f(z, q):
            if self.per_position and int(q.max()) >= mean.shape[0]:
                raise InterventionError(f"Per-position mean ablation: the reference has {mean.shape[0]} tokens, "
                                        f"fewer than the prompts' {int(q.max()) + 1}; give references as long.")
            return (mean[q.to(mean.device)] if self.per_position else mean).to(z.device, z.dtype).expand_as(z)
        return f


@dataclass(frozen=True)
class ScaleHead(_OnHeads):
    heads: tuple[HeadRef, ...]
    alpha: float

    def fn(self, layer, heads, batch):
        return lambda z, q: z * self.alpha


@dataclass(frozen=True)
class PatchHead(_OnHeads):
    heads: tuple[HeadRef, ...]
    source: PromptSet

    def fn(self, layer, heads, batch):
        src = batch.context["source_z"][self.source.fingerprint][layer]
        rows = batch.need_rows(self)

        def f(z, q):
            z = z.clone()
            for j, row in enumerate(rows):
                part = src[row][:, heads]
                inside = q < part.shape[0]
                z[j, inside] = part[q[inside]].to(z.device, z.dtype)
            return z
        return f


@dataclass(frozen=True)
class UniformAttention(_OnHeads):
    site: ClassVar[str] = "scores"
    heads: tuple[HeadRef, ...]

    def fn(self, layer, heads, batch):
        import torch

        return lambda s, q: torch.where(_hidden(s), s, torch.zeros_like(s))


@dataclass(frozen=True)
class AttentionEdit(_OnHeads):
    site: ClassVar[str] = "scores"
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

    def check(self, info, n_prompts):
        super().check(info, n_prompts)
        self.bias()

    def fn(self, layer, heads, batch):
        import torch

        bias = self.bias()

        def f(s, q):
            b, tk = s.shape[0], s.shape[-1]
            add = torch.zeros(b, 1, 1, tk, dtype=s.dtype, device=s.device)
            for row, n in enumerate(batch.lengths(b, tk)):
                for k in self.keys:
                    pos = k + n if k < 0 else k
                    if not 0 <= pos < n:
                        raise InterventionError(f"Key position {k} is outside a prompt of {n} tokens.")
                    add[row, 0, 0, pos] = bias
            edited = s + add
            empty = _hidden(edited).all(-1, keepdim=True) | torch.isnan(edited).any(-1, keepdim=True)
            return torch.where(empty, s, edited)  # never leave a row with no visible key
        return f


@dataclass(frozen=True)
class FinalQueryBias(_OnHeads):
    """Add `bias` to the last query's scores for per-prompt key positions `keys[prompt]` in `heads`."""

    site: ClassVar[str] = "scores"
    heads: tuple[HeadRef, ...]
    keys: tuple[tuple[int, ...], ...]
    bias: float

    def fn(self, layer, heads, batch):
        import torch

        rows = batch.need_rows(self)

        def f(s, q):
            add = torch.zeros(s.shape[0], 1, s.shape[2], s.shape[3], dtype=s.dtype, device=s.device)
            for j, (row, n) in enumerate(zip(rows, batch.lengths(len(rows), s.shape[-1]), strict=True)):
                last = (q == n - 1).nonzero()[:, 0]
                for k in self.keys[row]:
                    add[j, 0, last, k] = self.bias
            return s + add
        return f


@dataclass(frozen=True)
class SinkCalibration(_OnHeads):
    site: ClassVar[str] = "scores"
    heads: tuple[tuple[int, int], ...]
    keys: tuple[Mapping[tuple[int, int], Sequence[int]], ...]  # one mapping per prompt
    beta: float = 0.4

    def check(self, info, n_prompts):
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise InterventionError(f"β must be a finite number > 0, got {self.beta}.")
        super().check(info, n_prompts)

    def fn(self, layer, heads, batch):
        import torch

        rows, log_beta = batch.need_rows(self), math.log(self.beta)

        def f(s, q):
            add = torch.zeros(s.shape[0], s.shape[1], 1, s.shape[3], dtype=s.dtype, device=s.device)
            for j, (row, n) in enumerate(zip(rows, batch.lengths(len(rows), s.shape[-1]), strict=True)):
                for i, h in enumerate(heads):
                    add[j, i, 0, [k for k in self.keys[row].get((layer, h), ()) if 0 <= k < n]] = log_beta
            return s + add
        return f


@dataclass(frozen=True)
class StreamingWindow(_OnHeads):
    site: ClassVar[str] = "scores"
    heads: tuple[HeadRef, ...]
    sink: int = 4
    recent: int = 128

    def check(self, info, n_prompts):
        super().check(info, n_prompts)
        if self.sink < 0 or self.recent < 1:
            raise InterventionError(f"A streaming window needs sink >= 0 and recent >= 1, got "
                                    f"sink={self.sink}, recent={self.recent}.")

    def visible_keys(self, q0: int, q1: int) -> list[tuple[int, int]]:
        """Keys queries q0..q1 can see: [0, sink) ∪ (q0 − recent, q1] (the streaming twin computes only these)."""
        return [(0, self.sink), (q0 - self.recent + 1, q1 + 1)]

    def fn(self, layer, heads, batch):
        import torch

        def f(s, q, k=None):  # k: the key positions of the last axis (default: all, from 0)
            k = (torch.arange(s.shape[-1], device=s.device) if k is None else k)[None, :]
            far = (k >= self.sink) & (k <= q.to(s.device)[:, None] - self.recent)
            return s.masked_fill(far, torch.finfo(s.dtype).min)
        return f


@dataclass(frozen=True)
class MassiveDimEdit:
    site: ClassVar[str] = "resid"
    layer: int
    dims: tuple[int, ...]
    mode: str = "zero"  # "zero" | "mean"
    threshold: float = 0.0  # edit entries with |x| > threshold (0: every position)
    means: tuple[float, ...] = ()  # per-dim replacement for mode="mean" (tokens without their own mean)
    token_means: tuple[tuple[int, tuple[float, ...]], ...] = ()  # (token id, one mean per dim); limits the edit

    def targets(self) -> dict[int, tuple[int, ...]]:
        return {self.layer: ()}

    def check(self, info, n_prompts=None) -> None:
        if self.mode not in ("zero", "mean"):
            raise InterventionError(f"Massive-dimension mode must be 'zero' or 'mean', got {self.mode!r}.")
        if not 0 <= self.layer < info.n_layers:
            raise InterventionError(f"Layer {self.layer} does not exist (layers 0..{info.n_layers - 1}).")
        if not self.dims or any(not 0 <= d < info.d_model for d in self.dims):
            raise InterventionError(f"Dimensions {list(self.dims)} must be non-empty and within "
                                    f"0..{info.d_model - 1}.")
        if self.mode == "mean" and len(self.means) != len(self.dims):
            raise InterventionError("mode='mean' needs one mean per dimension (means=...).")
        if any(len(values) != len(self.dims) for _, values in self.token_means):
            raise InterventionError("token_means must give one mean per dimension for each token id.")

    def fn(self, layer, heads, batch):
        import torch

        dims = list(self.dims)
        per_token = {int(t): values for t, values in self.token_means}
        if per_token and batch.ids is None:
            raise InterventionError("A MassiveDimEdit with token_means needs the prompts' token ids.")

        def f(x, q):  # [B, T, d]
            x = x.clone()
            part = x[..., dims]
            hit = part.abs() > self.threshold
            repl = torch.zeros_like(part) if self.mode == "zero" else \
                torch.tensor(self.means, dtype=x.dtype, device=x.device).expand_as(part).clone()
            if per_token:  # only the tokens that carried massive values in calibration are edited
                known = torch.zeros(part.shape[:2], dtype=torch.bool, device=x.device)
                for row, seq in enumerate(batch.ids):
                    for i, pos in enumerate(q.tolist()):
                        if pos < len(seq) and seq[pos] in per_token:
                            known[row, i] = True
                            if self.mode == "mean":
                                repl[row, i] = torch.tensor(per_token[seq[pos]], dtype=x.dtype, device=x.device)
                hit &= known[..., None]
            x[..., dims] = torch.where(hit, repl, part)
            return x
        return f


Edit = (AblateHead | ScaleHead | PatchHead | UniformAttention | AttentionEdit | FinalQueryBias | SinkCalibration
        | StreamingWindow | MassiveDimEdit)


def describe(edit) -> str:
    """One line naming an edit, for before/after tables."""
    if isinstance(edit, MassiveDimEdit):
        return f"massive-dims[{edit.mode}] L{edit.layer} dims={list(edit.dims)}"
    heads = ",".join(str(h) for h in edit.parsed())
    if isinstance(edit, AblateHead):
        return f"ablate[{edit.mode}] {heads}"
    if isinstance(edit, ScaleHead):
        return f"scale[α={edit.alpha:g}] {heads}"
    if isinstance(edit, UniformAttention):
        return f"uniform-attention {heads}"
    if isinstance(edit, AttentionEdit):
        how = f"scale={edit.scale:g}" if edit.scale is not None else f"bias={edit.logit_bias:g}"
        return f"attention[{how} keys={list(edit.keys)}] {heads}"
    if isinstance(edit, PatchHead):
        return f"patch[{edit.source.name}] {heads}"
    return f"{type(edit).__name__} {heads}"
