"""Named head roles: stated rules on atlas metrics, with default thresholds the user can change.

Each rule reads one metric (`<analysis>.<column>`, every task of it where the analysis has tasks):
    ">="      value ≥ threshold
    "top"     among the round(threshold · n_heads) strongest heads by the metric's rank (|value| if signed)
    "bottom"  among the round(threshold · n_heads) heads with the smallest value
`build_atlas(thresholds={"retrieval": 0.2})` changes a rule's threshold. Circuit membership is read from the saved
circuit files (circuits/), one role per task. A multi-role head holds two roles or more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.atlas.table import ROLES as ROLE_COLUMNS
from workbench.core.errors import WorkbenchError


@dataclass(frozen=True)
class Role:
    name: str
    metric: str  # <analysis>.<column>, matched with or without @task
    rule: str  # ">=" | "top" | "bottom"
    threshold: float
    source: str


ROLES = (
    Role("retrieval", "retrieval_heads.score", ">=", 0.1,
         "copy-paste retrieval score ≥ 0.1 over correct NIAH trials (Wu et al. 2024)"),
    Role("streaming", "retrieval_heads.streaming_score", ">=", 0.9,
         "≥ 90 % of decoding attention on the sink + recent tokens, so a streaming KV cache would do "
         "(DuoAttention, Xiao et al. 2024; the threshold is ours)"),
    Role("bos_sink", "attention_sinks.sink_rate", ">=", 0.9,
         "first-token α > ε = 0.3 (Gu et al. 2024) on ≥ 90 % of the prompts (sink_rate is that share; 90 %: a "
         "reliable sink, our threshold)"),
    Role("hidden_sink", "attention_sinks.hidden_sink_rate", ">=", 0.9,
         "a non-first key with α > 0.1 (Yu et al. 2024, ACT) on ≥ 90 % of the prompts (our threshold)"),
    Role("induction", "induction_heads.induction", ">=", 0.4,
         "mean attention to the token after the earlier copy ≥ 0.4 on repeated random tokens (Olsson et al. 2022)"),
    Role("previous_token", "induction_heads.prev_token_random", ">=", 0.5,
         "at least half its attention on the previous token, on random tokens"),
    Role("attribution", "head_attribution.activation_score", "top", 0.05,
         "top 5 % of heads by |activation patching effect| on the task (the circuits' top_fraction)"),
    Role("divergence", "head_divergence.score", "top", 0.05,
         "top 5 % of heads by output change when a passage is added (He et al. 2024, VHD)"),
    Role("preplan", "preplan_anchor.score", "bottom", 0.1,
         "the 10 % most local heads (smallest mean attention distance): the heads behind WAAD and preplan tokens "
         "(Li et al. 2025)"),
    Role("anchor", "preplan_anchor.score", "top", 0.1,
         "the 10 % most global heads (largest mean attention distance): the heads behind FAI and anchor tokens "
         "(Li et al. 2025)"),
    Role("sae_node", "sae_circuits.score", "top", 0.05,
         "top 5 % of heads by SAE node score on the task (O'Neill & Bui 2024; the analysis's in_circuit)"),
)
CIRCUIT_SOURCE = "in the saved circuit file of this model and task (circuits/)"


def roles_table(thresholds: dict[str, float] | None = None) -> pd.DataFrame:
    """The ROLES rules as a table (role, metric, rule, threshold, source; `thresholds` as given to the atlas),
    plus the circuit role."""
    limits = thresholds_of(thresholds)
    rows = [vars(r) | {"role": r.name, "threshold": limits[r.name]} for r in ROLES]
    rows.append({"role": "circuit", "metric": "circuit file", "rule": "member", "threshold": np.nan,
                 "source": CIRCUIT_SOURCE})
    return pd.DataFrame(rows)[["role", "metric", "rule", "threshold", "source"]]


def thresholds_of(overrides: dict[str, float] | None) -> dict[str, float]:
    """Default thresholds with `overrides` applied; an unknown role name is an error."""
    known = {r.name: r.threshold for r in ROLES}
    unknown = sorted(set(overrides or {}) - set(known))
    if unknown:
        raise WorkbenchError(f"no role {', '.join(unknown)}; roles with thresholds: {', '.join(known)}.")
    return known | {k: float(v) for k, v in (overrides or {}).items()}


def _base(metric: str) -> tuple[str, str | None]:
    name, _, task = metric.partition("@")
    return name, task or None


def assign_roles(values: pd.DataFrame, n_heads_total: int, thresholds: dict[str, float] | None = None,
                 circuits: pd.DataFrame | None = None) -> pd.DataFrame:
    """ROLE_COLUMNS rows: every (head, role) a head holds by the rules (values: the atlas values table)."""
    limits = thresholds_of(thresholds)
    frames = []
    for metric, rows in values.groupby("metric", sort=False):
        base, task = _base(str(metric))
        for role in ROLES:
            if role.metric != base:
                continue
            t = limits[role.name]
            if role.rule == ">=":
                held = rows["value"] >= t
            else:
                n = max(1, int(round(t * n_heads_total)))
                held = rows["rank"] <= n if role.rule == "top" else rows["value"].rank(method="first") <= n
            frames.append(rows.loc[held.fillna(False).astype(bool), ["layer", "head", "label", "metric", "value"]]
                          .assign(role=role.name + (f"@{task}" if task else ""), threshold=t))
    if circuits is not None and not circuits.empty:
        frames.append(circuits.assign(role="circuit@" + circuits["task"].astype(str), metric="circuit:"
                                      + circuits["circuit"].astype(str), value=1.0, threshold=np.nan))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=list(ROLE_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(ROLE_COLUMNS)].sort_values(["layer", "head", "role"],
                                                                                 ignore_index=True)


def evidence(multi: pd.DataFrame) -> pd.DataFrame:
    """One row per multi-role head: label, n_roles, roles as "role value [lo, hi] #rank" (from `multi_role`)."""
    def one(r) -> str:
        if not r.metric or str(r.metric).startswith("circuit:"):
            return f"{r.role} ({str(r.metric).removeprefix('circuit:')})"
        interval = f" [{r.lo:.3g}, {r.hi:.3g}]" if r.lo == r.lo else ""
        return f"{r.role} {r.value:.3g}{interval} #{r.rank:g}"

    rows = multi.assign(evidence=[one(r) for r in multi.itertuples()])
    return rows.groupby(["label", "n_roles"], sort=False)["evidence"].agg("; ".join).reset_index()


def multi_role(roles: pd.DataFrame, values: pd.DataFrame, at_least: int = 2) -> pd.DataFrame:
    """Heads holding ≥ `at_least` roles, one row per (head, role) with its evidence: metric, value, rank, lo, hi."""
    counts = roles.groupby("label")["role"].nunique()
    heads = counts[counts >= at_least].index
    out = roles[roles["label"].isin(heads)].merge(values[["label", "metric", "rank", "lo", "hi"]],
                                                   on=["label", "metric"], how="left")
    out.insert(3, "n_roles", out["label"].map(counts))
    return out.sort_values(["n_roles", "layer", "head", "role"], ascending=[False, True, True, True], ignore_index=True)
