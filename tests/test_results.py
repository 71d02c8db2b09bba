"""Tests for workbench.results.runs: head scores validation, run storage and the DuckDB catalog."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench.results import runs as results
from workbench.results.runs import (
    ResultsError,
    RunRecord,
    collect_provenance,
    default_results_dir,
    find_runs,
    head_label,
    load_run,
    parse_head_label,
    query_catalog,
    save_run,
    validate_head_scores,
)


def make_scores(analysis="induction", model="gpt2", prompt_set="repeats", n_layers=2, n_heads=3, **extra):
    rows = [
        {"analysis": analysis, "model": model, "prompt_set": prompt_set, "layer": layer, "head": head,
         "score": layer + head / 10}
        for layer in range(n_layers)
        for head in range(n_heads)
    ]
    df = pd.DataFrame(rows)
    for name, value in extra.items():
        df[name] = value
    return df


@pytest.fixture(autouse=True)
def _no_git(monkeypatch):
    """Never shell out to git in tests; a fixed commit keeps records deterministic."""
    monkeypatch.setattr(results, "_git_commit", lambda root: "0123abcd")


@pytest.fixture
def clock(monkeypatch):
    """Deterministic, strictly increasing UTC clock for save_run."""
    state = {"now": datetime(2024, 1, 1, tzinfo=timezone.utc)}

    def tick():
        state["now"] += timedelta(minutes=1)
        return state["now"]

    monkeypatch.setattr(results, "_utcnow", tick)
    return state


def save(df, results_dir, **overrides):
    kwargs = {"params": {"k": 1}, "model_fingerprint": "mf", "prompts_fingerprint": "pf",
              "timings": {"forward": 1.5, "score": 0.5}, "results_dir": results_dir}
    kwargs.update(overrides)
    return save_run(df, **kwargs)


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(("layer", "head"), [(0, 0), (3, 5), (11, 12), (np.int64(2), np.int32(7))])
def test_label_round_trip(layer, head):
    label = head_label(layer, head)
    assert label == f"L{int(layer)}H{int(head)}"
    assert parse_head_label(label) == (layer, head)


@pytest.mark.parametrize(
    "bad", ["3.5", "L3", "LxH2", "L-1H2", "L1H-2", "H2L1", "", "l3h5", " L3H5", "L3H5x", None, 35]
)
def test_parse_malformed_label(bad):
    with pytest.raises(ResultsError, match=r"L\{layer\}H\{head\}"):
        parse_head_label(bad)


@pytest.mark.parametrize(("layer", "head"), [(-1, 0), (0, -2), (1.5, 0), ("1", 2)])
def test_head_label_rejects_bad_numbers(layer, head):
    with pytest.raises(ResultsError):
        head_label(layer, head)


# --------------------------------------------------------------------------- validation


def test_validate_coerces_dtypes_and_keeps_extras():
    df = make_scores(extra_col="x")
    df["layer"] = df["layer"].astype("float64")
    df["head"] = df["head"].astype(str)
    df["score"] = df["score"].astype(str)
    df.loc[0, "score"] = np.nan
    out = validate_head_scores(df, n_layers=2, n_heads=3)
    assert out["layer"].dtype == "int64" and out["head"].dtype == "int64"
    assert out["score"].dtype == "float64" and np.isnan(out.loc[0, "score"])
    assert list(out.columns) == list(df.columns)
    assert df["head"].dtype != "int64"  # input untouched


@pytest.mark.parametrize(
    ("mutate", "kwargs", "message"),
    [
        (lambda df: df.drop(columns=["model", "score"]), {}, "missing required column(s) ['model', 'score']"),
        (lambda df: df.iloc[0:0], {}, "empty"),
        (lambda df: pd.concat([df, df.iloc[[1]]]), {}, "duplicate rows for heads L0H1"),
        (lambda df: df, {"n_layers": 1}, "out of range for n_layers=1"),
        (lambda df: df, {"n_heads": 2}, "valid values are 0..1"),
        (lambda df: df.assign(layer=df["layer"] - 1), {}, "non-negative integers"),
        (lambda df: df.assign(head=df["head"] + 0.5), {}, "'head' must hold non-negative integers"),
        (lambda df: df.assign(layer="a"), {}, "astype(int)"),
        (lambda df: df.assign(score=["x"] + [1.0] * (len(df) - 1)), {}, "non-numeric values ['x']"),
        (lambda df: df.assign(score=[np.inf] + [1.0] * (len(df) - 1)), {}, "infinite values for heads L0H0"),
        (lambda df: df.assign(score=[-np.inf] * len(df)), {}, "or NaN if the score is undefined"),
        (lambda df: df.assign(model=["a", "b"] * (len(df) // 2)), {}, "'model' has 2 distinct values"),
        (lambda df: df.assign(analysis=["a", "b"] * (len(df) // 2)), {}, "Split the frame"),
        (lambda df: df.assign(prompt_set=["p", "q"] * (len(df) // 2)), {}, "one (analysis, model,"),
        (lambda df: df.assign(model=None), {}, "'model' has missing values"),
    ],
)
def test_validation_errors(mutate, kwargs, message):
    with pytest.raises(ResultsError) as info:
        validate_head_scores(mutate(make_scores()), **kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_validate_rejects_non_dataframe():
    with pytest.raises(ResultsError, match="pandas DataFrame"):
        validate_head_scores([{"layer": 0}])


# --------------------------------------------------------------------------- save / load


def test_round_trip_with_extra_columns(tmp_path, clock):
    df = make_scores(n_layers=3, n_heads=4)
    df["top_token"] = [f"tok{i}" for i in range(len(df))]
    df["n_prompts"] = 7
    df.loc[2, "score"] = np.nan
    record = save(df, tmp_path, params={"k": 1, "tags": ("a", "b")})

    run_dir = tmp_path / "induction" / record.run_id
    assert sorted(p.name for p in run_dir.iterdir()) == ["run.json", "scores.parquet"]
    assert record.run_id.startswith("20240101T000100Z-") and len(record.run_id) == 25
    assert record.n_rows == 12 and record.model == "gpt2" and record.params["tags"] == ["a", "b"]
    assert record.git_commit == "0123abcd" and "pandas" in record.package_versions
    text = (run_dir / "run.json").read_text()
    assert text == json.dumps(record.to_json(), sort_keys=True, indent=2) + "\n"

    for ref in (record.run_id, run_dir, str(run_dir)):
        loaded, loaded_record = load_run(ref, results_dir=tmp_path)
        pd.testing.assert_frame_equal(loaded, validate_head_scores(df))
        assert loaded_record == record


def test_run_record_json_round_trip():
    record = RunRecord("r", "a", "m", "p", {"x": [1]}, "mf", "pf", {"numpy": "2"}, None,
                       {"t": 1.0}, "2024-01-01T00:00:00+00:00", "0.1.0", 3)
    assert RunRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    bad = record.to_json() | {"n_rows": "3"}
    with pytest.raises(ResultsError, match="'n_rows' should be int"):
        RunRecord.from_json(bad)
    with pytest.raises(ResultsError, match=r"missing field\(s\) \['created'\]"):
        RunRecord.from_json({k: v for k, v in record.to_json().items() if k != "created"})


def test_save_rejects_non_json_params(tmp_path):
    with pytest.raises(ResultsError, match=r"params\['device'\] is not JSON-serialisable"):
        save(make_scores(), tmp_path, params={"ok": 1, "device": object()})
    with pytest.raises(ResultsError, match=r"params\['eps'\]"):
        save(make_scores(), tmp_path, params={"eps": float("nan")})
    assert not (tmp_path / "induction").exists() or not any((tmp_path / "induction").iterdir())


def test_save_rejects_unsafe_analysis_name(tmp_path):
    with pytest.raises(ResultsError, match="directory name"):
        save(make_scores(analysis="../evil"), tmp_path)


def test_save_is_atomic(tmp_path, monkeypatch):
    def boom(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        save(make_scores(), tmp_path)
    assert list((tmp_path / "induction").iterdir()) == []
    assert find_runs(tmp_path).empty


def test_default_results_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_RESULTS_DIR", str(tmp_path))
    assert default_results_dir() == tmp_path
    record = save(make_scores(), None)
    assert (tmp_path / "induction" / record.run_id / "run.json").is_file()
    monkeypatch.delenv("WORKBENCH_RESULTS_DIR")
    from platformdirs import user_data_dir

    assert default_results_dir() == Path(user_data_dir("attention-workbench")) / "results"  # never in the package


def test_load_unknown_id(tmp_path):
    with pytest.raises(ResultsError, match="no run with id 'nope'.*find_runs"):
        load_run("nope", results_dir=tmp_path)
    with pytest.raises(ResultsError, match="does not exist"):
        load_run(tmp_path / "a" / "missing")


def test_load_malformed_run_json(tmp_path):
    record = save(make_scores(), tmp_path)
    run_json = tmp_path / "induction" / record.run_id / "run.json"
    run_json.write_text("{not json")
    with pytest.raises(ResultsError, match="run.json is not valid JSON.*delete the run directory"):
        load_run(record.run_id, results_dir=tmp_path)
    data = record.to_json()
    del data["model"]
    run_json.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match=r"run.json is malformed.*\['model'\].*re-run"):
        load_run(record.run_id, results_dir=tmp_path)
    run_json.unlink()
    with pytest.raises(ResultsError, match="run.json is missing"):
        load_run(record.run_id, results_dir=tmp_path)


def test_load_missing_or_corrupt_parquet(tmp_path):
    record = save(make_scores(), tmp_path)
    parquet = tmp_path / "induction" / record.run_id / "scores.parquet"
    parquet.write_bytes(b"garbage")
    with pytest.raises(ResultsError, match="scores.parquet does not match the checksum.*re-run the analysis"):
        load_run(record.run_id, results_dir=tmp_path)
    run_json = parquet.parent / "run.json"  # a run saved before checksums: the parquet reader still refuses it
    run_json.write_text(json.dumps({k: v for k, v in record.to_json().items() if k != "checksums"}))
    with pytest.raises(ResultsError, match="cannot read .*scores.parquet"):
        load_run(record.run_id, results_dir=tmp_path)
    parquet.unlink()
    with pytest.raises(ResultsError, match="scores.parquet"):
        load_run(record.run_id, results_dir=tmp_path)


# --------------------------------------------------------------------------- provenance


def test_collect_provenance_metadata_only():
    torch_loaded = "torch" in sys.modules
    versions, commit = collect_provenance()
    assert {"numpy", "pandas", "pyarrow", "duckdb"} <= versions.keys()
    assert all(isinstance(v, str) for v in versions.values())
    assert commit == "0123abcd"
    assert ("torch" in sys.modules) == torch_loaded


def test_git_commit_never_raises(monkeypatch, tmp_path):
    monkeypatch.undo()  # restore the real _git_commit

    def missing_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", missing_git)
    assert results._git_commit(tmp_path) is None
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 128, "", "fatal"))
    assert results._git_commit(tmp_path) is None
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "abc123\n", ""))
    assert results._git_commit(tmp_path) == "abc123"


# --------------------------------------------------------------------------- catalog


@pytest.fixture
def three_runs(tmp_path, clock):
    first = save(make_scores(), tmp_path, timings={"a": 1.0, "b": 2.0})
    second = save(make_scores(model="pythia"), tmp_path, timings={})
    third = save(make_scores(analysis="copying", prompt_set="names"), tmp_path)
    return tmp_path, [first, second, third]


def test_find_runs_lists_newest_first(three_runs):
    root, (first, second, third) = three_runs
    runs = find_runs(root)
    assert list(runs.columns) == list(results.CATALOG_COLUMNS)
    assert list(runs["run_id"]) == [third.run_id, second.run_id, first.run_id]
    row = runs.set_index("run_id").loc[first.run_id]
    assert row["seconds"] == 3.0 and row["n_rows"] == 6 and row["git_commit"] == "0123abcd"
    assert row["path"] == str(root / "induction" / first.run_id)
    assert runs.set_index("run_id").loc[second.run_id, "seconds"] == 0.0


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"analysis": "induction"}, [1, 0]),
        ({"model": "pythia"}, [1]),
        ({"prompt_set": "names"}, [2]),
        ({"analysis": "induction", "model": "gpt2"}, [0]),
        ({"analysis": "induction", "prompt_set": "names"}, []),
        ({"model": "x' OR '1'='1"}, []),
    ],
)
def test_find_runs_filters(three_runs, filters, expected):
    root, records = three_runs
    runs = find_runs(root, **filters)
    assert list(runs["run_id"]) == [records[i].run_id for i in expected]
    assert list(runs.columns) == list(results.CATALOG_COLUMNS)


def test_find_runs_empty_or_missing_dir(tmp_path):
    for root in (tmp_path, tmp_path / "does-not-exist"):
        runs = find_runs(root)
        assert runs.empty and list(runs.columns) == list(results.CATALOG_COLUMNS)


def test_find_runs_skips_malformed_and_temp_dirs(three_runs):
    root, records = three_runs
    broken = root / "induction" / "20990101T000000Z-deadbeef"
    broken.mkdir()
    (broken / "run.json").write_text("{oops")
    half = root / "induction" / "20990101T000000Z-cafecafe"
    half.mkdir()
    (half / "run.json").write_text(json.dumps({"run_id": "x"}))
    tmp = root / "induction" / ".xxx.tmp-123"
    tmp.mkdir()
    (tmp / "run.json").write_text(json.dumps(records[0].to_json() | {"run_id": "hidden"}))
    (root / ".hidden-analysis" / "r").mkdir(parents=True)

    with pytest.warns(UserWarning) as caught:
        runs = find_runs(root)
    messages = " ".join(str(w.message) for w in caught)
    assert str(broken / "run.json") in messages and str(half / "run.json") in messages
    assert ".tmp-123" not in messages
    assert sorted(runs["run_id"]) == sorted(r.run_id for r in records)


def test_query_catalog(three_runs):
    root, _ = three_runs
    counts = query_catalog("SELECT analysis, count(*) AS n FROM runs GROUP BY 1 ORDER BY 1", root)
    assert counts.to_dict("list") == {"analysis": ["copying", "induction"], "n": [1, 2]}
    total = query_catalog("SELECT sum(seconds) AS s FROM runs WHERE model = 'gpt2'", root)
    assert total.loc[0, "s"] == pytest.approx(3.0 + 2.0)
    with pytest.raises(ResultsError, match="view 'runs'"):
        query_catalog("SELECT nope FROM runs", root)
    assert query_catalog("SELECT count(*) AS n FROM runs", root / "empty").loc[0, "n"] == 0
