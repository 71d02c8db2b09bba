"""Circuits as TOML files (workbench.results.circuits): round trips, clear errors, head selection, random circuits."""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pandas as pd
import pytest

from workbench.core.errors import WorkbenchError
from workbench.core.heads import HeadRef, parse_heads
from workbench.results.circuits import (
    Circuit,
    CircuitError,
    circuit_path,
    list_circuits,
    load_circuit,
    random_circuits,
    save_circuit,
    select_heads,
)


def scores(values, analysis: str = "head_attribution", model: str = "m") -> pd.DataFrame:
    values = np.asarray(values, dtype=float)
    return pd.DataFrame([{"analysis": analysis, "model": model, "prompt_set": "p", "layer": layer, "head": head,
                          "score": values[layer, head]}
                         for layer in range(values.shape[0]) for head in range(values.shape[1])])


def make(**kw) -> Circuit:
    base = dict(name="gpt2_ioi", model="gpt2", task="ioi", heads=parse_heads("L9H9, L9H6, L10H0"), n_layers=12,
                n_heads=12, method="activation_patching", selection="top 5%", run_id="20250101T000000Z-abcd1234",
                metric={"clean": 3.25, "corrupt": -0.5, "metric": "logit_diff", "n_prompts": 50, "ok": True})
    return Circuit(**{**base, **kw})


def test_circuit_normalises_heads_and_labels():
    c = make(heads=("L10H0", "L9H9", HeadRef(9, 6), (9, 9)))
    assert c.heads == (HeadRef(9, 6), HeadRef(9, 9), HeadRef(10, 0))
    assert c.labels == ["L9H6", "L9H9", "L10H0"]
    metric = make(metric={"x": np.float32(0.5), "k": np.int64(3)}).metric
    assert metric == {"x": 0.5, "k": 3} and type(metric["k"]) is int


@pytest.mark.parametrize("kw, match", [
    (dict(name=""), "non-empty name"), (dict(name="../evil"), "cannot be a file name"),
    (dict(name=".hidden"), "cannot be a file name"), (dict(heads=("L12H0",)), "outside the model's shape"),
    (dict(heads=()), "at least one head"), (dict(heads=("layer3",)), "malformed head label"),
    (dict(n_layers=0), "positive integer"), (dict(task=" "), "empty task"),
    (dict(metric={"xs": [1, 2]}), "must be scalars"),
])
def test_circuit_validation(kw, match):
    with pytest.raises(CircuitError, match=match) as info:
        make(**kw)
    assert isinstance(info.value, WorkbenchError)


def test_round_trip_and_atomic_write(tmp_path):
    c = make(notes='tricky "quotes", back\\slash, tab\t, newline\n, unicode ∩ é 🙂, del \x7f',
             metric={"clean": 3.25, "tiny": 1e-300, "nan": math.nan, "inf": -math.inf, "with space": "a\"b",
                     "n": 7, "flag": False})
    path = save_circuit(c, tmp_path)
    assert path == tmp_path / "gpt2_ioi.toml"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2_ioi.toml"]  # no tmp file left behind
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert data["format_version"] == 1 and data["heads"] == ["L9H6", "L9H9", "L10H0"]
    back = load_circuit(path)
    assert math.isnan(back.metric.pop("nan")) and math.isnan(c.metric["nan"])
    assert back == Circuit(**{**c.__dict__, "metric": {k: v for k, v in c.metric.items() if k != "nan"}})
    assert load_circuit("gpt2_ioi", tmp_path).notes == c.notes  # a bare name is looked up in the directory
    assert circuit_path("gpt2_ioi", tmp_path) == path and circuit_path(str(path)) == path


def test_round_trip_without_run_id_and_many_heads(tmp_path):
    c = make(run_id=None, metric={}, heads=tuple(HeadRef(layer, h) for layer in range(12) for h in range(3)))
    path = save_circuit(c, tmp_path)
    assert "run_id" not in tomllib.loads(path.read_text())
    assert load_circuit(path) == c


def test_save_overwrites_atomically(tmp_path):
    save_circuit(make(), tmp_path)
    save_circuit(make(task="ioi-v2"), tmp_path)
    assert load_circuit("gpt2_ioi", tmp_path).task == "ioi-v2"
    assert [p.name for p in tmp_path.iterdir()] == ["gpt2_ioi.toml"]


