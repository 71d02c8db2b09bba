"""Tests for the `workbench` command line (typer CliRunner): output, the catalog, the cache, errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workbench.cli.main import app
from workbench.engine.store import ActivationStore

RUN_TINY = ["run", "attention_profile", "-m", "tiny", "-p", "n_prompts=2", "-p", "n_tokens=32"]
INTERVENE_TINY = ["intervene", "-m", "tiny", "--n-prompts", "2", "--n-tokens", "32"]
HEAD_LABEL = re.compile(r"\bL[01]H[0-3]\b")


def cli(*args: str, code: int = 0):
    """Invoke the app; assert the exit code (stdout and stderr are kept apart by the runner)."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def cli_error(*args: str) -> str:
    """A user error: exit 2, no traceback, one message starting 'error:'; returns it whitespace-normalised."""
    result = cli(*args, code=2)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and result.stdout.strip() == ""
    assert result.stderr.startswith("error: ")
    return " ".join(result.stderr.split())


def table_rows(text: str) -> list[list[str]]:
    """Cells of each rich table line: the header (drawn with ┃) and the rows (│)."""
    lines = [line.strip().replace("┃", "│") for line in text.splitlines()]
    return [[c.strip() for c in line.strip("│").split("│")] for line in lines if line.startswith("│")]


def saved_run_id(result) -> str:
    match = re.search(r"^run (\S+) \(", result.stdout, re.MULTILINE)
    assert match, result.stdout
    return match.group(1)


def stats_files() -> dict[Path, tuple[int, int]]:
    """Cached files with (inode, mtime): recomputing replaces a file, so both change."""
    root = ActivationStore().root
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*.safetensors")}


def test_models_lists_names_and_layers():
    rows = {r[0]: r for r in table_rows(cli("models").stdout) if r[0]}
    assert rows["smollm2-135m"][2] == "30" and rows["smollm2-135m"][3] == "9"
    assert rows["tiny"][2] == "2" and rows["tiny"][3] == "4"


def test_run_saves_a_run_that_results_lists_and_shows():
    result = cli(*RUN_TINY)
    assert "attention_profile: top 10 heads by score" in result.stdout
    labels = [r[0] for r in table_rows(result.stdout) if HEAD_LABEL.fullmatch(r[0])]
    assert len(labels) == 8 and len(set(labels)) == 8  # tiny: 2 layers x 4 heads, all shown
    run_id = saved_run_id(result)

    listed = cli("results", "ls").stdout
    assert run_id in listed and "attention_profile" in listed and "pydoc-2x32" in listed
    shown = cli("results", "show", run_id).stdout
    assert run_id in shown and len(HEAD_LABEL.findall(shown)) == 8
    assert "no saved runs match" in cli("results", "ls", "--model", "smollm2-135m").stdout


def test_second_identical_run_reuses_the_stats_cache():
    first = saved_run_id(cli(*RUN_TINY))
    files = stats_files()
    assert len(files) == 1 and next(iter(files)).name.startswith("stats-")
    second = saved_run_id(cli(*RUN_TINY))
    assert stats_files() == files, "the cached statistics were rewritten instead of reused"
    assert len(ActivationStore().entries()) == 1
    assert first != second
    listed = cli("results", "ls").stdout
    assert first in listed and second in listed


def test_cache_commands_after_a_run():
    assert "is empty" in cli("cache", "ls").stdout
    cli(*RUN_TINY)
    [entry] = ActivationStore().entries()
    listed = cli("cache", "ls").stdout
    assert entry["prompts_fingerprint"] in listed and "pydoc-2x32" in listed
    assert any(r[0] == "tiny" for r in table_rows(listed))
    du = cli("cache", "du").stdout
    assert entry["model_fingerprint"] in du and "MiB in all" in " ".join(du.split())  # title wraps
    assert "removed 1 cache entries" in cli("cache", "rm", "--all").stdout
    assert ActivationStore().entries() == []
    assert "is empty" in cli("cache", "ls").stdout and "is empty (0 B)" in cli("cache", "du").stdout


def test_cache_rm_by_model_fingerprint():
    cli(*RUN_TINY)
    [entry] = ActivationStore().entries()
    assert "removed 0 cache entries" in cli("cache", "rm", "--model-fp", "nomatch").stdout
    assert "removed 1 cache entries" in cli("cache", "rm", "--model-fp", entry["model_fingerprint"][:8]).stdout


@pytest.mark.parametrize(("args", "expected"), [
    (["cache", "rm"], ["Say what to remove", "everything"]),
    (["run", "-m", "nosuchmodel"], ["Unknown model 'nosuchmodel'", "smollm2-135m", "tiny"]),
    (["run", "nope", "-m", "tiny"], ["Unknown analysis 'nope'", "attention_profile"]),
    (["run", "-m", "tiny", "-p", "nope=1"], ["no parameter nope", "n_prompts, n_tokens"]),
    (["run", "-m", "tiny", "-p", "n_tokens=abc"], ["n_tokens='abc' is not a valid int"]),
    (["run", "-m", "tiny", "-p", "n_tokens"], ["'n_tokens' must look like name=value"]),
    (["results", "show", "no-such-run"], ["no-such-run"]),
    ([*INTERVENE_TINY, "--heads", "L99H0"], ["L99H0 do not exist", "layers 0..1", "heads 0..3"]),
    ([*INTERVENE_TINY, "--heads", "3.5"], ["malformed head label '3.5'"]),
    ([*INTERVENE_TINY, "--heads", "L0H1", "--edit", "bogus"], ["Unknown edit 'bogus'", "ablate", "reweight"]),
    ([*INTERVENE_TINY, "--heads", "L0H1", "--metric", "nope"], ["Unknown metric 'nope'"]),
    ([*INTERVENE_TINY, "--heads", "L0H1", "--edit", "reweight", "--alpha", "-1"], ["finite number >= 0"]),
    ([*INTERVENE_TINY, "--heads", "L0H1", "--edit", "reweight", "--keys", "x"], ["--keys must be"]),
])
def test_bad_input_gives_one_line_error(args, expected):
    message = cli_error(*args)
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize("edit", ["scale", "uniform"])
def test_intervene_prints_a_before_after_table(edit):
    result = cli(*INTERVENE_TINY, "--heads", "L0H1", "--edit", edit, "--alpha", "0")
    rows = table_rows(result.stdout)
    header = next(r for r in rows if "before" in r)
    assert header == ["prompt", "text", "metric", "before", "after", "delta"]
    data = [r for r in rows if r[0] in ("0", "1")]
    assert [r[0] for r in data] == ["0", "1"] and all(r[2] == "loss" for r in data)
    assert all(float(r[3]) > 0 and float(r[4]) > 0 for r in data)
    assert "'share_increased'" in result.stdout and "L0H1" in result.stdout
