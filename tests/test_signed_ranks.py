"""Ranks that respect signs and ties (issue 18): |score| for signed maps, average ranks for ties, diverging colours
for signed maps, circuits chosen by |score| (the committed SmolLM2 circuits re-found from their score maps)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import workbench.api as wb
from workbench.core.scores import head_ranks, is_signed, ranked
from workbench.results.circuit_maps import load_with_scores
from workbench.results.circuits import select_heads
from workbench.viz.atlas import rank_heatmap
from workbench.viz.heads import DIVERGING, SEQUENTIAL, head_heatmap
from workbench_app import controllers as C

# The committed IOI circuit before issue 18: the top 5 % by signed score.
OLD_IOI = "L5H6 L8H0 L8H1 L11H6 L15H6 L15H7 L17H4 L18H2 L18H6 L19H2 L20H0 L23H0 L23H3 L29H1"


def frame(values) -> pd.DataFrame:
    values = np.asarray(values, dtype=float)
    return pd.DataFrame([{"analysis": "a", "model": "m", "prompt_set": "p", "layer": layer, "head": head,
                          "score": values[layer, head]}
                         for layer in range(values.shape[0]) for head in range(values.shape[1])])


def signed_map() -> pd.DataFrame:
    values = np.linspace(0.0, 0.3, 12).reshape(3, 4)  # max 0.3 at L2H3
    values[1, 1] = -0.9  # a large negative head
    return frame(values)


def test_a_large_negative_head_ranks_first_by_abs_score():
    scores = signed_map()
    assert is_signed(scores["score"]) and not is_signed(scores["score"].abs())
    top = ranked(scores, n=2)
    assert top["label"].tolist() == ["L1H1", "L2H3"] and top["rank"].tolist() == [1.0, 2.0]
    assert top.attrs["by"] == "|score|" and ranked(scores.assign(score=scores["score"].abs())).attrs["by"] == "score"
    assert wb.top_heads(scores, 2) == ["L1H1", "L2H3"]
    app_top = C.top_heads(scores, n=3)
    assert app_top.columns[:3].tolist() == ["head_label", "rank by |score|", "score"]
    assert app_top["head_label"].iloc[0] == "L1H1" and app_top["score"].iloc[0] == pytest.approx(-0.9)
    assert "signed: ranked by |score|" in C.map_title(scores, "score")
    assert "ranked" not in C.map_title(scores.assign(score=scores["score"].abs()), "score")


def test_ties_get_average_ranks():
    values = np.array([1.0, 1.0, 1.0, 0.5, np.nan, -2.0])
    assert head_ranks(values).tolist() == [3.0, 3.0, 3.0, 5.0, 6.0, 1.0]  # |·|: −2 first; three tied at 2, 3, 4
    assert head_ranks(np.ones(126)).tolist() == [63.5] * 126  # 126 heads tied at a rate of 1.0: not each "1 / 126"
    sinks = frame(np.array([[1.0, 1.0, 1.0, 0.2]]))
    assert C.top_heads(sinks)["rank"].tolist() == [2.0, 2.0, 2.0, 4.0]


def test_signed_maps_are_zero_centred_and_diverging_non_negative_sequential():
    signed = head_heatmap(signed_map()).data[0]
    assert signed.colorscale == head_heatmap(signed_map(), colorscale=DIVERGING).data[0].colorscale
    assert signed.zmid == 0.0
    plain = head_heatmap(signed_map().assign(score=lambda d: d["score"].abs())).data[0]
    assert plain.zmid is None
    assert plain.colorscale == head_heatmap(frame(np.ones((2, 2))), colorscale=SEQUENTIAL).data[0].colorscale
    assert plain.colorscale != signed.colorscale
    ranks = pd.DataFrame({"attr": [1.0, 2.0], "rate": [2.0, 1.0]}, index=["L0H0", "L0H1"])
    fig = rank_heatmap(ranks, n_heads_total=2, signed=["attr"])
    assert list(fig.layout.xaxis.ticktext) == ["|attr|", "rate"] and "by |value|" in fig.data[0].text[0][0]
    assert "by |value|" not in fig.data[0].text[0][1]


def test_circuit_selection_by_abs_score_and_signed_option():
    scores = signed_map()
    assert [str(h) for h in select_heads(scores, top_k=1)] == ["L1H1"]
    assert [str(h) for h in select_heads(scores, top_k=1, selection="signed")] == ["L2H3"]


def test_refound_smollm2_ioi_circuit_keeps_the_negative_heads():
    circuit, scores = load_with_scores("smollm2-135m_ioi")
    labels = set(circuit.labels)
    assert {"L29H0", "L24H4", "L24H5", "L24H7"} <= labels and circuit.selection == "top 5% by |score|"
    value = scores.set_index(["layer", "head"])["score"]
    assert value[(29, 0)] < -0.2 and len(labels) == 14
    # the file is the |score| rule applied to its committed map, and --selection signed gives the old circuit
    assert select_heads(scores, top_fraction=0.05) == circuit.heads
    assert " ".join(str(h) for h in select_heads(scores, top_fraction=0.05, selection="signed")) == OLD_IOI


@pytest.mark.parametrize("task", ["colored_objects", "greater_than", "docstring"])
def test_every_committed_smollm2_circuit_is_its_map_by_abs_score(task):
    circuit, scores = load_with_scores(f"smollm2-135m_{task}")
    assert circuit.selection == "top 5% by |score|"
    assert select_heads(scores, top_fraction=0.05) == circuit.heads
