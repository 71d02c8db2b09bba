"""The atlas's causal column (workbench.atlas.causal) and `--fill` (workbench.atlas.fill), on tiny runs saved in a
temporary results directory."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from workbench.analyses.base import Result
from workbench.analyses.runner import run_analysis, run_check
from workbench.atlas import fill as atlas_fill
from workbench.atlas.causal import causal_columns, causal_verdict, read_effect
from workbench.batch.executors import run_plan
from workbench.batch.plan import Plan, parse_plan
from workbench.results.runs import find_runs, load_result

EFFECT = {"effect": 1.0, "random_mean": 0.2, "random_sd": 0.3, "n_random": 3, "higher_is": "worse"}
SMALL = {"name": "atlas", "models": ["tiny"], "analyses": [
    {"name": "attention_profile", "params": {"n_prompts": 2, "n_tokens": 24}, "checks": ["ablate"],
     "check_params": {"ablate": {"k": 2}}},
    {"name": "induction_heads", "params": {"n_prompts": 2, "half_len": 8}, "checks": ["ablate"],
     "check_params": {"ablate": {"n_prompts": 2, "half_len": 8, "k": 2}}}]}


def test_verdict_rule():
    assert causal_verdict(EFFECT) == "matters"  # 1.0 − 0.2 > 2 · 0.3
    assert causal_verdict({**EFFECT, "random_sd": 0.4}) == "no larger than random"  # 0.8 = 2 · 0.4 is not more
    assert causal_verdict({**EFFECT, "higher_is": "better"}) == "no larger than random"  # it helped the metric
    assert causal_verdict({**EFFECT, "effect": -0.5, "higher_is": "better"}) == "matters"
    assert causal_verdict({**EFFECT, "random_sd": None, "n_random": 1}) == "no larger than random"
    assert causal_verdict(None) == "not run"


def test_readers_of_the_existing_checks_give_the_standard_dict():
    mask = Result("retrieval_heads", tables={"conditions": pd.DataFrame({"accuracy": [0.2, 0.9, 1.0, 0.8]})},
                  kind="mask")
    assert read_effect("retrieval_heads", mask) == pytest.approx(
        {"effect": 0.2, "random_mean": 0.9, "random_sd": 0.1, "n_random": 3, "metric": "niah_accuracy",
         "higher_is": "better"})
    table = pd.DataFrame({"condition": ["anchors", "random-0", "random-1", "anchors", "random-0", "random-1"],
                          "delta_logprob": [-1.0, -0.1, -0.3, -2.0, -0.3, -0.5]})
    anchors = Result("preplan_anchor", tables={"intervention": table}, kind="anchor_intervention")
    assert read_effect("preplan_anchor", anchors) == pytest.approx(
        {"effect": -1.5, "random_mean": -0.3, "random_sd": 0.02 ** 0.5, "n_random": 2,
         "metric": "trace_logprob", "higher_is": "better"})


def test_causal_columns_read_the_saved_check_of_the_metrics_run(tiny, tmp_path):
    results = tmp_path / "results"
    run = run_analysis("attention_profile", tiny, params={"n_prompts": 2, "n_tokens": 24}, progress=False,
                       results_dir=results)
    check = run_check("attention_profile", "ablate", tiny, {"k": 2}, progress=False, results_dir=results)
    source = SimpleNamespace(analysis="attention_profile", task=None, result=load_result(run.record.run_id, results),
                             columns={"attention_profile.score": "score", "attention_profile.bos_mass": "bos_mass"},
                             checks={"ablate": load_result(check.record.run_id, results)})
    table = causal_columns(SimpleNamespace(runs=[source])).set_index("metric")
    row, other = table.loc["attention_profile.score"], table.loc["attention_profile.bos_mass"]
    s = check.summary
    assert (row["causal_check"], row["causal_run_id"], row["causal_metric"]) == ("ablate", check.record.run_id, "loss")
    assert (row["causal_effect"], row["causal_random_mean"], row["causal_random_sd"], row["causal_n_random"]) == \
        (s["top_delta"], s["random_delta_mean"], s["random_delta_sd"], 3)
    assert row["causal_verdict"] == causal_verdict(read_effect("attention_profile", source.checks["ablate"]))
    assert other["causal_verdict"] == "not run" and pd.isna(other["causal_run_id"])  # ranked by another column
    source.checks = {}
    assert set(causal_columns(SimpleNamespace(runs=[source]))["causal_verdict"]) == {"not run"}


def test_the_shipped_plan_has_a_causal_check_for_every_run_and_fills_everything_when_empty(tmp_path):
    from workbench.analyses import get_analysis

    plan = atlas_fill.atlas_plan("smollm2-135m")
    runs = [c for c in plan.cells if not c.check]
    assert {c.analysis for c in runs} == {"attention_profile", "attention_sinks", "induction_heads", "head_attribution",
                                          "sae_circuits", "head_divergence", "preplan_anchor", "retrieval_heads"}
    for cell in runs:
        assert any(c.check == get_analysis(c.analysis).causal and c.parent == cell for c in plan.cells), cell
    assert atlas_fill.fill_plan("smollm2-135m", tmp_path).cells == plan.cells


@pytest.fixture
def small_plan(monkeypatch):
    monkeypatch.setattr(atlas_fill, "atlas_plan", lambda model: parse_plan(SMALL))


def test_fill_plan_lists_only_what_is_missing(tiny, tmp_path, small_plan):
    results = tmp_path / "results"
    assert len(atlas_fill.fill_plan("tiny", results).cells) == 4
    other = run_analysis("attention_profile", tiny, params={"n_prompts": 1, "n_tokens": 16}, progress=False,
                         results_dir=results)  # a run made outside the batch, with other params, counts
    cells = atlas_fill.fill_plan("tiny", results).cells
    assert [(c.analysis, c.check) for c in cells] == [("attention_profile", "ablate"), ("induction_heads", ""),
                                                      ("induction_heads", "ablate")]
    assert cells[0].params == other.record.params  # the check is planned on that run
    run_check("attention_profile", "ablate", tiny, {"k": 3}, progress=False, results_dir=results)
    assert len(atlas_fill.fill_plan("tiny", results).cells) == 3  # the plan's check sets k = 2
    run_check("attention_profile", "ablate", tiny, {"k": 2, "seeds": 2}, progress=False, results_dir=results)
    assert [c.analysis for c in atlas_fill.fill_plan("tiny", results).cells] == ["induction_heads"] * 2


def test_fill_resumes_after_a_partial_run_and_checks_the_newest_runs(tiny, tmp_path, small_plan):
    results = tmp_path / "results"
    first = run_analysis("attention_profile", tiny, params={"n_prompts": 1, "n_tokens": 16}, progress=False,
                         results_dir=results)
    induction = [c for c in parse_plan(SMALL).cells if c.analysis == "induction_heads" and not c.check]
    run_plan(Plan("killed", tuple(induction)), progress=False, results_dir=results)  # a fill that died after 1 cell
    planned = {c.cell_id for c in atlas_fill.fill_plan("tiny", results).cells}
    assert {c.cell_id for c in parse_plan(SMALL).cells if c.analysis == "induction_heads" and c.check} <= planned
    seconds = atlas_fill.fill("tiny", results_dir=results, progress=False)
    catalog = find_runs(results)
    assert seconds > 0 and sorted(catalog["kind"]) == ["ablate", "ablate", "run", "run"]
    runs = catalog[catalog["kind"] == "run"].set_index("analysis")["run_id"]
    assert runs["attention_profile"] == first.record.run_id  # not run again
    checks = catalog[catalog["kind"] == "ablate"].set_index("analysis")["parent_run"]
    assert checks.to_dict() == runs.to_dict()
    assert atlas_fill.fill_plan("tiny", results).cells == ()
    atlas_fill.fill("tiny", results_dir=results, progress=False)  # nothing left: nothing runs
    assert len(find_runs(results)) == 4


def test_fill_redoes_a_batch_marked_run_of_another_fingerprint(tiny, tmp_path, small_plan):
    import json

    results = tmp_path / "results"
    induction = [c for c in parse_plan(SMALL).cells if c.analysis == "induction_heads" and not c.check]
    run_plan(Plan("older", tuple(induction)), progress=False, results_dir=results)
    [old] = find_runs(results)["path"]
    record = json.loads((Path(old) / "run.json").read_text())
    (Path(old) / "run.json").write_text(json.dumps({**record, "model_fingerprint": "older-weights"}))
    run_analysis("attention_profile", tiny, params={"n_prompts": 1, "n_tokens": 16}, progress=False,
                 results_dir=results)  # the newest run: its fingerprint is the atlas's
    assert ("induction_heads", "") in [(c.analysis, c.check) for c in atlas_fill.fill_plan("tiny", results).cells]
    atlas_fill.fill("tiny", results_dir=results, progress=False)
    runs = find_runs(results, analysis="induction_heads", kind="run")
    assert len(runs) == 2 and runs["model_fingerprint"].iloc[0] != "older-weights"
    [check] = find_runs(results, analysis="induction_heads", kind="ablate")["parent_run"]
    assert check == runs["run_id"].iloc[0]
