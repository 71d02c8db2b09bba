"""Running a model: streaming statistics through the SDPA twin, and hooked runs through the bridge."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from workbench.core.errors import PromptError
from workbench.engine import streaming
from workbench.engine.devices import cache_kwargs
from workbench.engine.reducers import AttentionStats, ReducerRequest
from workbench.models.loading import model_info


@dataclass
class StreamResult:
    stats: AttentionStats | None  # None when run with request=None (plain SDPA, no statistics)
    logits: torch.Tensor | None  # [B, Tq or 1, vocab] when asked for (on the CPU, like the stats)
    cache: Any = None


@torch.inference_mode()
def stream_forward(model, input_ids: torch.Tensor, request: ReducerRequest | None, *,
                   attention_mask: torch.Tensor | None = None,
                   output_positions: Sequence[int] | torch.Tensor | None = None,
                   cache: Any = None, logits: str = "none", past_key_values: Any = None) -> StreamResult:
    """One streaming-twin forward: statistics for `request`, optional logits ("none"/"last"/"all"), on the CPU.
    `output_positions`: absolute (negative: from each row's last real token). With `cache`: one decoding step.
    """
    cache = cache if cache is not None else past_key_values
    info = model_info(model)
    device = info.stream_model.get_input_embeddings().weight.device
    input_ids = input_ids.to(device)
    attention_mask = None if attention_mask is None else attention_mask.to(device)
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    b, t = input_ids.shape
    past_len = cache.get_seq_length() if cache is not None else 0
    if past_len + t > info.n_ctx:
        raise PromptError(f"{past_len + t} tokens exceed the context of {info.spec.name} ({info.n_ctx}); "
                          "shorten the prompt or lower the context length.")
    if request is not None and request.layers is not None:
        bad = [x for x in request.layers if not 0 <= x < info.n_layers]
        if bad:
            raise PromptError(f"Layers {bad} do not exist; {info.spec.name} has layers 0..{info.n_layers - 1}.")
    full_mask = attention_mask
    if attention_mask is not None and past_len:
        full_mask = torch.cat([attention_mask.new_ones(b, past_len), attention_mask], dim=1)
    valid = None if full_mask is None else full_mask.bool()
    pos = _resolve_positions(output_positions, full_mask, b, past_len + t, device)
    twin = info.stream_model
    # request=None: no statistics, every layer runs plain SDPA (edits, if active, still apply)
    with (streaming.collecting(request, valid, pos) if request is not None else nullcontext()) as collector:
        kwargs = dict(input_ids=input_ids, attention_mask=full_mask, use_cache=cache is not None,
                      **cache_kwargs(cache))
        if logits == "none":
            twin.model(**kwargs)
            out_logits = None
        else:
            out = twin(**kwargs, logits_to_keep=1 if logits == "last" else 0)
            out_logits = out.logits.cpu()
    stats = streaming.collected_stats(collector).cpu() if collector is not None else None
    return StreamResult(stats, out_logits, cache)


def _resolve_positions(positions, mask, b: int, total: int, device) -> torch.Tensor | None:
    if positions is None:
        return None
    pos = torch.as_tensor(positions, dtype=torch.long, device=device)
    if pos.dim() == 1:
        pos = pos[None].expand(b, -1).clone()
    lengths = mask.sum(-1) if mask is not None else torch.full((b,), total, device=pos.device)
    pos = torch.where(pos < 0, pos + lengths[:, None], pos)
    if bool((pos < 0).any()) or bool((pos >= lengths[:, None]).any()):
        raise PromptError(f"Output positions {positions} fall outside prompts of lengths {lengths.tolist()}.")
    return pos
