"""The one applier: edits compiled per batch into per-layer `streaming.HeadEdit`s, run by either back end with
the same numbers: "bridge" (hooks at `attn_scores`, `z`, `resid_post`) or "twin" (the streaming SDPA twin).
`editing(edits, model)` applies position-free edits to every twin forward inside the block (e.g. generation).
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch

from workbench.core.errors import InterventionError
from workbench.core.prompts import PromptSet, pad_batch, tokenize
from workbench.edits.kinds import AblateHead, Batch, PatchHead
from workbench.engine import hooks, streaming
from workbench.engine.head_io import capture_z, decoder_layers
from workbench.engine.metrics import Metric
from workbench.engine.run import stream_forward
from workbench.models.loading import model_info

SITE_HOOKS = {"scores": hooks.attn_scores, "z": hooks.z, "resid": hooks.resid_post}


def as_list(edits) -> list:
    return list(edits) if isinstance(edits, (list, tuple)) else [edits]


def resolve(edits, prompts: PromptSet | None = None) -> list:
    """Edits with their defaults filled in (a mean ablation without a reference uses `prompts`)."""
    out = []
    for e in as_list(edits):
        if isinstance(e, AblateHead) and e.mode == "mean" and e.reference is None:
            if prompts is None:
                raise InterventionError("A mean ablation needs a reference prompt set.")
            e = dataclasses.replace(e, reference=prompts)
        out.append(e)
    return out


def check(model, edits: Sequence, n_prompts: int | None = None) -> None:
    info = model_info(model)
    for edit in edits:
        if not hasattr(edit, "fn"):
            raise InterventionError(f"Unknown edit {edit!r}; use the classes of workbench.edits.")
        edit.check(info, n_prompts)


def compile_edits(edits: Sequence, batch: Batch) -> dict[int, list[streaming.HeadEdit]]:
    """Per layer, the edits' pure functions for this batch, in the order given."""
    per_layer: dict[int, list[streaming.HeadEdit]] = {}
    for edit in edits:
        for layer, heads in edit.targets().items():
            hint = getattr(edit, "visible_keys", None)  # optional key-range hint of a score edit
            per_layer.setdefault(layer, []).append(streaming.HeadEdit(edit.site, heads, edit.fn(layer, heads, batch),
                                                                      hint))
    return per_layer


def bridge_hooks(model, edits: Sequence, batch: Batch = Batch()) -> list[tuple[str, object]]:
    """Forward hooks implementing `edits` on the bridge for one right-padded batch."""
    check(model, edits)
    out = []
    for layer, items in compile_edits(edits, batch).items():
        for item in items:
            def hook(x, hook=None, item=item):
                q_pos = torch.arange(x.shape[2 if item.site == "scores" else 1], device=x.device)
                return streaming.apply_head_edit(item, x, q_pos)
            out.append((SITE_HOOKS[item.site](layer), hook))
    return out


@contextmanager
def on_twin(model, edits: Sequence, batch: Batch = Batch()) -> Iterator[None]:
    """Within this block, forwards of the streaming twin apply `edits`."""
    check(model, edits)
    per_layer = compile_edits(edits, batch)
    handles = []
    layers = decoder_layers(model) if any(i.site == "resid" for v in per_layer.values() for i in v) else []
    for layer, items in per_layer.items():
        for item in (i for i in items if i.site == "resid"):
            def hook(module, args, kwargs, output, item=item):
                hidden = output[0] if isinstance(output, tuple) else output
                q_pos = kwargs.get("cache_position")
                q_pos = torch.arange(hidden.shape[1], device=hidden.device) if q_pos is None else q_pos
                new = item.fn(hidden, q_pos)
                return (new, *output[1:]) if isinstance(output, tuple) else new
            handles.append(layers[layer].register_forward_hook(hook, with_kwargs=True))
    try:
        with streaming.edited({k: [i for i in v if i.site != "resid"] for k, v in per_layer.items()}):
            yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def editing(edits: Sequence, model) -> Iterator[None]:
    """Every twin forward inside the block applies `edits` (prefill and decoding); a head carries one edit."""
    edits = resolve(edits)
    seen: set = set()
    for edit in edits:
        for layer, heads in edit.targets().items():
            for h in heads:
                if (layer, h) in seen:
                    raise InterventionError(f"Head L{layer}H{h} is edited twice; give each head one edit.")
                seen.add((layer, h))
    with on_twin(model, edits):
        yield


