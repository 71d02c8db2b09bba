"""Catalog operations: run labels and deletion (api and CLI), damaged runs, and report commands that save."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

import workbench.api as wb
from workbench.cli.main import app
from workbench.results.runs import load_result, save_run


def _scores(analysis="induction_heads", model="tiny"):
    return pd.DataFrame([{"analysis": analysis, "model": model, "prompt_set": "p", "layer": layer, "head": head,
                          "score": layer + head / 10} for layer in range(2) for head in range(2)])


def _save(root, scores=None, **kw):
    return save_run(_scores() if scores is None else scores, params={"n_prompts": 3, "task": "ioi"},
                    model_fingerprint="mf", prompts_fingerprint="pf", timings={"total": 1.0}, results_dir=root, **kw)


def invoke(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def test_label_is_stored_with_the_run_and_survives_a_reload(tmp_path):
    run = _save(tmp_path)
    record = wb.label_run(run.run_id, "  baseline, seed 0 ", tmp_path)
    assert record.label == "baseline, seed 0"
    assert json.loads((tmp_path / run.analysis / run.run_id / "run.json").read_text())["label"] == "baseline, seed 0"
    assert wb.load_result(run.run_id, tmp_path)[1].label == "baseline, seed 0"  # checksums still hold
    row = wb.find_results(results_dir=tmp_path).iloc[0]
    assert row["label"] == "baseline, seed 0" and "n_prompts=3" in row["params"] and "task=ioi" in row["params"]
    wb.label_run(run.run_id, "", tmp_path)
    assert wb.find_results(results_dir=tmp_path).iloc[0]["label"] == ""


@pytest.mark.parametrize(("text", "message"), [("x" * 61, "at most 60"), ("two\nlines", "one line"),
                                               ("tab\there", "one line"), (3, "must be text")])
def test_bad_labels_are_refused_and_change_nothing(tmp_path, text, message):
    run = _save(tmp_path)
    before = (tmp_path / run.analysis / run.run_id / "run.json").read_bytes()
    with pytest.raises(wb.WorkbenchError, match=message):
        wb.label_run(run.run_id, text, tmp_path)
    assert (tmp_path / run.analysis / run.run_id / "run.json").read_bytes() == before


def test_delete_moves_the_run_and_its_checks_to_the_trash(tmp_path):
    keep, run = _save(tmp_path), _save(tmp_path)
    check = save_run(None, params={}, model_fingerprint="mf", prompts_fingerprint="pf", timings={},
                     results_dir=tmp_path, kind="ablate", parent_run=run.run_id, analysis=run.analysis, model="tiny",
                     prompt_set="p")
    assert wb.delete_run(run.run_id, tmp_path) == [run.run_id, check.run_id]
    assert list(wb.find_results(results_dir=tmp_path)["run_id"]) == [keep.run_id]
    assert sorted(p.name for p in (tmp_path / ".trash").iterdir()) == sorted(
        f"{run.analysis}.{i}" for i in (run.run_id, check.run_id))
    with pytest.raises(wb.WorkbenchError, match="no run with id"):
        wb.delete_run(run.run_id, tmp_path)


def test_a_damaged_run_is_listed_and_can_be_deleted(tmp_path):
    run = _save(tmp_path)
    (tmp_path / run.analysis / run.run_id / "scores.parquet").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="skipping run"):
        assert wb.find_results(results_dir=tmp_path).empty
    damaged = wb.damaged_runs(tmp_path)
    assert list(damaged["run_id"]) == [run.run_id] and "checksum" in damaged["problem"].iloc[0]
    assert wb.delete_run(run.run_id, tmp_path) == [run.run_id]
    assert wb.damaged_runs(tmp_path).empty and not (tmp_path / run.analysis / run.run_id).exists()


def test_delete_refuses_a_directory_outside_the_results_dir(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(wb.WorkbenchError, match="not a run directory"):
        wb.delete_run(str(outside), tmp_path / "results")
    assert outside.is_dir()


def test_cli_label_ls_and_rm(tmp_path):
    run = _save(tmp_path)
    result = invoke("results", "label", run.run_id, "my label", "--results-dir", tmp_path)
    assert result.exit_code == 0 and "my label" in result.output
    assert "my label" in invoke("results", "ls", "--results-dir", tmp_path).output
    bad = invoke("results", "label", run.run_id, "x" * 80, "--results-dir", tmp_path)
    assert bad.exit_code == 2 and "at most 60" in bad.output
    assert invoke("results", "rm", run.run_id, "--results-dir", tmp_path, input="n\n").exit_code == 1
    assert len(wb.find_results(results_dir=tmp_path)) == 1  # answered no: nothing deleted
    result = invoke("results", "rm", run.run_id, "--yes", "--results-dir", tmp_path)
    assert result.exit_code == 0 and run.run_id in result.output
    assert "no saved runs match" in invoke("results", "ls", "--results-dir", tmp_path).output


def test_sinks_report_saves_a_report_the_catalog_lists(tmp_path):
    tmp_path = tmp_path / "results"  # not the activation cache's folder (conftest)
    result = invoke("sinks", "report", "-m", "tiny", "--n-prompts", "2", "--n-tokens", "24", "--ppl-prompts", "0",
                    "--results-dir", tmp_path)
    assert result.exit_code == 0, result.output
    (row,) = wb.find_results(results_dir=tmp_path).to_dict("records")
    assert row["kind"] == "report" and row["analysis"] == "attention_sinks" and "n_prompts=2" in row["params"]
    saved = wb.load_summary(row["run_id"], tmp_path)
    assert saved["heads_always"] + saved["heads_never"] <= 8 and 0.0 <= saved["sink_rate"] <= 1.0
    scores = wb.load_scores(row["run_id"], tmp_path)
    assert (scores["score"] == scores["sink_rate"]).all() and len(scores) == 8  # tiny: 2 layers × 4 heads
    tables = load_result(row["run_id"], tmp_path).tables
    assert {"layers", "hidden_examples", "secondary", "tokens", "massive_dims"} <= set(tables)
    assert list(tables["layers"]["layer"]) == [0, 1]


def test_preplan_report_saves_its_run_with_the_token_table(tmp_path):
    tmp_path = tmp_path / "results"
    result = invoke("preplan", "report", "-m", "tiny", "--n-problems", "2", "--max-new-tokens", "12",
                    "--results-dir", tmp_path)
    assert result.exit_code == 0, result.output
    (row,) = wb.find_results(results_dir=tmp_path).to_dict("records")
    assert row["analysis"] == "preplan_anchor" and row["kind"] == "run" and "n_problems=2" in row["params"]
    assert set(wb.load_table(row["run_id"], "tokens", tmp_path)["trace"]) == {0, 1}
