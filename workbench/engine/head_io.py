"""Per-head access on the SDPA twin: read or overwrite each head's z (`[B, T, H·d_head]`, the input of W_O) and
score only each prompt's last real position (~1.5× faster patching than the bridge, same logits).
`Prefix`: keys and values of the first P tokens that clean and corrupted prompts share are computed once
(3–4× less work on IOI).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Sequence

import torch

from workbench.core.errors import ModelError
from workbench.core.prompts import pad_batch
from workbench.engine.devices import cache_kwargs, output_cache
from workbench.engine.streaming import HeadEdit, edited
from workbench.models.loading import model_info

PROJECTIONS = ("o_proj", "out_proj", "c_proj", "dense")


def decoder_layers(model) -> list[torch.nn.Module]:
    """The decoder layers of the twin (`.model.layers` for Llama / Gemma / Qwen, `.transformer.h` for GPT-2)."""
    twin = model_info(model).stream_model
    base = twin.base_model
    layers = getattr(base, "layers", None)
    if layers is None:
        layers = getattr(base, "h", None)
    if layers is None:
        raise ModelError(f"Cannot find the decoder layers of {type(twin).__name__}.")
    return list(layers)


def output_projections(model) -> list[torch.nn.Module]:
    """Each layer's attention output projection (o_proj for Llama / Gemma / Qwen, c_proj for GPT-2)."""
    out = []
    for layer in decoder_layers(model):
        attn = getattr(layer, "self_attn", None) or getattr(layer, "attn", None)
        proj = next((getattr(attn, n) for n in PROJECTIONS if hasattr(attn, n)), None)
        if proj is None:
            raise ModelError(f"{type(layer).__name__}: no attention output projection named {PROJECTIONS}.")
        out.append(proj)
    return out


def output_weights(model) -> torch.Tensor:
    """W_O of every layer as `[L, d_model, H·d_head]` (nn.Linear layout; GPT-2's Conv1D is transposed)."""
    weights = []
    for proj in output_projections(model):
        w = proj.weight.detach().float()
        weights.append(w.T if type(proj).__name__ == "Conv1D" else w)
    return torch.stack(weights)


# z_edit(layer, z) -> z  with z: [B, T, H, d_head]; return the (possibly new) tensor
ZEdit = Callable[[int, torch.Tensor], torch.Tensor]


@contextmanager
def editing_z(model, z_edit: ZEdit | None):
    """Apply `z_edit` to every layer's head outputs (a z edit of every head, inside the twin's attention)."""
    if z_edit is None:
        yield
        return
    info = model_info(model)
    every = tuple(range(info.n_heads))
    per_layer = {layer: [HeadEdit("z", every, lambda z, q, layer=layer: z_edit(layer, z))]
                 for layer in range(info.n_layers)}
    with edited(per_layer):
        yield


class Prefix:
    """Keys and values of a shared token prefix `[B, P]` of equal-length prompts, reusable across passes."""

    def __init__(self, model, prefix_ids: torch.Tensor):
        info = model_info(model)
        self.length = prefix_ids.shape[1]
        self.config = info.stream_model.config
        with torch.no_grad():
            out = info.stream_model.base_model(input_ids=prefix_ids.to(_device(info)), use_cache=True)
            cache = output_cache(out)
        self.kv = [(layer.keys, layer.values) for layer in cache.layers]

    def cache(self, copies: int):
        """A fresh DynamicCache holding the prefix, tiled `copies` times along the batch."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.config)
        for i, (k, v) in enumerate(self.kv):
            cache.update(k.repeat(copies, 1, 1, 1), v.repeat(copies, 1, 1, 1), i)
        return cache


def last_logits(model, batch_ids: Sequence[Sequence[int]], z_edit: ZEdit | None = None,
                prefix: Prefix | None = None, copies: int = 1) -> torch.Tensor:
    """Logits `[B, V]` at each prompt's last real token (right padding), under an optional z edit.
    With `prefix`, `batch_ids` are the equal-length suffixes of `copies` tiles of the prefix's prompts.
    """
    info = model_info(model)
    twin = info.stream_model
    tokens, mask = pad_batch(batch_ids, info.tokenizer.pad_token_id or 0)
    tokens, mask = tokens.to(_device(info)), mask.to(_device(info))
    kwargs = dict(input_ids=tokens, attention_mask=mask)
    if prefix is not None:
        if not bool(mask.all()):
            raise ValueError("A shared prefix needs suffixes of equal length.")
        kwargs = dict(input_ids=tokens, use_cache=True, **cache_kwargs(prefix.cache(copies)))
    with editing_z(model, z_edit):
        hidden = twin.base_model(**kwargs).last_hidden_state
    last = hidden[torch.arange(len(batch_ids), device=mask.device), mask.sum(-1) - 1]
    logits = twin.get_output_embeddings()(last).cpu()
    if logits.dtype in (torch.bfloat16, torch.float16):  # metrics and their differences at least in float32
        logits = logits.float()
    cap = getattr(info.hf_config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def _device(info) -> torch.device:
    return info.stream_model.get_input_embeddings().weight.device


def capture_z(model, batch_ids: Sequence[Sequence[int]], prefix: Prefix | None = None):
    """(last logits `[B, V]`, head outputs `[L, B, T, H, d_head]`) of one clean forward (suffix only with a prefix)."""
    info = model_info(model)
    width = max(len(x) for x in batch_ids)
    zs = torch.zeros(info.n_layers, len(batch_ids), width, info.n_heads, info.d_head)

    def keep(layer, z):
        zs[layer] = z.detach()
        return z
    with torch.no_grad():
        logits = last_logits(model, batch_ids, keep, prefix)
    return logits, zs
