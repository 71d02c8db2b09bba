"""Saved Results beyond a run's scores: kind and parent run, per-prompt values, checks without per-head scores,
load_result, and the catalog columns and filter that list them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_results import make_scores, save

from workbench.analyses.base import PER_PROMPT_COLUMNS
from workbench.results import runs as results
from workbench.results.runs import ResultsError, find_runs, load_per_prompt, load_result, load_run, save_run


def per_prompt_of(scores: pd.DataFrame, n_prompts: int = 3) -> pd.DataFrame:
    rows = [{"prompt": p, "layer": r.layer, "head": r.head, "metric": "score", "value": r.score + (p - 1) / 100}
            for p in range(n_prompts) for r in scores.itertuples()]
    return pd.DataFrame(rows, columns=list(PER_PROMPT_COLUMNS))


@pytest.fixture(autouse=True)
def _no_git(monkeypatch):
    monkeypatch.setattr(results, "_git_commit", lambda root: "0123abcd")


def test_a_check_without_scores_is_saved_linked_to_its_run_and_listed(tmp_path):
    scores = make_scores()
    run = save(scores, tmp_path, per_prompt=per_prompt_of(scores), summary={"best": "L1H2"})
    conditions = pd.DataFrame({"condition": ["top", "random"], "seed": [None, 0.0], "delta": [0.5, 0.01]})
    check = save(None, tmp_path, kind="ablate", parent_run=run.run_id, tables={"conditions": conditions},
                 summary={"top_delta": 0.5}, params={"k": 2, "seeds": [0, 1]}, analysis="induction", model="gpt2",
                 prompt_set="repeats")
    assert check.n_rows == 0 and not (tmp_path / "induction" / check.run_id / "scores.parquet").exists()
    catalog = find_runs(tmp_path).set_index("run_id")
    assert catalog.loc[check.run_id, "kind"] == "ablate" and catalog.loc[check.run_id, "parent_run"] == run.run_id
    assert catalog.loc[run.run_id, "kind"] == "run" and catalog.loc[run.run_id, "parent_run"] is None
    assert catalog.loc[check.run_id, "params"] == "k=2, seeds=[0, 1]"
    assert find_runs(tmp_path, kind="ablate").run_id.tolist() == [check.run_id]
    assert find_runs(tmp_path, kind="run").run_id.tolist() == [run.run_id]

    loaded = load_result(check.run_id, tmp_path)
    assert loaded.scores is None and loaded.kind == "ablate" and loaded.record.parent_run == run.run_id
    pd.testing.assert_frame_equal(loaded.tables["conditions"], conditions)
    assert loaded.summary == {"top_delta": 0.5} and loaded.per_prompt is None
    with pytest.raises(ResultsError, match="'ablate' check of induction without per-head scores.*load_result"):
        load_run(check.run_id, tmp_path)

    again = load_result(run.run_id, tmp_path)
    pd.testing.assert_frame_equal(again.scores, load_run(run.run_id, tmp_path)[0])
    pd.testing.assert_frame_equal(again.per_prompt, per_prompt_of(scores))
    assert again.kind == "run" and again.summary == {"best": "L1H2"} and again.tables == {}


def test_a_run_saved_before_kinds_loads_as_a_run(tmp_path):
    record = save(make_scores(), tmp_path)
    path = tmp_path / "induction" / record.run_id / "run.json"
    old = json.loads(path.read_text())
    del old["kind"], old["parent_run"]
    path.write_text(json.dumps(old))
    loaded = load_result(record.run_id, tmp_path)
    assert loaded.kind == "run" and loaded.record.parent_run is None and len(loaded.scores) == 6
    row = find_runs(tmp_path).iloc[0]
    assert row["kind"] == "run" and row["parent_run"] is None and row["params"] == "k=1"


def test_per_prompt_must_be_tidy_and_a_damaged_one_is_refused(tmp_path):
    scores = make_scores()
    with pytest.raises(ResultsError, match="per_prompt must be a DataFrame with columns"):
        save(scores, tmp_path, per_prompt=per_prompt_of(scores).rename(columns={"value": "v"}))
    with pytest.raises(ResultsError, match="needs analysis, model and prompt_set"):
        save_run(None, params={}, model_fingerprint="m", prompts_fingerprint="p", timings={}, results_dir=tmp_path)
    record = save(scores, tmp_path, per_prompt=per_prompt_of(scores))
    assert "per_prompt.parquet" in record.checksums
    path = tmp_path / "induction" / record.run_id / "per_prompt.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit, size unchanged
    path.write_bytes(bytes(data))
    with pytest.raises(ResultsError, match="per_prompt.parquet does not match the checksum"):
        load_per_prompt(record.run_id, tmp_path)
    with pytest.raises(ResultsError, match="damaged"):
        load_result(record.run_id, tmp_path)
