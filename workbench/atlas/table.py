"""The Atlas: one model's heads × metrics from the newest saved run of every registered analysis.

Tables (pandas; the columns are the shared interface of the atlas, its CLI and its app pages):
    values     one row per head × metric: value (the run's stored column), lo/hi (bootstrap percentile interval over
               prompts, NaN where no per-prompt values reproduce the column), rank (1 = strongest; by |value| for a
               signed metric; average ranks for ties), signed
    metrics    one row per metric: where it comes from, how its interval was computed, its top-k stability and its
               causal column
    stability  today's top-k heads of each metric and the share of bootstrap resamples keeping each in the top-k
    agreement  Spearman over heads for every metric pair, with permutation p-values
    roles      one row per head × role held (the rule: roles.ROLES)
    circuits   the heads of this model's saved circuit files
    missing    analyses (and tasks) with no run of this model's fingerprint, with the command that fills them
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench.core.errors import WorkbenchError
from workbench.core.scores import head_label, parse_head_label

VALUES = ("layer", "head", "label", "metric", "value", "lo", "hi", "rank", "signed")
CAUSAL = ("causal_check", "causal_run_id", "causal_effect", "causal_random_mean", "causal_random_sd", "causal_n_random",
          "causal_metric", "causal_verdict")
METRICS = ("metric", "analysis", "column", "task", "run_id", "signed", "description", "n_prompts", "n_boot",
           "topk_stability", "topk_jaccard", *CAUSAL)
STABILITY = ("metric", "layer", "head", "label", "rank", "share_in_topk")
AGREEMENT = ("metric_a", "metric_b", "spearman", "p_value", "n_heads")
ROLES = ("layer", "head", "label", "role", "metric", "value", "threshold")
CIRCUITS = ("layer", "head", "label", "circuit", "task")
MISSING = ("analysis", "task", "command")
TABLES = {"values": VALUES, "metrics": METRICS, "stability": STABILITY, "agreement": AGREEMENT, "roles": ROLES,
          "circuits": CIRCUITS, "missing": MISSING}


def empty(name: str) -> pd.DataFrame:
    """An empty table with the columns of `name` (one of TABLES)."""
    return pd.DataFrame(columns=list(TABLES[name]))


@dataclass
class Atlas:
    model: str
    fingerprint: str
    n_layers: int
    n_heads: int
    values: pd.DataFrame
    metrics: pd.DataFrame
    stability: pd.DataFrame
    agreement: pd.DataFrame
    roles: pd.DataFrame
    circuits: pd.DataFrame
    missing: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)
    record: Any = None

    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in TABLES}

    def wide(self, column: str = "value") -> pd.DataFrame:
        """Head × metric table of `column` (value, rank, lo or hi); index: head labels in layer-major order."""
        labels = [head_label(layer, head) for layer in range(self.n_layers) for head in range(self.n_heads)]
        if self.values.empty:
            return pd.DataFrame(index=pd.Index(labels, name="label"))
        table = self.values.pivot(index="label", columns="metric", values=column)
        return table.reindex(index=labels, columns=list(self.metrics["metric"])).rename_axis("label")

    def check_head(self, label: str) -> tuple[int, int]:
        """(layer, head) of a label like "L17H4"; a clear error for a head the model does not have."""
        layer, head = parse_head_label(label)
        if not (layer < self.n_layers and head < self.n_heads):
            raise WorkbenchError(f"{self.model} has no head {label}: it has layers 0..{self.n_layers - 1} and heads "
                                 f"0..{self.n_heads - 1} (e.g. L{self.n_layers - 1}H{self.n_heads - 1}).")
        return layer, head

    def head(self, label: str) -> dict[str, Any]:
        """A head's profile: every metric with value, interval, rank, share_in_topk (the share of resamples keeping
        it in the top-k, where it is in today's top-k) and metric info, its roles and circuits."""
        layer, head = self.check_head(label)
        label = head_label(layer, head)
        rows = self.values[self.values["label"] == label].merge(
            self.stability.loc[self.stability["label"] == label, ["metric", "share_in_topk"]], on="metric", how="left")
        info = self.metrics[["metric", "analysis", "task", "description", "topk_stability", "causal_verdict"]]
        return {"label": label, "layer": layer, "head": head, "model": self.model,
                "depth": layer / max(self.n_layers - 1, 1),
                "metrics": rows.drop(columns=["layer", "head", "label"]).merge(info, on="metric", how="left")
                .reset_index(drop=True),
                "roles": self.roles[self.roles["label"] == label].reset_index(drop=True),
                "circuits": self.circuits[self.circuits["label"] == label].reset_index(drop=True)}
