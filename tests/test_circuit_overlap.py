"""Overlap of circuits and score maps (workbench.analyses.circuits.overlap)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from workbench.analyses.circuits.overlap import (
    chance_p_value,
    difference_map,
    layer_profile,
    overlap,
    random_overlap_baseline,
)
from workbench.analyses.circuits.views import circuit_overlap_map
from workbench.core.errors import WorkbenchError
from workbench.core.paths import SOURCE_ROOT
from workbench.results.circuits import Circuit


def scores(values, analysis: str = "a", model: str = "m", prompt_set: str = "p") -> pd.DataFrame:
    values = np.asarray(values, dtype=float)
    return pd.DataFrame([{"analysis": analysis, "model": model, "prompt_set": prompt_set, "layer": layer,
                          "head": head, "score": values[layer, head]}
                         for layer in range(values.shape[0]) for head in range(values.shape[1])])


def circuit(heads: str, name: str = "c", n_layers: int = 4, n_heads: int = 4, model: str = "m") -> Circuit:
    return Circuit(name=name, model=model, task="t", heads=heads, n_layers=n_layers, n_heads=n_heads,
                   method="activation_patching", selection="hand-picked")


def test_circuit_set_overlap_known_values():
    a, b = circuit("L0H0 L0H1 L1H0 L2H3"), circuit("L0H1 L1H0 L3H3")
    r = overlap(a, b)
    assert (r["n_a"], r["n_b"], r["n_shared"]) == (4, 3, 2)
    assert r["shared"] == ["L0H1", "L1H0"]
    assert r["jaccard"] == pytest.approx(2 / 5) and r["overlap_coefficient"] == pytest.approx(2 / 3)
    assert r["shared_of_a"] == pytest.approx(0.5) and r["shared_of_b"] == pytest.approx(2 / 3)
    assert r["same_shape"] is True and r["spearman"] is None and r["layer_profile_spearman"] is None
    assert any("without a score map" in note for note in r["notes"])


def test_shared_labels_sort_numerically():
    r = overlap(circuit("L2H1 L10H1", n_layers=12), circuit("L10H1 L2H1", n_layers=12))
    assert r["shared"] == ["L2H1", "L10H1"] and r["jaccard"] == 1.0


def test_identical_and_reversed_maps():
    values = np.arange(16, dtype=float).reshape(4, 4)
    same = overlap(scores(values), scores(values), top_k=3)
    assert same["spearman"] == pytest.approx(1.0) and same["jaccard"] == 1.0 and same["n_shared"] == 3
    assert same["spearman_p"] < 1e-6 and same["layer_profile_spearman"] == pytest.approx(1.0)
    rev = overlap(scores(values), scores(-values), top_k=3, selection="signed")
    assert rev["spearman"] == pytest.approx(-1.0) and rev["n_shared"] == 0 and rev["jaccard"] == 0.0
    mirrored = overlap(scores(values), scores(-values), top_k=3)  # by |score| (default): the same strong heads
    assert mirrored["spearman"] == pytest.approx(1.0) and mirrored["n_shared"] == 3
    assert overlap(scores(values), scores(values))["n_a"] == 1  # default top 5 %: ceil(0.8) = 1 head


def test_nan_and_constant_maps():
    values = np.arange(16, dtype=float).reshape(4, 4)
    holes = values.copy()
    holes[0, :] = np.nan
    assert overlap(scores(values), scores(holes), top_k=2)["spearman"] == pytest.approx(1.0)
    flat = overlap(scores(values), scores(np.ones((4, 4))), top_k=2)
    assert flat["spearman"] is None and any("constant" in n for n in flat["notes"])


def test_different_shapes_give_set_overlap_notes_and_layer_profile():
    small = np.repeat(np.arange(4, dtype=float)[:, None], 4, axis=1)  # score grows with depth
    big = np.repeat(np.arange(12, dtype=float)[:, None], 6, axis=1)
    r = overlap(scores(small, model="s"), scores(big, model="b"), top_k=2)
    assert r["same_shape"] is False and r["shape_a"] == (4, 4) and r["shape_b"] == (12, 6)
    assert r["spearman"] is None and r["layer_profile_spearman"] > 0.95  # < 1 only by ties at the held ends
    assert r["n_shared"] == 0 and r["jaccard"] == 0.0  # top heads: L3H0-1 vs L11H0-1
    assert any("do not correspond" in n for n in r["notes"])
    r = overlap(scores(small), scores(big[::-1]), top_k=2)
    assert r["layer_profile_spearman"] < -0.95
    c = overlap(circuit("L0H0 L1H1"), circuit("L1H1 L9H5", n_layers=12, n_heads=6))
    assert c["n_shared"] == 1 and c["jaccard"] == pytest.approx(1 / 3) and c["same_shape"] is False
    assert any("do not correspond" in n for n in c["notes"]) and c["layer_profile_spearman"] is None


def test_layer_profile_bins():
    small = scores(np.arange(4, dtype=float)[:, None] * np.ones((1, 2)))  # 4 layers at depths .125 .375 .625 .875
    profile = layer_profile(small)
    assert profile.shape == (10,) and profile[1] == 0 and profile[8] == 3  # bins holding a layer take its max
    assert profile[2] == pytest.approx(0.5) and profile[0] == 0 and profile[9] == 3  # gaps interpolated, ends held
    deep = scores(np.arange(20, dtype=float)[:, None] * np.ones((1, 2)))
    assert layer_profile(deep).tolist() == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]  # max of the 2 layers per bin


def test_mixed_circuit_and_map_and_argument_errors():
    values = np.arange(16, dtype=float).reshape(4, 4)
    r = overlap(circuit("L3H3 L3H2"), scores(values), top_k=2)
    assert r["jaccard"] == 1.0 and r["spearman"] is None
    assert any("ignored" in n for n in r["notes"])
    with pytest.raises(WorkbenchError, match="at most one"):
        overlap(scores(values), scores(values), top_k=1, top_fraction=0.1)
    with pytest.raises(WorkbenchError, match="Circuit or a HeadScores"):
        overlap({"L0H0"}, scores(values))


def test_difference_map_values():
    a = scores([[1.0, 2.0], [3.0, 4.0]], analysis="x")
    b = scores([[40.0, 30.0], [20.0, 10.0]], analysis="y")
    d = difference_map(a, b)
    assert list(d.columns[:6]) == ["analysis", "model", "prompt_set", "layer", "head", "score"]
    assert {"score_a", "score_b", "pct_a", "pct_b"} <= set(d.columns)
    assert d["analysis"].unique().tolist() == ["difference"] and d["model"].iloc[0] == "m"
    assert d["pct_a"].tolist() == [25.0, 50.0, 75.0, 100.0] and d["pct_b"].tolist() == [100.0, 75.0, 50.0, 25.0]
    assert d["score"].tolist() == [-75.0, -25.0, 25.0, 75.0]
    ties = difference_map(scores([[1.0, 1.0], [2.0, np.nan]]), scores(np.zeros((2, 2))))
    assert ties["pct_a"].tolist()[:3] == [pytest.approx(100 / 3 * 1.5), pytest.approx(100 / 3 * 1.5), 100.0]
    assert np.isnan(ties["score"].iloc[3]) and (ties["pct_b"] == 62.5).all()
    with pytest.raises(WorkbenchError, match="one shape"):
        difference_map(a, scores(np.zeros((3, 2))))


def test_random_baseline_matches_hypergeometric_expectation():
    r = random_overlap_baseline(12, 12, 20, 30, n=4000, seed=1)
    expected = 20 * 30 / 144
    assert r["expected_shared"] == pytest.approx(expected)
    assert abs(r["mean_shared"] - expected) < 4 * r["sd_shared"] / np.sqrt(4000)
    assert r["mean_jaccard"] == pytest.approx(r["expected_jaccard"], rel=0.03)
    assert r["mean_overlap_coefficient"] == pytest.approx(expected / 20, rel=0.03)
    assert r == random_overlap_baseline(12, 12, 20, 30, n=4000, seed=1)
    full = random_overlap_baseline(2, 2, 4, 3, n=10)  # a circuit of every head shares all of B
    assert full["mean_shared"] == 3 and full["sd_jaccard"] == 0.0
    assert chance_p_value(12, 12, 20, 30, 0) == pytest.approx(1.0)
    assert chance_p_value(12, 12, 20, 30, 15) < 1e-4
    with pytest.raises(WorkbenchError, match="sizes must be in"):
        random_overlap_baseline(2, 2, 5, 1)


def test_overlap_map_figure():
    fig = circuit_overlap_map(3, 4, ["L0H0", "L1H1"], ["L1H1", "L2H3"], names=("IOI", "CO"))
    z = np.asarray(fig.data[0].z)
    assert z.shape == (3, 4) and z[0, 0] == 1 and z[1, 1] == 3 and z[2, 3] == 2 and z[0, 1] == 0
    assert "both (IOI ∩ CO)" in fig.data[0].text[1][1] and "L2H3" in fig.data[0].text[2][3]
    assert list(fig.data[0].colorbar.tickvals) == [0, 1, 2, 3] and "only IOI (1)" in fig.data[0].colorbar.ticktext
    assert "1 shared" in fig.layout.title.text
    with pytest.raises(WorkbenchError, match="outside the 3×4 map"):
        circuit_overlap_map(3, 4, ["L3H0"], [])


def test_overlap_and_circuit_files_are_torch_free():
    code = ("import sys, workbench_app.controllers, workbench.analyses.circuits.overlap, workbench.results.circuits, "
            "workbench.analyses.circuits.views\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=SOURCE_ROOT, timeout=120)
