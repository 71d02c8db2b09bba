"""The attention-sink report: BOS sinks, hidden and secondary sinks, massive activations, their edits.

One streaming forward per prompt gives column sums (α, see `score.py`) and residual reductions. Then:
- secondary sinks (Wong et al.): in the layers where the BOS norm exceeds `jump` × the median token norm,
  token t ≥ 3 is a sink at l if `|cos(h_l[t], h_l[BOS])| > 0.9`; class "secondary" if
  `4 < lifetime < L − 15` (lifetime = flagged layers), "BOS" for t = 0, else "none";
- massive activations (Sun et al. 2024): entries `|h_l[t, i]| ≥ ratio × median_{t,i}|h_l|` (ratio 100);
- the massive-dimension edit at each dimension's first massive layer (→ 0 or mean); perplexity before/after
  on held-out windows of the shipped text.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.analyses.attention_sinks.score import Params, column_importance, head_summary, hidden_sinks
from workbench.core.prompts import tokenize
from workbench.core.scores import head_label
from workbench.edits.apply import run_metric
from workbench.edits.kinds import MassiveDimEdit
from workbench.engine.metrics import get_metric
from workbench.engine.reducers import ReducerRequest
from workbench.engine.residual import sink_forward
from workbench.models.loading import model_info

COS_THRESHOLD = 0.9
MASSIVE_RATIO = 100.0


@dataclass(frozen=True)
class ReportParams(Params):
    jump: float = 3.0  # BOS norm / median token norm that marks the secondary-sink layer range
    massive_ratio: float = MASSIVE_RATIO


# ---- pure functions ------------------------------------------------------------------------------
def bos_layer_range(norm: torch.Tensor, jump: float = 3.0) -> tuple[int, int] | None:
    """First and last layer where ‖h_l[BOS]‖ > jump × median_t ‖h_l[t]‖ (t ≥ 1), from `norm [L, T]`."""
    ref = norm[:, 1:].median(dim=-1).values if norm.shape[-1] > 1 else norm[:, 0]
    high = (norm[:, 0] > jump * ref).nonzero().flatten()
    return None if high.numel() == 0 else (int(high[0]), int(high[-1]))


def secondary_sinks(cos_bos: torch.Tensor, layer_range: tuple[int, int] | None,
                    threshold: float = COS_THRESHOLD, skip: int = 3) -> tuple[torch.Tensor, list[str]]:
    """Lifetime `[T]` (layers in range with |cos to BOS| > threshold; t < skip never) and class per token."""
    n_layers, t = cos_bos.shape
    life = torch.zeros(t, dtype=torch.long)
    if layer_range is not None:
        lo, hi = layer_range
        life = (cos_bos[lo: hi + 1].abs() > threshold).sum(0)
        life[:skip] = 0
    classes = ["BOS" if i == 0 else "secondary" if 4 < int(life[i]) < n_layers - 15 else "none" for i in range(t)]
    return life, classes


def massive_entries(res, ratio: float = MASSIVE_RATIO) -> pd.DataFrame:
    """Top residual entries with |value| ≥ ratio × the layer's median |h| (one prompt's ResidualStats)."""
    rows = []
    for layer in range(res.top_value.shape[0]):
        med = float(res.median_abs[layer])
        entries = zip(res.top_value[layer].tolist(), res.top_pos[layer].tolist(), res.top_dim[layer].tolist(),
                      strict=True)
        for v, p, d in entries:
            r = abs(v) / max(med, 1e-12)
            if r >= ratio:
                rows.append({"layer": layer, "pos": p, "dim": d, "value": v, "median_abs": med, "ratio": r})
    return pd.DataFrame(rows, columns=["layer", "pos", "dim", "value", "median_abs", "ratio"])


# ---- the report ----------------------------------------------------------------------------------
def collect(model, prompts, *, progress: bool = True):
    """Per prompt: token ids, α `[L, H, T]` and ResidualStats (one streaming forward each)."""
    request = ReducerRequest(row_argmax=False, column_sums=True, distance=False)
    out = []
    for seq in tqdm(tokenize(model, prompts), desc=f"sink analysis · {prompts.name}", unit="prompt",
                    disable=not progress):
        att, res = sink_forward(model, seq, request)
        out.append((seq, column_importance(att.col_sum[0].float()), res))
    return out


def sink_report(model, prompts, params: ReportParams = ReportParams(), *, progress: bool = True,
                collected=None) -> dict[str, pd.DataFrame]:
    """Tables: heads, layers, hidden_examples, secondary, tokens (prompt 0), massive, massive_dims."""
    info = model_info(model)
    tok = info.tokenizer
    data = collected if collected is not None else collect(model, prompts, progress=progress)
    alphas = [a for _, a, _ in data]
    summary = head_summary(alphas, params)
    heads = pd.DataFrame([{"layer": lay, "head": h, "label": head_label(lay, h),
                           **{k: float(v[lay, h]) for k, v in summary.items()}}
                          for lay in range(info.n_layers) for h in range(info.n_heads)])
    hidden_rows, secondary_rows, massive = [], [], []
    for i, (seq, alpha, res) in enumerate(data):
        mask = hidden_sinks(alpha, params.hidden_threshold, params.min_queries, params.uniform_ratio)
        for lay, h, k in mask.nonzero().tolist():
            hidden_rows.append({"prompt": i, "head": head_label(lay, h), "layer": lay, "pos": k,
                                "token": tok.decode([seq[k]]), "alpha": float(alpha[lay, h, k])})
        life, classes = secondary_sinks(res.cos_bos, bos_layer_range(res.norm, params.jump))
        for t, cls in enumerate(classes):
            if cls == "secondary" or int(life[t]) > 0:
                secondary_rows.append({"prompt": i, "pos": t, "token": tok.decode([seq[t]]),
                                       "lifetime": int(life[t]), "class": cls})
        m = massive_entries(res, params.massive_ratio)
        if not m.empty:
            m.insert(0, "prompt", i)
            m["token"] = [tok.decode([seq[p]]) for p in m["pos"]]
            m["token_id"] = [int(seq[p]) for p in m["pos"]]
            massive.append(m)
    first = data[0]
    layers = _layer_table(alphas, [r for _, _, r in data], params)
    massive_df = pd.concat(massive, ignore_index=True) if massive else pd.DataFrame(
        columns=["prompt", "layer", "pos", "dim", "value", "median_abs", "ratio", "token", "token_id"])
    return {"heads": heads, "layers": layers,
            "hidden_examples": pd.DataFrame(hidden_rows, columns=["prompt", "head", "layer", "pos", "token", "alpha"]),
            "secondary": pd.DataFrame(secondary_rows, columns=["prompt", "pos", "token", "lifetime", "class"]),
            "tokens": _token_table(first, tok, params), "massive": massive_df,
            "massive_dims": massive_dims(massive_df)}


def _layer_table(alphas, residuals, params) -> pd.DataFrame:
    first = torch.stack([a[..., 0] for a in alphas])  # [P, L, H]
    norm0 = torch.stack([r.norm[:, 0] for r in residuals]).mean(0)
    norm_rest = torch.stack([r.norm[:, 1:].median(-1).values for r in residuals]).mean(0)
    return pd.DataFrame({"layer": range(first.shape[1]),
                         "sink_share": (first > params.epsilon).float().mean((0, 2)).tolist(),
                         "first_token_share": first.mean((0, 2)).tolist(),
                         "bos_norm": norm0.tolist(), "median_token_norm": norm_rest.tolist(),
                         "max_abs": torch.stack([r.dim_max.amax(-1) for r in residuals]).mean(0).tolist(),
                         "median_abs": torch.stack([r.median_abs for r in residuals]).mean(0).tolist()})


def _token_table(first, tok, params) -> pd.DataFrame:
    """Per (layer, token) of one prompt: attention received (α averaged over heads), norm, cos to BOS, class."""
    seq, alpha, res = first
    life, classes = secondary_sinks(res.cos_bos, bos_layer_range(res.norm, params.jump))
    rows = []
    received = alpha.mean(1)  # [L, T]
    for lay in range(alpha.shape[0]):
        for t in range(len(seq)):
            rows.append({"layer": lay, "pos": t, "token": tok.decode([seq[t]]), "attention": float(received[lay, t]),
                         "norm": float(res.norm[lay, t]), "cos_bos": float(res.cos_bos[lay, t]),
                         "lifetime": int(life[t]), "class": classes[t]})
    return pd.DataFrame(rows)


def massive_dims(massive: pd.DataFrame) -> pd.DataFrame:
    """One row per massive dimension: first layer, peak ratio, mean value at the first layer (pooled and per
    token id, as JSON `{id: mean}`), tokens."""
    rows = []
    for dim, part in massive.groupby("dim"):
        first_layer = int(part["layer"].min())
        at_first = part[part["layer"] == first_layer]
        tokens = Counter(part["token"]).most_common(3)
        rows.append({"dim": int(dim), "first_layer": first_layer, "last_layer": int(part["layer"].max()),
                     "max_ratio": float(part["ratio"].max()), "max_abs": float(part["value"].abs().max()),
                     "mean_value_first_layer": float(at_first["value"].mean()),
                     "token_means_first_layer": json.dumps(
                         {str(int(t)): float(v) for t, v in at_first.groupby("token_id")["value"].mean().items()}
                         if "token_id" in at_first else {}),
                     "threshold_first_layer": float(0.5 * at_first["value"].abs().min()),
                     "positions": sorted(set(part["pos"].tolist()))[:6],
                     "tokens": ", ".join(f"{t!r}×{n}" for t, n in tokens)})
    return pd.DataFrame(rows).sort_values("max_ratio", ascending=False, ignore_index=True) if rows else \
        pd.DataFrame(columns=["dim", "first_layer", "last_layer", "max_ratio", "max_abs", "mean_value_first_layer",
                              "token_means_first_layer", "threshold_first_layer", "positions", "tokens"])


def massive_edits(dims: pd.DataFrame, mode: str):
    """One MassiveDimEdit per first layer: the massive entries of its dims → 0 or their per-token mean."""
    edits = []
    for layer, part in dims.groupby("first_layer"):
        pooled = [float(v) for v in part["mean_value_first_layer"]]
        per_dim = [json.loads(v) if isinstance(v, str) else {}
                   for v in part.get("token_means_first_layer", [None] * len(part))]
        token_ids = sorted({int(t) for means in per_dim for t in means})
        token_means = tuple((t, tuple(float(means.get(str(t), p)) for means, p in zip(per_dim, pooled, strict=True)))
                            for t in token_ids)
        edits.append(MassiveDimEdit(layer=int(layer), dims=tuple(int(d) for d in part["dim"]), mode=mode,
                                    threshold=float(part["threshold_first_layer"].min()),
                                    means=tuple(pooled), token_means=token_means))
    return edits


def massive_perplexity(model, dims: pd.DataFrame, texts, *, batch_size: int = 4) -> pd.DataFrame:
    """Perplexity on `texts` (a PromptSet): clean, massive dims set to zero, set to their mean."""
    loss = get_metric("loss")
    rows = []
    for name, edits in (("clean", []), ("zero", massive_edits(dims, "zero")), ("mean", massive_edits(dims, "mean"))):
        if name != "clean" and not edits:
            continue
        values = run_metric(model, texts, loss, edits, batch_size=batch_size)
        mean_loss = sum(values) / len(values)
        rows.append({"edit": name, "dims": ",".join(str(int(d)) for d in dims["dim"]) if name != "clean" else "-",
                     "loss": mean_loss, "perplexity": math.exp(mean_loss)})
    return pd.DataFrame(rows)
