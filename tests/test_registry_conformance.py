"""Conformance of every registered analysis (and the worked example): Params from {} and from strings, `run`
and every check on the tiny model, and each Result round-tripped through the catalog (save, load_result)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from example_analysis import EXAMPLE, SMALL, example_registered  # noqa: F401  (a fixture)
from test_analyses import FAST, _tiny_prompts

from workbench.analyses import REGISTRY
from workbench.analyses.base import PER_PROMPT_COLUMNS, resolve
from workbench.analyses.runner import run_analysis, run_check
from workbench.core.errors import WorkbenchError
from workbench.models.loading import model_info
from workbench.results.runs import find_runs, load_result, validate_head_scores

SPECS = (*REGISTRY, EXAMPLE)
FAST = {**FAST, EXAMPLE.name: SMALL}
# Checks on tiny: these fields, where a check's Params has them, get small values (besides its analysis's FAST).
SMALL_FIELDS = {"n_prompts": 2, "n_tokens": 24, "n_problems": 2, "n_examples": 4, "max_new_tokens": 3, "k": 2,
                "n_random": 2, "n_latents": 16, "epochs": 20, "n_shuffles": 20}


def as_text(value) -> str:
    """A typed default as the CLI would pass it."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_params_from_nothing_and_from_strings(spec):
    for owner in (spec, *spec.checks):
        defaults = owner.make_params({})
        texts = {f.name: as_text(getattr(defaults, f.name)) for f in dataclasses.fields(defaults)}
        assert owner.make_params(texts) == defaults == owner.make_params(None) == owner.params_type()
        with pytest.raises(WorkbenchError, match="has no parameter nope"):
            owner.make_params({"nope": "1"})


def assert_same_result(saved, loaded) -> None:
    assert (loaded.analysis, loaded.kind) == (saved.analysis, saved.kind)
    assert (loaded.scores is None) == (saved.scores is None)
    if saved.scores is not None:
        pd.testing.assert_frame_equal(loaded.scores, saved.scores.reset_index(drop=True))
    assert loaded.tables.keys() == saved.tables.keys()
    for name, table in saved.tables.items():
        pd.testing.assert_frame_equal(loaded.tables[name], table.reset_index(drop=True), check_dtype=False)
    assert loaded.summary == json.loads(json.dumps(saved.summary))
    if saved.per_prompt is None:
        assert loaded.per_prompt is None
    else:
        assert list(loaded.per_prompt.columns) == list(PER_PROMPT_COLUMNS)
        pd.testing.assert_frame_equal(loaded.per_prompt, saved.per_prompt.reset_index(drop=True))
    assert loaded.record == saved.record


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_run_and_every_check_on_tiny_round_trip_through_the_catalog(tiny, tiny_ioi, spec, explicit):
    info = model_info(tiny)
    run = run_analysis(spec, tiny, _tiny_prompts(spec.name, tiny, tiny_ioi), FAST.get(spec.name), progress=False,
                       results_dir=explicit)
    validate_head_scores(run.scores, n_layers=info.n_layers, n_heads=info.n_heads)
    assert run.kind == "run" and len(run.scores) == info.n_layers * info.n_heads
    assert_same_result(run, load_result(run.record.run_id, explicit))
    for check in spec.checks:
        fields = {f.name for f in dataclasses.fields(check.params_type)}
        small = {k: v for k, v in {**SMALL_FIELDS, **FAST.get(spec.name, {})}.items() if k in fields}
        small, prompts = tiny_check_inputs(spec, check, small, tiny, tiny_ioi, explicit)
        result = run_check(spec, check.name, tiny, small, prompts=prompts, progress=False, results_dir=explicit)
        assert result.kind == check.name and result.record.kind == check.name
        assert result.record.parent_run == (run.record.run_id if check.needs_scores else None)
        assert result.scores is not None or result.tables or result.summary, f"{check.name} returned nothing"
        assert_same_result(result, load_result(result.record.run_id, explicit))
    catalog = find_runs(explicit, analysis=spec.name)
    assert sorted(catalog["kind"]) == sorted(["run", *(c.name for c in spec.checks)])


