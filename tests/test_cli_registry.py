"""`workbench <analysis> run | show | <check>`: built from the registry, options from the Params fields."""

from __future__ import annotations

import dataclasses
import re

import pytest
import typer
from example_analysis import EXAMPLE, SMALL, example_registered  # noqa: F401,F811  (a fixture)
from test_cli import cli, cli_error, table_rows

from workbench.analyses import REGISTRY
from workbench.cli.common import OneLineErrors
from workbench.cli.registry import add_analysis_apps

RUN_ID = r"\d{8}T\d{6}Z-[0-9a-f]{8}"


def options(*args: str) -> set[str]:
    return set(re.findall(r"--[a-z][a-z0-9-]*", cli(*args, "--help").stdout))


@pytest.mark.parametrize("spec", REGISTRY, ids=lambda s: s.name)
def test_every_analysis_and_check_has_a_command_with_its_params_as_options(spec):
    commands = set(re.findall(r"│ (\S+)", cli(spec.name, "--help").stdout))
    assert {"run", "show", *(c.name for c in spec.checks)} <= commands
    common = {"--model", "--device", "--dtype", "--results-dir", "--save"}
    for command, params_type in [("run", spec.params_type), *((c.name, c.params_type) for c in spec.checks)]:
        fields = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(params_type)}
        assert fields | common <= options(spec.name, command), (spec.name, command)


@pytest.fixture
def example_cli(example_registered):  # noqa: F811
    app = typer.Typer(cls=OneLineErrors, pretty_exceptions_enable=False)
    add_analysis_apps(app, (EXAMPLE,))

    def invoke(*args: str, code: int = 0):
        from typer.testing import CliRunner

        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == code, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
        return result
    return invoke


def test_run_check_show_and_the_catalog_from_the_command_line(example_cli):
    small = [x for k, v in SMALL.items() for x in ("--" + k.replace("_", "-"), str(v))]
    ran = example_cli("first_token_attention", "run", "-m", "tiny", *small, "--top", "3").stdout
    heads = [r[0] for r in table_rows(ran) if re.fullmatch(r"L[01]H[0-3]", r[0])]
    assert len(heads) == 3 and "summary: max_score=" in ran
    run_id = re.search(rf"run ({RUN_ID}) ", ran).group(1)

    checked = example_cli("first_token_attention", "ablate_top", "-m", "tiny", *small, "--k", "1").stdout
    rows = [r for r in table_rows(checked) if r[0] in ("top", "random")]
    assert [r[0] for r in rows] == ["top", "random", "random"] and f"checks run {run_id}" in checked
    check_id = re.search(rf"ablate_top ({RUN_ID}) ", checked).group(1)

    shown = example_cli("first_token_attention", "show", "--top", "2").stdout
    assert f"run {run_id}" in shown and f"check ablate_top {check_id} (k=1," in shown and "top_delta=" in shown
    listed = cli("results", "ls", "--kind", "ablate_top").stdout
    rows = [r[:5] for r in table_rows(listed)[1:] if r[0]]  # (a wrapped params cell adds a line)
    assert rows == [[check_id, "", "first_token_attention", "ablate_top", run_id]]  # "": no label
    assert "top_delta=" in cli("results", "show", check_id).stdout


def test_bad_values_and_missing_runs_are_one_line_errors(example_cli):
    bad = example_cli("first_token_attention", "run", "-m", "tiny", "--n-prompts", "2.5", code=2).stderr
    assert "Invalid value for '--n-prompts'" in bad and "; --n-prompts must be an integer >= 1." in bad, bad
    assert "no saved induction_heads run of tiny; run `workbench induction_heads run` first" in \
        cli_error("induction_heads", "show", "-m", "tiny")


def test_all_runs_then_checks_that_run_and_out_writes_tables_and_figures(example_cli, tmp_path):
    small = [x for k, v in SMALL.items() for x in ("--" + k.replace("_", "-"), str(v))]
    done = example_cli("first_token_attention", "all", "-m", "tiny", *small, "--k", "1", "--out", str(tmp_path)).stdout
    run_id = re.search(rf"^run ({RUN_ID}) ", done, re.MULTILINE).group(1)
    assert re.search(rf"^ablate_top {RUN_ID} \(.*checks run {run_id}", done, re.MULTILINE)
    written = {p.name for p in tmp_path.iterdir()}
    assert {"run_scores.csv", "run_heads.html"} <= written and any(n.startswith("ablate_top_") for n in written)
    assert "--k" in example_cli("first_token_attention", "all", "--help").stdout  # the check's fields are options
