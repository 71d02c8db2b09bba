"""Bad numbers and paths at the edges: every numeric CLI option (found in the typer app, so a new option is
covered automatically), analysis parameters, batch plans; batches that keep going and resume without
duplicates. The CLI cases need no model: validation runs before anything loads one."""

from __future__ import annotations

import json
import math
import typing

import pytest
import typer.main
from typer.testing import CliRunner

from workbench.analyses import REGISTRY
from workbench.batch import executors
from workbench.batch.executors import run_plan
from workbench.batch.plan import PlanError, load_plan, parse_plan
from workbench.batch.state import state_dir
from workbench.cli.common import OUTPUT_OPTIONS, _checked_params
from workbench.cli.main import app
from workbench.core import validation
from workbench.core.errors import InputError, WorkbenchError
from workbench.models.loading import DEFAULT_MODEL
from workbench.results import runs as results

ROOT = typer.main.get_command(app)


def _commands(cmd=ROOT, path=()):
    """(command path, click command) for the root, every group and every command."""
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _required(cmd) -> list[str]:
    """Placeholder values for a command's required arguments and options (never read: validation fails first)."""
    out = []
    for p in cmd.params:
        if p.required:
            out += ["x"] if not getattr(p, "opts", None) or not p.opts[0].startswith("-") else [p.opts[0], "x"]
    return out


def _numeric_options():
    for path, cmd in _commands():
        if cmd.callback is None:
            continue
        kinds = _checked_params(cmd.callback)[0]
        for p in cmd.params:
            if p.name in kinds:
                yield path, cmd, p, kinds[p.name]


def _bad_values(name: str, kind: type, scope: str) -> list[str]:
    rule = validation.rule_for(name, scope, kind)
    bad = ["nan", "inf", "-inf"]
    if kind is int:
        bad.append(f"{(rule.lo or 0) + 0.5:g}")
    if rule.lo is not None:
        bad.append(f"{rule.lo if rule.lo_open else rule.lo - 1:g}")
    if rule.hi is not None:
        bad.append(f"{rule.hi if rule.hi_open else rule.hi + 1:g}")
    return bad


NUMERIC = list(_numeric_options())
CASES = [pytest.param(path, cmd, p, value, id=f"{' '.join(path)} {max(p.opts, key=len)}={value}")
         for path, cmd, p, kind in NUMERIC for value in _bad_values(p.name, kind, cmd.callback.__name__)]
OUTPUTS = [(path, cmd, p) for path, cmd in _commands() for p in cmd.params
           if cmd.callback is not None and p.name in OUTPUT_OPTIONS and p.name in _checked_params(cmd.callback)[1]]


@pytest.fixture
def no_model_loads(monkeypatch):
    """A command that gets past validation with a bad value would load a model: make that fail loudly."""
    from workbench import api
    from workbench.models import loading as models

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded although an input was bad")

    monkeypatch.setattr(api, "load_model", refuse)
    monkeypatch.setattr(models, "load_model", refuse)


def one_line_error(args: list[str]) -> str:
    """Invoke the CLI; assert exit 2 and exactly one line on stderr, 'error: …', no traceback; return it."""
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, f"{args}: exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout.strip() == "", result.stdout
    return lines[0]


def test_the_table_covers_every_command_with_numbers():
    assert len(NUMERIC) >= 200, len(NUMERIC)  # the registry's commands type every number field of the Params
    commands = {" ".join(path) for path, *_ in NUMERIC}
    assert {"intervene", "sinks report", "sinks edit", "preplan intervene", "batch", "app", "circuits sae",
            "induction check", "retrieval budget", "retrieval_heads all", "head_attribution repair"} <= commands


@pytest.mark.usefixtures("no_model_loads")
@pytest.mark.parametrize("path, cmd, param, value", CASES)
def test_every_numeric_option_refuses_bad_numbers(path, cmd, param, value):
    flag = max(param.opts, key=len)
    line = one_line_error([*path, *_required(cmd), f"{flag}={value}"])
    assert flag in line and "must be" in line, line


@pytest.mark.parametrize("path, cmd, param, kind", NUMERIC, ids=[f"{' '.join(n[0])} {n[2].name}" for n in NUMERIC])
def test_every_numeric_default_is_in_range(path, cmd, param, kind):
    if param.default is not None:
        validation.check_number(param.name, param.default, kind, scope=cmd.callback.__name__)


def test_every_model_option_is_model_or_m_with_the_default_constant():
    found = 0
    for path, cmd in _commands():
        for p in cmd.params:
            if p.name == "model":
                found += 1
                assert {"--model", "-m"} <= set(p.opts), (path, p.opts)
                assert p.default in (DEFAULT_MODEL, None), (path, p.default)
    assert found >= 15