def test_load_errors(tmp_path):
    save_circuit(make(), tmp_path)
    with pytest.raises(CircuitError, match=r"no circuit file .*available in .*: gpt2_ioi"):
        load_circuit("nope", tmp_path)
    good = (tmp_path / "gpt2_ioi.toml").read_text()
    cases = {
        "broken": ("heads = [\"L1H1\"\nname = ", r"broken\.toml is not valid TOML \("),
        "nokey": (good.replace('task = "ioi"\n', ""), r"missing key\(s\) \['task'\]"),
        "badhead": (good.replace('"L10H0"', '"L10H12"'), r"badhead\.toml.*L10H12 outside the model's shape"),
        "badlabel": (good.replace('"L10H0"', '"10:0"'), "malformed head label '10:0'"),
        "version": (good.replace("format_version = 1", "format_version = 2"), "format_version = 2.*upgrade"),
        "badtype": (good.replace("n_layers = 12", 'n_layers = "12"'), "n_layers should be an integer"),
        "unknown": (good + "\n[extra]\nx = 1\n", r"unknown key\(s\) \['extra'\]"),
    }
    for name, (text, match) in cases.items():
        (tmp_path / f"{name}.toml").write_text(text)
        with pytest.raises(CircuitError, match=match):
            load_circuit(tmp_path / f"{name}.toml")
    listing = list_circuits(tmp_path)
    assert list(listing.columns) == ["name", "model", "task", "n_heads_in_circuit", "method", "selection", "run_id",
                                     "path", "error"]
    assert listing["name"].tolist() == sorted(["gpt2_ioi", *cases])
    ok = listing.set_index("name").loc["gpt2_ioi"]
    assert ok["error"] is None and ok["n_heads_in_circuit"] == 3 and ok["model"] == "gpt2"
    assert listing.set_index("name").loc[list(cases), "error"].str.len().gt(0).all()


def test_list_circuits_of_missing_directory_is_empty(tmp_path):
    assert list_circuits(tmp_path / "none").empty


def test_select_heads_criteria():
    s = scores(np.arange(20).reshape(4, 5))  # 20 heads, L3H4 best
    assert select_heads(s, top_k=2) == (HeadRef(3, 3), HeadRef(3, 4))
    assert len(select_heads(s, top_fraction=0.05)) == 1  # ceil(0.05 · 20) = 1
    assert len(select_heads(s, top_fraction=0.15)) == 3  # ceil(3.0000000000000004) must not give 4
    assert len(select_heads(s, top_fraction=0.01)) == 1  # at least one
    assert select_heads(s, threshold=17.5) == (HeadRef(3, 3), HeadRef(3, 4))
    neg = s.assign(score=-s["score"])
    assert select_heads(neg, top_k=1) == (HeadRef(3, 4),)  # by |score| by default
    assert select_heads(neg, top_k=1, selection="signed") == (HeadRef(0, 0),)
    assert select_heads(s.assign(other=-s["score"]), top_k=1, column="other", selection="signed") == (HeadRef(0, 0),)
    with pytest.raises(CircuitError, match="selection must be one of abs, signed"):
        select_heads(s, top_k=1, selection="absolute")
    for bad in ({}, {"top_k": 1, "threshold": 0.0}):
        with pytest.raises(CircuitError, match="exactly one of"):
            select_heads(s, **bad)
    with pytest.raises(CircuitError, match="top_fraction must be in"):
        select_heads(s, top_fraction=5)
    with pytest.raises(CircuitError, match="no column"):
        select_heads(s, top_k=1, column="nope")


def test_select_heads_nan_and_ties():
    values = np.array([[np.nan, 1.0, 1.0], [1.0, np.nan, 0.5]])
    s = scores(values)
    assert select_heads(s, top_k=2) == (HeadRef(0, 1), HeadRef(0, 2))  # 3-way tie: lowest (layer, head) first
    assert select_heads(s, top_k=10) == parse_heads("L0H1 L0H2 L1H0 L1H2")  # NaN never selected
    assert select_heads(s, threshold=-1e9) == parse_heads("L0H1 L0H2 L1H0 L1H2")
    assert select_heads(scores(np.full((2, 2), np.nan)), top_fraction=0.5) == ()


def test_random_circuits_deterministic_and_excluding():
    first = random_circuits(4, 5, 3, 50, seed=7, exclude=("L0H0", HeadRef(1, 1)))
    assert first == random_circuits(4, 5, 3, 50, seed=7, exclude=("L0H0", HeadRef(1, 1)))
    assert first != random_circuits(4, 5, 3, 50, seed=8, exclude=("L0H0", HeadRef(1, 1)))
    assert len(first) == 50
    for circuit in first:
        assert len(set(circuit)) == 3 and list(circuit) == sorted(circuit)
        assert HeadRef(0, 0) not in circuit and HeadRef(1, 1) not in circuit
        assert all(0 <= h.layer < 4 and 0 <= h.head < 5 for h in circuit)
    assert len({h for c in first for h in c}) == 18  # every allowed head turns up
    with pytest.raises(CircuitError, match="cannot draw 19 distinct heads"):
        random_circuits(4, 5, 19, 1, seed=0, exclude=("L0H0", "L1H1"))


def test_circuit_with_its_map_round_trips_and_a_bad_map_writes_nothing(tmp_path):
    from workbench.results.circuit_maps import load_with_scores, save_with_scores

    values = np.arange(144, dtype=float).reshape(12, 12)
    path = save_with_scores(make(), scores(values), tmp_path)
    circuit, back = load_with_scores("gpt2_ioi", tmp_path)
    assert path == tmp_path / "gpt2_ioi.toml" and circuit == make()
    assert back["score"].to_numpy() == pytest.approx(values.ravel())
    with pytest.raises(WorkbenchError):  # a 13-layer map does not belong to a 12-layer circuit
        save_with_scores(make(name="other"), scores(np.zeros((13, 12))), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2_ioi.scores.parquet", "gpt2_ioi.toml"]