@torch.inference_mode()
def prepare(model, prompts: PromptSet | None, edits: Sequence, *, batch_size: int = 8) -> dict:
    """Activations some edits need (their z captured on the twin): mean z of a reference set, z of a patch
    source. Keys: ("mean_z", (fingerprint, per_position)) and ("source_z", fingerprint), then layer."""
    context: dict = {"mean_z": {}, "source_z": {}}
    for edit in edits:
        layers = sorted(edit.targets())
        if isinstance(edit, AblateHead) and edit.mode == "mean":
            zs = _z_per_prompt(model, edit.reference, batch_size)
            if edit.per_position and len({z.shape[1] for z in zs}) > 1:
                raise InterventionError("A per-position mean ablation needs reference prompts of one token length.")
            mean = torch.stack(zs).mean(0) if edit.per_position else torch.cat(zs, dim=1).mean(1)
            context["mean_z"][(edit.reference.fingerprint, edit.per_position)] = {x: mean[x] for x in layers}
        elif isinstance(edit, PatchHead):
            if prompts is None or len(edit.source) != len(prompts):
                raise InterventionError(f"Patch source has {len(edit.source)} prompts for "
                                        f"{len(prompts) if prompts else 0} prompts; give one source prompt per prompt.")
            src_ids, dst_ids = tokenize(model, edit.source), tokenize(model, prompts)
            bad = [i for i, (a, b) in enumerate(zip(src_ids, dst_ids, strict=True)) if len(a) != len(b)]
            if bad:
                raise InterventionError(f"Patch source prompts {bad[:10]} differ in token length from their "
                                        "targets; patching needs aligned prompts of equal length.")
            zs = _z_per_prompt(model, edit.source, batch_size)
            context["source_z"][edit.source.fingerprint] = {x: [z[x] for z in zs] for x in layers}
    return context


def _z_per_prompt(model, prompts: PromptSet, batch_size: int) -> list[torch.Tensor]:
    """Head outputs `[L, T_i, H, d_head]` of each prompt (real tokens only), from clean twin forwards."""
    ids, out = tokenize(model, prompts), []
    for start in range(0, len(ids), batch_size):
        part = ids[start:start + batch_size]
        _, z = capture_z(model, part)  # [L, B, T, H, d]
        out.extend(z[:, j, :len(seq)] for j, seq in enumerate(part))
    return out


@torch.inference_mode()
def forward(model, batch_ids: Sequence[Sequence[int]], edits: Sequence = (), batch: Batch | None = None, *,
            backend: str = "bridge", last: bool = False) -> torch.Tensor:
    """Logits of a right-padded batch on the CPU: `[B, T, V]`, or `[B, V]` at each row's last real token."""
    info = model_info(model)
    tokens, _ = pad_batch(batch_ids, info.tokenizer.pad_token_id or 0)
    batch = batch or Batch(ids=tuple(tuple(x) for x in batch_ids))
    if backend == "bridge":
        fwd = bridge_hooks(model, edits, batch) if edits else []
        logits = (model.run_with_hooks(tokens, fwd_hooks=fwd) if fwd else model(tokens)).cpu()
    elif backend == "twin":
        same = len({len(x) for x in batch_ids}) == 1
        with on_twin(model, edits, batch):
            logits = stream_forward(model, tokens, None, logits="last" if last and same else "all").logits
    else:
        raise InterventionError(f"Unknown back end {backend!r}; use 'bridge' or 'twin'.")
    if not last:
        return logits
    rows = torch.arange(len(batch_ids))
    return logits[:, -1] if logits.shape[1] == 1 else logits[rows, torch.tensor([len(x) - 1 for x in batch_ids])]


def run_metric(model, prompts: PromptSet, metric: Metric, edits: Sequence = (), *, batch_size: int = 8,
               context: dict | None = None, backend: str = "bridge") -> list[float]:
    """Metric per prompt under `edits` (none: the clean model); `context` from `prepare` is reused if given."""
    edits = resolve(edits, prompts)
    check(model, edits, len(prompts))
    context = prepare(model, prompts, edits) if context is None and edits else (context or {})
    info = model_info(model)
    ids = tokenize(model, prompts)
    values: list[float] = [math.nan] * len(ids)
    for start in range(0, len(ids), batch_size):
        rows = tuple(range(start, min(len(ids), start + batch_size)))
        batch = Batch(rows, tuple(tuple(ids[i]) for i in rows), context)
        logits = forward(model, batch.ids, edits, batch, backend=backend)  # metrics on the CPU
        for j, i in enumerate(rows):
            values[i] = metric(logits[j, :len(ids[i])], ids[i], prompts.metadata[i], info.tokenizer)
    return values