def tiny_check_inputs(spec, check, small: dict, tiny, tiny_ioi, directory: Path):
    """The prompts a check runs on for the tiny model (its byte tokenizer has no single-token names or facts): the
    run's own tiny prompts where the check takes prompts; repair also gets a tiny Colored Objects set and circuit."""
    if check.name == "repair":
        from test_circuit_checks import _colored_tiny

        from workbench.results.circuits import Circuit, save_circuit

        colored = Circuit(name="co-tiny", model="tiny", task="colored_objects", heads=("L0H0",), n_layers=2,
                          n_heads=4, method="hand-picked", selection="one head")
        path = save_circuit(colored, directory / "circuits")
        return {**small, "colored": str(path), "top_fraction": 0.5, "max_heads": 1, "n_prompts": 4}, \
            _colored_tiny(tiny)
    takes = "prompts" in inspect.signature(resolve(check.run)).parameters
    return small, (_tiny_prompts(spec.name, tiny, tiny_ioi) if takes else None)


@pytest.fixture
def explicit(tmp_path):
    """A results directory of its own (tmp_path also holds the test's activation cache)."""
    return tmp_path / "explicit"


# ---- the runner's choice of the run a check reads (on the worked example) ---------------------------------
def test_a_check_with_no_saved_run_runs_the_analysis_first_and_links_to_it(explicit):
    check = run_check(EXAMPLE, "ablate_top", "tiny", SMALL, progress=False, results_dir=explicit)
    [run] = find_runs(explicit, kind="run").itertuples()
    assert check.record.parent_run == run.run_id and run.params == "n_prompts=4, n_tokens=64"  # default params


def test_a_check_reads_the_newest_run_on_the_same_model_or_the_one_named(tiny, tiny_mha, explicit):
    older = run_analysis(EXAMPLE, tiny, params=SMALL, progress=False, results_dir=explicit).record.run_id
    newer = run_analysis(EXAMPLE, tiny, params={"n_prompts": 1, "n_tokens": 16}, progress=False,
                         results_dir=explicit).record.run_id
    other = run_analysis(EXAMPLE, tiny_mha, params=SMALL, progress=False, results_dir=explicit).record.run_id
    assert run_check(EXAMPLE, "ablate_top", tiny, SMALL, progress=False, results_dir=explicit
                     ).record.parent_run == newer
    named = run_check(EXAMPLE, "ablate_top", tiny, SMALL, run_id=older, progress=False, results_dir=explicit)
    assert named.record.parent_run == older
    with pytest.raises(WorkbenchError, match=f"run {other} was computed on tiny-mha"):
        run_check(EXAMPLE, "ablate_top", tiny, SMALL, run_id=other, progress=False, results_dir=explicit)
    with pytest.raises(WorkbenchError, match="is a ablate_top of first_token_attention, not a run"):
        run_check(EXAMPLE, "ablate_top", tiny, SMALL, run_id=named.record.run_id, progress=False,
                  results_dir=explicit)
    with pytest.raises(WorkbenchError, match="has no check 'ablate'; its checks: ablate_top"):
        run_check(EXAMPLE, "ablate", tiny, SMALL, results_dir=explicit)


# ---- docs/adding_an_analysis.md walks through the example the tests run ------------------------------------
GUIDE = Path(__file__).resolve().parents[1] / "docs" / "adding_an_analysis.md"


def test_the_guide_shows_the_example_files_as_they_are():
    text = GUIDE.read_text()
    shown = re.findall(r"`(docs/examples/[^`]+)`\n\n```python\n(.*?)```", text, flags=re.S)
    assert {Path(p).name for p, _ in shown} == {"__init__.py", "score.py", "checks.py", "views.py"}
    for path, code in shown:
        assert code in (GUIDE.parents[1] / path).read_text(), f"{path} changed; update the guide"


def test_the_guides_python_and_plan_run(example_registered):  # noqa: F811
    from workbench.batch.plan import parse_plan

    text = GUIDE.read_text()
    [python] = [b for b in re.findall(r"\n\n```python\n(.*?)```", text, flags=re.S) if "import workbench.api" in b]
    scope: dict = {}
    exec(compile(python, str(GUIDE), "exec"), scope)  # the guide's own lines, on the tiny model
    assert scope["check"].record.parent_run == scope["run"].record.run_id
    [plan] = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    cells = parse_plan(tomllib.loads(plan)).cells
    assert [c.check for c in cells] == ["", "ablate_top", "", "ablate_top"]
