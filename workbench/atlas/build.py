"""Build an Atlas from saved runs (no model forward): values with bootstrap intervals and ranks, top-k stability,
agreement, roles, circuits, the causal column (workbench.atlas.causal, where present) and what is missing."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.atlas import bootstrap as bs
from workbench.atlas.agreement import agreement
from workbench.atlas.roles import assign_roles, thresholds_of
from workbench.atlas.sources import ModelRuns, SourceRun, model_runs
from workbench.atlas.table import CAUSAL, CIRCUITS, METRICS, STABILITY, VALUES, Atlas
from workbench.core.errors import WorkbenchError
from workbench.core.scores import head_label, is_signed


def build_atlas(model: str, *, fill: bool = False, n_boot: int = 200, seed: int = 0, top_k: int = 10,
                thresholds: dict[str, float] | None = None, results_dir: Path | None = None, save: bool = True,
                fingerprint: str | None = None, run_ids: list[str] | None = None, circuit_dir=None,
                n_perm: int = 1000) -> Atlas:
    """The atlas of `model` from its saved runs (see workbench.atlas); saved in the catalog unless save=False."""
    if n_boot < 1 or top_k < 1:
        raise WorkbenchError(f"n_boot and top_k must be at least 1; got n_boot={n_boot}, top_k={top_k}.")
    limits = thresholds_of(thresholds)
    if fill:
        _fill(model, results_dir)
    started = time.perf_counter()
    runs = model_runs(model, results_dir=results_dir, fingerprint=fingerprint, run_ids=run_ids,
                      circuit_dir=circuit_dir)
    first = runs.runs[0].result.scores
    n_layers, n_heads = int(first["layer"].max()) + 1, int(first["head"].max()) + 1
    parts = [_metric_tables(source, n_layers, n_heads, n_boot=n_boot, seed=seed, top_k=top_k) for source in runs.runs]
    values = pd.concat([p[0] for v in parts for p in v], ignore_index=True)[list(VALUES)]
    metrics = pd.DataFrame([p[1] for v in parts for p in v])
    stability = pd.concat([p[2] for v in parts for p in v], ignore_index=True)[list(STABILITY)]
    metrics = _with_causal(metrics.assign(n_boot=n_boot), runs)
    metrics = metrics[[*METRICS, *(c for c in metrics.columns if c not in METRICS)]]  # + extra causal_* columns
    keys = _keys(values, list(metrics["metric"]))
    circuits = circuit_heads(model, n_layers, n_heads, circuit_dir)
    atlas = Atlas(model, runs.fingerprint, n_layers, n_heads, values, metrics, stability,
                  agreement(keys, n_perm=n_perm, seed=seed),
                  assign_roles(values, n_layers * n_heads, limits, circuits), circuits, runs.missing,
                  params={"n_boot": n_boot, "seed": seed, "top_k": top_k, "thresholds": limits, "n_perm": n_perm,
                          "runs": [s.run_id for s in runs.runs], "other_fingerprints": list(runs.other_fingerprints),
                          "build_s": time.perf_counter() - started})
    if save:
        from workbench.atlas.store import save_atlas

        save_atlas(atlas, results_dir)
    return atlas


def _metric_tables(source: SourceRun, n_layers: int, n_heads: int, *, n_boot: int, seed: int, top_k: int):
    """[(values rows, metrics row, stability rows)] for every metric of one run."""
    scores = source.result.scores.sort_values(["layer", "head"]).reset_index(drop=True)
    per_prompt = source.result.per_prompt
    mats = {} if per_prompt is None or per_prompt.empty else bs.prompt_matrices(per_prompt, n_layers, n_heads)[1]
    layer, head = scores["layer"].to_numpy(), scores["head"].to_numpy()
    labels = [head_label(int(a), int(b)) for a, b in zip(layer, head, strict=True)]
    out = []
    for metric, column in source.columns.items():
        value = scores[column].to_numpy(dtype=np.float64)
        signed = is_signed(value)
        stat = bs.find_statistic(column, value, mats) if mats else None
        lo = hi = np.full_like(value, np.nan)
        n_prompts, stability, jaccard = 0, np.nan, np.nan
        top = bs.top_mask(value, signed, min(top_k, len(value)))
        share = np.full_like(value, np.nan)
        if stat is None:
            why = "the run saved no per-prompt values" if not mats else \
                f"no mean, ratio of sums or sum of its per-prompt {', '.join(sorted(mats))} reproduces the column"
            description = f"interval NaN: {why}"
        else:
            result = bs.bootstrap(stat, mats, value, signed=signed, n_boot=n_boot, seed=seed, top_k=top_k)
            lo, hi, share, top = result.lo, result.hi, result.share_in_topk, result.topk
            n_prompts, jaccard = int(mats[stat.metric].shape[0]), result.jaccard
            stability = float(share[top].mean())
            description = f"bootstrap over prompts: {stat.describe()}"
        rank = bs.ranks(value, signed)
        rows = pd.DataFrame({"layer": layer, "head": head, "label": labels, "metric": metric, "value": value,
                             "lo": lo, "hi": hi, "rank": rank, "signed": signed})
        stable = rows.loc[top, ["metric", "layer", "head", "label", "rank"]].assign(share_in_topk=share[top])
        info = {"metric": metric, "analysis": source.analysis, "column": column, "task": source.task,
                "run_id": source.run_id, "signed": signed, "description": description
                + (" (signed: ranked by |value|)" if signed else ""), "n_prompts": n_prompts,
                "topk_stability": stability, "topk_jaccard": jaccard}
        out.append((rows, info, stable.sort_values("rank")))
    return out


def _keys(values: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Heads × metrics ranking keys: |value| for signed metrics, value otherwise."""
    key = values.assign(key=np.where(values["signed"].astype(bool), values["value"].abs(), values["value"]))
    return key.pivot(index="label", columns="metric", values="key")[metrics]


def circuit_heads(model: str, n_layers: int, n_heads: int, directory=None) -> pd.DataFrame:
    """CIRCUITS rows: the heads of every saved circuit file of `model` with this shape."""
    from workbench.results.circuits import list_circuits, load_circuit

    listed = list_circuits(directory)
    rows = []
    for item in listed[(listed["model"] == model) & listed["error"].isna()].itertuples():
        circuit = load_circuit(item.path)
        if (circuit.n_layers, circuit.n_heads) != (n_layers, n_heads):
            continue
        rows += [{"layer": h.layer, "head": h.head, "label": head_label(h.layer, h.head), "circuit": circuit.name,
                  "task": circuit.task} for h in circuit.heads]
    return pd.DataFrame(rows, columns=list(CIRCUITS))


def _with_causal(metrics: pd.DataFrame, runs: ModelRuns) -> pd.DataFrame:
    """The causal_* columns of each metric (workbench.atlas.causal); "not run" where no check is saved."""
    from workbench.atlas.causal import causal_columns

    causal = causal_columns(runs)
    merged = metrics.merge(causal[["metric", *(c for c in causal.columns if c.startswith("causal_"))]],
                           on="metric", how="left")
    merged = merged.assign(**{c: np.nan for c in CAUSAL if c not in merged})
    merged["causal_verdict"] = merged["causal_verdict"].fillna("not run")
    return merged


def _fill(model: str, results_dir) -> None:
    from workbench.atlas.fill import fill

    fill(model, results_dir=results_dir, progress=True)
