"""Residual-stream statistics reduced on the fly: hidden-state norms, cosine to BOS, massive activations.

Hooks on the twin's decoder layers reduce each `resid_post` `h_l [B, T, d]`: `norm [L, T]` ‖h_l[t]‖,
`cos_bos [L, T]` cos(h_l[t], h_l[0]) (secondary sinks, Wong et al.), `dim_max`/`dim_argmax [L, d]`
max_t |h_l[t, i]| (massive activations, Sun et al. 2024), `median_abs [L]`, and the k largest |h_l[t, i]|
(`top_value/top_pos/top_dim [L, k]`). `capturing(model)` around one `stream_forward` (batch 1).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch

from workbench.engine.run import stream_forward
from workbench.models.loading import model_info

TOP_K = 16


@dataclass
class ResidualStats:
    norm: torch.Tensor  # [L, T]
    cos_bos: torch.Tensor  # [L, T]
    dim_max: torch.Tensor  # [L, d]
    dim_argmax: torch.Tensor  # [L, d]
    median_abs: torch.Tensor  # [L]
    top_value: torch.Tensor  # [L, k] signed
    top_pos: torch.Tensor  # [L, k]
    top_dim: torch.Tensor  # [L, k]


@dataclass
class _ResidualCollector:
    top_k: int
    per_layer: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)

    def reduce(self, layer: int, hidden: torch.Tensor) -> None:
        x = hidden[0].float()  # [T, d], batch 1
        absx = x.abs()
        norm = x.norm(dim=-1)
        cos = (x @ x[0]) / (norm * norm[0]).clamp_min(1e-12)
        dim_max, dim_argmax = absx.max(dim=0)
        flat = absx.reshape(-1)
        k = min(self.top_k, flat.numel())
        _, idx = flat.topk(k)
        d = x.shape[-1]
        self.per_layer[layer] = {
            "norm": norm, "cos_bos": cos, "dim_max": dim_max, "dim_argmax": dim_argmax,
            "median_abs": flat.median(), "top_value": x.reshape(-1)[idx], "top_pos": idx // d, "top_dim": idx % d}

    def stats(self) -> ResidualStats:
        layers = sorted(self.per_layer)
        return ResidualStats(**{name: torch.stack([self.per_layer[x][name] for x in layers])
                                for name in ResidualStats.__dataclass_fields__})


@contextmanager
def capturing(model, top_k: int = TOP_K) -> Iterator[_ResidualCollector]:
    """While active, every forward of the model's streaming twin reduces each layer's output (batch 1)."""
    info = model_info(model)
    collector = _ResidualCollector(top_k)
    handles = []
    for layer, module in enumerate(info.stream_model.model.layers):
        def hook(mod, args, output, layer=layer):
            hidden = output[0] if isinstance(output, tuple) else output
            if hidden.shape[0] != 1:
                raise ValueError("Residual statistics are collected one prompt at a time (batch 1).")
            collector.reduce(layer, hidden.detach())
        handles.append(module.register_forward_hook(hook))
    try:
        yield collector
    finally:
        for handle in handles:
            handle.remove()


def sink_forward(model, ids: list[int], request, *, top_k: int = TOP_K):
    """One streaming forward of one prompt: `(AttentionStats, ResidualStats)`."""
    with capturing(model, top_k) as collector:
        result = stream_forward(model, torch.tensor([ids]), request)
    return result.stats, collector.stats()


def stats_from_hidden(hidden_states: list[torch.Tensor], top_k: int = TOP_K) -> ResidualStats:
    """Reference: the same reductions from full hidden states `[1, T, d]` per layer."""
    collector = _ResidualCollector(top_k)
    for layer, hidden in enumerate(hidden_states):
        collector.reduce(layer, hidden)
    return collector.stats()
