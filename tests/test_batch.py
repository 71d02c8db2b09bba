"""Batch plans: parsing, resuming after a kill, Ray equal to local, the static report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from workbench.batch.executors import run_plan
from workbench.batch.plan import PlanError, load_plan, parse_plan
from workbench.batch.report import write_report
from workbench.batch.state import state_dir
from workbench.core.errors import ModelError, WorkbenchError
from workbench.core.paths import shipped
from workbench.results import runs as results

PLAN = """
name = "tiny-check"
models = ["tiny", "tiny-mha"]
[[analyses]]
name = "attention_profile"
params = { n_prompts = 2 }
grid = { n_tokens = [16, 24] }
"""


def write_plan(tmp_path: Path, text: str = PLAN) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_plan_expands_the_grid_over_models(tmp_path):
    plan = load_plan(write_plan(tmp_path))
    assert len(plan.cells) == 4
    assert {c.params["n_tokens"] for c in plan.cells} == {16, 24}
    assert len({c.cell_id for c in plan.cells}) == 4


@pytest.mark.parametrize("text, error, message", [
    ('models = ["nope-1b"]\n[[analyses]]\nname = "attention_profile"', ModelError, "Unknown model"),
    ('models = ["tiny"]\n[[analyses]]\nname = "atention_profile"', WorkbenchError, "attention_profile"),
    ('models = ["tiny"]\n[[analyses]]\nname = "attention_profile"\nparams = { n_tokenz = 3 }', WorkbenchError,
     "no parameter n_tokenz"),
    ('models = ["tiny"]\n[[analyses]]\nname = "attention_profile"\ngrid = { n_tokens = 3 }', PlanError,
     "non-empty lists"),
    ('models = []\n[[analyses]]\nname = "attention_profile"', PlanError, "non-empty list of model names"),
    ('models = ["tiny"]', PlanError, "at least one [[analyses]]"),
    ('models = ["tiny"]\nanalysis = 3', PlanError, "Unknown top-level keys"),
    ('models = ["tiny"\n', PlanError, "not valid TOML"),
    ('models = ["tiny"]\ndtype = "fp8"\n[[analyses]]\nname = "attention_profile"', PlanError, "Unknown dtype"),
    ('models = ["tiny"]\ndevice = "gpu"\n[[analyses]]\nname = "attention_profile"', PlanError, "Unknown device"),
    ('models = ["tiny"]\ndtype = 16\n[[analyses]]\nname = "attention_profile"', PlanError, "must be strings"),
])
def test_bad_plans_fail_before_running(tmp_path, text, error, message):
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_plan(write_plan(tmp_path, text))


def test_a_plan_in_bfloat16_is_other_work_and_runs_in_bfloat16(tmp_path):
    """dtype is part of a cell's identity (different numbers), the device is not (the model fingerprint's rule);
    float32 cells keep the ids they had before plans named a dtype."""
    fp32 = load_plan(write_plan(tmp_path))
    bf16 = parse_plan({"models": ["tiny"], "dtype": "bfloat16", "device": "cpu",
                       "analyses": [{"name": "attention_profile", "params": {"n_prompts": 1, "n_tokens": 16}}]})
    same = parse_plan({"models": ["tiny"], "dtype": "float32", "device": "cpu",
                       "analyses": [{"name": "attention_profile", "params": {"n_prompts": 1, "n_tokens": 16}}]})
    default = parse_plan({"models": ["tiny"],
                          "analyses": [{"name": "attention_profile", "params": {"n_prompts": 1, "n_tokens": 16}}]})
    assert same.cells[0].cell_id == default.cells[0].cell_id != bf16.cells[0].cell_id
    assert "bfloat16" in bf16.cells[0].label() and all(c.dtype == "float32" for c in fp32.cells)
    table = run_plan(bf16, progress=False)
    assert (table["status"] == "done").all()
    _, run = results.load_run(table["run_id"][0])
    from workbench import api
    from workbench.models.loading import model_info

    assert run.model_fingerprint == model_info(api.load_model("tiny", dtype="bfloat16")).fingerprint
    assert run.model_fingerprint != model_info(api.load_model("tiny")).fingerprint


def test_missing_plan_file(tmp_path):
    with pytest.raises(PlanError, match="No plan file"):
        load_plan(tmp_path / "absent.toml")


def test_second_run_skips_finished_cells(tmp_path):
    plan = load_plan(write_plan(tmp_path))
    first = run_plan(plan, progress=False)
    assert (first["status"] == "done").all()
    second = run_plan(plan, progress=False)
    assert (second["status"] == "skipped").all()
    assert second["run_id"].tolist() == first["run_id"].tolist()
    assert len(results.find_runs()) == 4


def test_a_killed_batch_resumes_without_redoing_finished_cells(tmp_path):
    plan_path = write_plan(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "batch", str(plan_path)], env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    markers = state_dir()
    deadline = time.time() + 240
    while time.time() < deadline and len(list(markers.glob("*.json"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.stem: p.read_text() for p in markers.glob("*.json")}
    assert 2 <= len(before) < 4, "the batch should have been killed halfway"
    resumed = run_plan(load_plan(plan_path), progress=False)
    assert (resumed.set_index("cell").loc[list(before), "status"] == "skipped").all()
    assert (resumed["status"] != "failed").all() and len(list(markers.glob("*.json"))) == 4
    assert {p.stem: p.read_text() for p in markers.glob("*.json") if p.stem in before} == before


def _scores_by_cell(summary: pd.DataFrame, results_dir: Path) -> dict[str, list[float]]:
    return {row.cell: results.load_run(row.run_id, results_dir)[0]["score"].tolist()
            for row in summary.itertuples()}


def test_ray_gives_the_same_catalog_as_local(tmp_path, monkeypatch):
    plan = parse_plan({"models": ["tiny"], "analyses": [{"name": "attention_profile",
                                                          "params": {"n_prompts": 2, "n_tokens": 16},
                                                          "grid": {"n_prompts": [1, 2]}}]})
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    monkeypatch.setenv("WORKBENCH_RESULTS_DIR", str(local_dir))
    local = run_plan(plan, "local", progress=False)
    monkeypatch.setenv("WORKBENCH_RESULTS_DIR", str(ray_dir))
    remote = run_plan(plan, "ray", workers=2, progress=False)
    assert (remote["status"] == "done").all()
    assert len(results.find_runs(ray_dir)) == len(results.find_runs(local_dir)) == 2
    a, b = _scores_by_cell(local, local_dir), _scores_by_cell(remote, ray_dir)
    assert a.keys() == b.keys()
    for cell in a:
        assert a[cell] == pytest.approx(b[cell], abs=1e-6)


def test_report_is_a_self_contained_page(tmp_path):
    summary = run_plan(load_plan(write_plan(tmp_path)), progress=False)
    page = write_report(summary, tmp_path / "report.html", title="Batch tiny").read_text()
    assert page.count("Top 10 heads") == 4 and "plotly" in page.lower() and "L1H" in page


@pytest.mark.real_model
def test_plan_of_every_analysis_on_smollm2_local_equals_ray(tmp_path, monkeypatch):
    """The shipped all-analyses plan: local and Ray write the same scores for every cell."""
    from workbench.analyses import REGISTRY

    plan = load_plan(shipped("data", "plans", "smollm2_all.toml"))
    assert {c.analysis for c in plan.cells} == {s.name for s in REGISTRY}
    monkeypatch.setenv("WORKBENCH_RESULTS_DIR", str(tmp_path / "local"))
    local = run_plan(plan, "local", progress=False)
    monkeypatch.setenv("WORKBENCH_RESULTS_DIR", str(tmp_path / "ray"))
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "ray-cache"))
    remote = run_plan(plan, "ray", workers=2, progress=False)
    assert (local["status"] == "done").all() and (remote["status"] == "done").all(), remote["error"].tolist()
    a, b = _scores_by_cell(local, tmp_path / "local"), _scores_by_cell(remote, tmp_path / "ray")
    for cell in a:
        assert a[cell] == pytest.approx(b[cell], rel=1e-4, abs=1e-5), cell
