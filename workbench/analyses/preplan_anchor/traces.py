"""Per-token traces of one prompt from the streaming reducers: sink score `Σ_t A[t,s] / (T − s)`, BOS mass
`A[t,0]`, WAAD (local heads) and FAI (global heads, split at the median distance on this prompt), with
preplan/anchor marks at or above `quantile` (formulas in `score.py`; BOS and the last tokens excluded).
"""

from __future__ import annotations

from typing import Any

import torch

from workbench.analyses.preplan_anchor.score import anchor_tokens, fai_trace, head_split, preplan_tokens, waad_trace
from workbench.core.errors import PromptError
from workbench.core.heads import HeadRef, check_heads
from workbench.engine.probe import check_max_tokens, last_window, prompt_ids, token_labels
from workbench.engine.reducers import ReducerRequest
from workbench.engine.run import stream_forward
from workbench.models.loading import model_info

MIN_LATER = 8  # anchors need at least this many later queries (FAI of the last tokens is noise)


@torch.inference_mode()
def token_traces(model, text: str, *, window: int = 10, quantile: float = 0.9, head: str | None = None,
                 max_tokens: int = 2048) -> dict[str, Any]:
    """Per-token sink score, BOS mass, WAAD (local heads) and FAI (global heads) of one prompt."""
    info = model_info(model)
    if not isinstance(window, int) or window < 1:
        raise PromptError(f"The WAAD window must be a positive integer, got {window!r}.")
    if not 0.5 <= float(quantile) < 1.0:
        raise PromptError(f"The mark quantile must be in [0.5, 1), got {quantile!r}.")
    ref = None
    if head:
        ref = HeadRef.parse(head)
        check_heads([ref], info.n_layers, info.n_heads)
    ids = prompt_ids(model, text)
    total = len(ids)
    has_bos = info.tokenizer.bos_token_id is not None and ids[0] == info.tokenizer.bos_token_id
    ids, start = last_window(ids, check_max_tokens(min(max_tokens, info.n_ctx), high=info.n_ctx), has_bos)
    t = len(ids)
    request = ReducerRequest(row_argmax=False, column_sums=True, distance=True, key_sets={"bos": [0]}, offsets=(0,))
    waad_req = ReducerRequest(row_argmax=False, column_sums=False, distance=True, distance_window=window)
    stats = stream_forward(model, torch.tensor([ids]), request).stats
    waad = stream_forward(model, torch.tensor([ids]), waad_req).stats.distance[0]  # [L, H, T]
    seen_by = torch.arange(t, 0, -1, dtype=torch.float32)  # queries t >= s that see key s
    received = stats.col_sum[0, :, :, :t].float() / seen_by  # [L, H, T]
    bos = stats.key_mass["bos"][0].float()  # [L, H, T]
    mean_dist = stats.distance[0, :, :, 1:].float().mean(-1) if t > 1 else stats.distance[0, :, :, :].mean(-1)
    is_global = head_split(mean_dist.float(), 0.5)
    if not bool(is_global.any()):  # all heads equally far: call every head global for FAI
        is_global = torch.ones_like(is_global)
    waad_local = waad_trace(waad.float(), ~is_global) if bool((~is_global).any()) else waad.float().mean((0, 1))
    fai_global = fai_trace(stats.col_sum[0, :, :, :t].float(), stats.offset_mass[0][0].float(), is_global)
    skip = min(MIN_LATER, t // 4)
    fai_marks = fai_global.clone()
    fai_marks[0] = float("nan")  # BOS is the sink, not an anchor
    if skip:
        fai_marks[t - skip:] = float("nan")
    fai_global = fai_global.nan_to_num(0.0)
    out = {"tokens": token_labels(info.tokenizer, ids), "window_start": start, "truncated": start > 0,
           "n_tokens_total": total, "window": window,
           "sink": received.mean((0, 1)).tolist(), "bos_mass": bos.mean((0, 1)).tolist(),
           "waad": waad_local.tolist(), "fai": fai_global.tolist(),
           "preplan": [int(i) for i in preplan_tokens(waad_local.numpy(), quantile) if i > 0],
           "anchor": [int(i) for i in anchor_tokens(fai_marks.numpy(), quantile)],
           "n_global_heads": int(is_global.sum()), "n_local_heads": int((~is_global).sum())}
    if ref is not None:
        out["head"] = str(ref)
        out["head_traces"] = {"sink": received[ref.layer, ref.head].tolist(),
                              "bos_mass": bos[ref.layer, ref.head].tolist(),
                              "waad": waad[ref.layer, ref.head].float().tolist()}
    return out