@pytest.mark.usefixtures("no_model_loads")
@pytest.mark.parametrize("bad", ["/proc/nope/x.html", "FILE/inside.html"])
@pytest.mark.parametrize("path, cmd, param", OUTPUTS, ids=[f"{' '.join(o[0])} {o[2].name}" for o in OUTPUTS])
def test_unwritable_output_paths_fail_before_any_work(tmp_path, path, cmd, param, bad):
    (tmp_path / "FILE").write_text("a file, not a directory")
    target = bad.replace("FILE", str(tmp_path / "FILE"))
    line = one_line_error([*path, *_required(cmd), max(param.opts, key=len), target])
    assert target in line, line


def test_output_options_are_found():
    names = {" ".join(path) for path, *_ in OUTPUTS}
    assert {"batch", "sinks report", "divergence report", "preplan report", "circuits overlap"} <= names


@pytest.mark.usefixtures("no_model_loads")
@pytest.mark.parametrize("args, part", [
    (["intervene", "--heads", "L0H0", "--edit", "reweight", "--keys", "0,-1"], "--keys"),
    (["sinks", "edit", "--kind", "remove", "--heads", "L0H0", "--keys", "a"], "--keys"),
    (["run", "-m", "tiny", "-p", "n_tokens=16.5"], "n_tokens='16.5' is not a valid int"),
    (["run", "-m", "tiny", "-p", "n_tokens=nan"], "n_tokens"),
    (["run", "attention_sinks", "-m", "tiny", "-p", "epsilon=inf"], "in [0, 1]"),
    (["preplan", "report", "--model", "tiny", "--window", "0"], "--window must be an integer >= 1"),
    (["nosuchcommand"], "No such command"),
])
def test_string_edges_give_one_line(args, part):
    assert part in one_line_error(args)


def _field_kinds(spec):
    return {k: v for k, v in typing.get_type_hints(spec.params_type).items() if v in (int, float)}


@pytest.mark.parametrize("spec", REGISTRY, ids=[s.name for s in REGISTRY])
def test_analysis_params_are_typed_finite_and_in_range(spec):
    defaults = spec.params_type()
    for name, kind in _field_kinds(spec).items():
        validation.check_number(name, getattr(defaults, name), kind, scope=spec.name)  # defaults are legal
        wrong = [math.nan, math.inf, "nan", [1, 2], True, {"a": 1}]
        wrong += [16.5, "16.5"] if kind is int else []
        lo = validation.rule_for(name, spec.name, kind).lo
        wrong += [] if lo is None else [lo - 1]
        for value in wrong:
            with pytest.raises(InputError, match=name):
                spec.make_params({name: value})
    with pytest.raises(WorkbenchError, match="table of name = value"):
        spec.make_params("n_tokens=5")


PLAN = 'models = ["tiny"]\n[[analyses]]\nname = "attention_profile"\n'


