"""Batch plans with checks: a check cell per run cell, run on that cell's run, resuming like run cells."""

from __future__ import annotations

import json

import pytest
from example_analysis import SMALL, example_registered  # noqa: F401  (fixture)

from workbench.batch import executors
from workbench.batch.executors import run_plan
from workbench.batch.plan import PlanError, parse_plan
from workbench.batch.state import state_dir
from workbench.results import runs as results

pytestmark = pytest.mark.usefixtures("example_registered")


def plan_of(**entry):
    return parse_plan({"name": "checked", "models": ["tiny"],
                       "analyses": [{"name": "first_token_attention", "params": SMALL, **entry}]})


def test_checks_become_cells_that_depend_on_their_run_cell():
    plan = plan_of(checks=["ablate_top"], check_params={"ablate_top": {"k": 1, **SMALL}})
    run, check = plan.cells
    assert not run.check and check.check == "ablate_top" and check.check_params == {"k": 1, **SMALL}
    assert check.parent == run and check.cell_id != run.cell_id
    assert run.cell_id == plan_of().cells[0].cell_id  # adding checks keeps the run cell (and its finished work)
    assert "check ablate_top(k=1," in check.label()


@pytest.mark.parametrize("entry, message", [
    ({"checks": ["ablate"]}, "has no check 'ablate'; its checks: ablate_top"),
    ({"checks": "ablate_top"}, "checks must be a list of check names"),
    ({"checks": ["ablate_top"], "check_params": {"ablate": {"k": 1}}}, r"check_params names \['ablate'\]"),
    ({"checks": ["ablate_top"], "check_params": {"ablate_top": {"k": 1.5}}},
     "check 'ablate_top': ablate_top: parameter k must be an integer"),
    ({"check_params": {"ablate_top": 3}}, "check_params must be a table of tables"),
])
def test_bad_checks_fail_before_running(entry, message):
    with pytest.raises(PlanError, match=message):
        plan_of(**entry)


def test_a_batch_killed_after_its_run_cell_resumes_with_the_check_alone(tmp_path):
    explicit = tmp_path / "explicit"
    plan = plan_of(checks=["ablate_top"], check_params={"ablate_top": SMALL})
    first = run_plan(plan_of(), progress=False, results_dir=explicit)  # as if killed once the run cell finished
    resumed = run_plan(plan, progress=False, results_dir=explicit).set_index("check")
    assert resumed.loc["", "status"] == "skipped" and resumed.loc["", "run_id"] == first["run_id"][0]
    assert resumed.loc["ablate_top", "status"] == "done", resumed["error"].tolist()
    check = results.load_result(resumed.loc["ablate_top", "run_id"], explicit)
    assert check.kind == "ablate_top" and check.record.parent_run == first["run_id"][0]
    markers = {json.loads(p.read_text())["run_id"] for p in state_dir(explicit).glob("*.json")}
    assert markers == set(resumed["run_id"]) and results.find_runs().empty  # all in the explicit dir
    again = run_plan(plan, progress=False, results_dir=explicit)
    assert (again["status"] == "skipped").all() and len(results.find_runs(explicit)) == 2


class Killed(BaseException):
    """Stands in for SIGKILL between saving a check's Result and writing its marker."""


def test_a_check_saved_before_its_marker_is_adopted_not_redone(monkeypatch):
    plan = plan_of(checks=["ablate_top"], check_params={"ablate_top": SMALL})
    real = executors.mark_finished

    def kill_at_the_check(cell, *args, **kwargs):
        if cell.check:
            raise Killed
        return real(cell, *args, **kwargs)

    monkeypatch.setattr(executors, "mark_finished", kill_at_the_check)
    with pytest.raises(Killed):
        run_plan(plan, progress=False)
    saved = results.find_runs(kind="ablate_top")["run_id"].tolist()
    monkeypatch.setattr(executors, "mark_finished", real)
    resumed = run_plan(plan, progress=False)
    assert (resumed["status"] == "skipped").all() and len(saved) == 1
    assert resumed.set_index("check").loc["ablate_top", "run_id"] == saved[0] and len(results.find_runs()) == 2


def test_a_check_whose_run_cell_failed_fails_with_the_reason(monkeypatch):
    real = executors.run_cell

    def crash_runs(cell, results_dir=None):
        if not cell.check:
            raise RuntimeError("out of memory")
        return real(cell, results_dir)

    monkeypatch.setattr(executors, "run_cell", crash_runs)
    table = run_plan(plan_of(checks=["ablate_top"]), progress=False).set_index("check")
    assert table.loc["", "error"] == "RuntimeError: out of memory"
    assert table.loc["ablate_top", "status"] == "failed"
    assert "its run cell (first_token_attention · tiny · n_prompts=2,n_tokens=24) did not finish" in \
        table.loc["ablate_top", "error"]