@pytest.mark.parametrize("body, message", [
    ("params = { n_prompts = 1, n_tokens = 16.5 }", "n_tokens=16.5"),
    ("params = { n_prompts = 1, n_tokens = [16, 24] }", "n_tokens must be an integer"),
    ('params = "n_tokens=5"', "params must be a table"),
    ('grid = "n_tokens"', "grid must be a table"),
    ("params = { n_prompts = nan }", "n_prompts must be an integer"),
    ("params = { n_prompts = -1 }", ">= 1"),
    ("params = { n_prompts = true }", "n_prompts"),
    ("grid = { n_tokens = [16, 1.5] }", "cell n_tokens=1.5"),
    ("parms = { n_tokens = 16 }", "unknown keys ['parms']"),
])
def test_bad_cells_fail_before_anything_runs(tmp_path, body, message):
    path = tmp_path / "plan.toml"
    path.write_text(PLAN + body + "\n")
    with pytest.raises(PlanError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_plan(path)


@pytest.mark.usefixtures("no_model_loads")
def test_batch_on_a_directory_or_bad_toml_is_one_line(tmp_path):
    assert "is a directory" in one_line_error(["batch", str(tmp_path)])
    (tmp_path / "bad.toml").write_text('models = ["tiny"\n[[analyses]]\n')
    assert "not valid TOML" in one_line_error(["batch", str(tmp_path / "bad.toml")])
    (tmp_path / "cell.toml").write_text(PLAN + "params = { n_tokens = 16.5 }\n")
    assert "table 1 ('attention_profile'), cell n_tokens=16.5" in one_line_error(["batch", str(tmp_path / "cell.toml")])
    assert "--report" in one_line_error(["batch", str(tmp_path / "cell.toml"), "--report", "/proc/nope/r.html"])


def _tiny_plan(n_tokens=(16, 20, 24)):
    return parse_plan({"models": ["tiny"], "analyses": [{"name": "attention_profile", "params": {"n_prompts": 1},
                                                          "grid": {"n_tokens": list(n_tokens)}}]})


def test_a_cell_that_crashes_is_recorded_and_the_others_finish(tmp_path, monkeypatch):
    real = executors.run_cell

    def crash_on_20(cell, results_dir=None):
        if cell.params["n_tokens"] == 20:
            raise TypeError("unsupported operand")
        return real(cell, results_dir)

    monkeypatch.setattr(executors, "run_cell", crash_on_20)
    table = run_plan(_tiny_plan(), progress=False).set_index("params")
    assert table.loc["n_prompts=1, n_tokens=20", "status"] == "failed"
    assert table.loc["n_prompts=1, n_tokens=20", "error"] == "TypeError: unsupported operand"
    assert (table.drop("n_prompts=1, n_tokens=20")["status"] == "done").all()
    assert len(results.find_runs()) == 2 and len(list(state_dir().glob("*.json"))) == 2


def test_cli_batch_reports_the_failed_cell_and_exits_1(tmp_path, monkeypatch):
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN + "params = { n_prompts = 1 }\ngrid = { n_tokens = [16, 20] }\n")
    real = executors.run_cell

    def crash_on_16(cell, results_dir=None):
        if cell.params["n_tokens"] == 16:
            raise RuntimeError("disk on fire")
        return real(cell, results_dir)

    monkeypatch.setattr(executors, "run_cell", crash_on_16)
    result = CliRunner().invoke(app, ["batch", str(plan)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "RuntimeError: disk on fire" in result.stderr
    assert "1 of 2 cells failed" in " ".join(result.stderr.split())
    assert len(results.find_runs()) == 1


class Killed(BaseException):
    """Stands in for SIGKILL between saving a run and writing its marker."""


def test_a_kill_between_run_and_marker_leaves_no_duplicate(monkeypatch):
    plan = _tiny_plan((16, 20))

    def killed(*args, **kwargs):
        raise Killed

    real = executors.mark_finished
    monkeypatch.setattr(executors, "mark_finished", killed)
    with pytest.raises(Killed):
        run_plan(plan, progress=False)
    [saved] = results.find_runs()["run_id"].tolist()
    assert not list(state_dir().glob("*.json"))  # the marker was never written
    monkeypatch.setattr(executors, "mark_finished", real)
    resumed = run_plan(plan, progress=False).set_index("run_id")
    assert len(results.find_runs()) == 2, "the saved run was run again"
    assert resumed.loc[saved, "status"] == "skipped" and (resumed["status"] != "failed").all()
    assert len(list(state_dir().glob("*.json"))) == 2 and not list(state_dir().glob("*.pending"))
    again = run_plan(plan, progress=False)
    assert (again["status"] == "skipped").all() and len(results.find_runs()) == 2


def test_a_run_saved_before_the_cell_started_is_not_adopted(monkeypatch):
    from workbench import api

    api.run_analysis("attention_profile", "tiny", params={"n_prompts": 1, "n_tokens": 16}, progress=False)
    plan = _tiny_plan((16,))
    real = executors.run_cell

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(executors, "run_cell", killed)  # killed after the pending note, before saving
    with pytest.raises(Killed):
        run_plan(plan, progress=False)
    assert len(list(state_dir().glob("*.pending"))) == 1
    monkeypatch.setattr(executors, "run_cell", real)
    resumed = run_plan(plan, progress=False)
    assert resumed["status"].tolist() == ["done"] and len(results.find_runs()) == 2


def test_explicit_results_dir_holds_runs_and_markers_and_resume_redoes_nothing(tmp_path, monkeypatch):
    explicit = tmp_path / "explicit"
    plan = _tiny_plan((16, 20))
    first = run_plan(plan, progress=False, results_dir=explicit)
    assert (first["status"] == "done").all()
    assert len(results.find_runs(explicit)) == 2 and results.find_runs().empty
    markers = {p.name: json.loads(p.read_text())["run_id"] for p in state_dir(explicit).glob("*.json")}
    assert sorted(markers.values()) == sorted(first["run_id"])
    second = run_plan(plan, progress=False, results_dir=explicit)
    assert (second["status"] == "skipped").all() and len(results.find_runs(explicit)) == 2


def test_preplan_summary_of_no_anchors_is_a_clear_error():
    import pandas as pd

    from workbench.analyses.preplan_anchor.checks import summarize_intervention

    with pytest.raises(WorkbenchError, match="No trace has an anchor"):
        summarize_intervention(pd.DataFrame(columns=["trace", "condition"]))


def test_check_output_path_accepts_new_files_and_dirs(tmp_path):
    assert validation.check_output_path(tmp_path / "a" / "b" / "x.html", "--out") == tmp_path / "a" / "b" / "x.html"
    validation.check_output_path(tmp_path / "figs", "--out", "dir")
    (tmp_path / "f.html").write_text("")
    with pytest.raises(InputError, match="is a file"):
        validation.check_output_path(tmp_path / "f.html", "--out", "dir")
    with pytest.raises(InputError, match="is a directory"):
        validation.check_output_path(tmp_path, "--report", "file")
    assert not list(tmp_path.glob("a"))  # checking creates nothing
