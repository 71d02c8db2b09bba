"""The CLI of every registered analysis, built from its spec: `workbench <analysis> run | all | show | <check>`.

Each Params field becomes an option `--field-name`, parsed by make_params. `all` runs the analysis, then every
check on that run; `--out DIR` writes tables as CSV and figures (spec.views, else a head map) as HTML.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from pathlib import Path
from typing import Callable, Optional

import typer

from workbench import analyses, api
from workbench.analyses.base import AnalysisSpec, CheckSpec, resolve
from workbench.cli.common import DEVICE, DTYPE, MODEL, console, friendly, save_figures, show
from workbench.core.errors import WorkbenchError
from workbench.core.scores import ranked

RESULTS_DIR = typer.Option(None, "--results-dir", help="save and read results here (default: the catalog)")
_COMMON = {"model": MODEL, "device": DEVICE, "dtype": DTYPE, "results_dir": RESULTS_DIR,
           "save": typer.Option(True, help="save the Result to the results catalog"),
           "out": typer.Option(None, "--out", help="directory for CSV tables and HTML figures")}
_TOP = {"top": typer.Option(10, help="show this many top heads")}
_RUN_ID = {"run_id": typer.Option(None, "--run-id", help="check this run (default: the newest on --model)")}


def add_analysis_apps(app: typer.Typer, specs: tuple[AnalysisSpec, ...] | None = None) -> None:
    """One sub-app per analysis (default: the whole registry)."""
    for spec in specs or analyses.REGISTRY:
        sub = typer.Typer(help=spec.summary, no_args_is_help=True)
        add_commands(sub, spec)
        app.add_typer(sub, name=spec.name)


def add_commands(group: typer.Typer, spec: AnalysisSpec, names: dict[str, str] | None = None) -> None:
    """The spec's commands on `group`; `names` maps a command name in `group` to the generic command it runs
    (default: every command under its own name)."""
    every = ["run", "show", *(["all"] if spec.checks else []), *(c.name for c in spec.checks)]
    for name, generic in (names or {n: n for n in every}).items():
        text, command = _build(spec, generic)
        group.command(name, help=text if name == generic else f"`workbench {spec.name} {generic}`: {text}")(command)


def _build(spec: AnalysisSpec, name: str) -> tuple[str, Callable]:
    """(help, command) of the generic command `name` of `spec`."""
    if name == "run":
        return f"Run {spec.name} and save its Result.", _command((spec,), {**_TOP, **_presets(spec)},
                                                                 functools.partial(run_and_show, spec))
    if name == "show":
        return f"The newest saved {spec.name} run: top heads, summary and its checks.", _show(spec)
    if name == "all":
        return f"Run {spec.name}, then {', '.join(c.name for c in spec.checks)} on that run.", _command(
            (spec, *spec.checks), {**_TOP, **_presets(spec)}, functools.partial(_all, spec))
    check = spec.check(name)
    saved = " (saved with the run it checks)" if check.needs_scores else ""
    return f"{check.summary}{saved}.", _command(
        (check,), _RUN_ID, functools.partial(_check, spec, check))


def _presets(spec: AnalysisSpec) -> dict:
    """The `--preset NAME` option of a spec that has named parameter sets (none otherwise)."""
    if not spec.presets:
        return {}
    text = "; ".join(f"{name}: " + ", ".join(f"{k}={_text(v)}" for k, v in values.items())
                     for name, values in spec.presets.items())
    return {"preset": typer.Option(None, "--preset", help=f"a named parameter set ({text}); options given "
                                   "explicitly override its values")}


def _text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def _command(owners: tuple[AnalysisSpec | CheckSpec, ...], extra: dict, action: Callable) -> Callable:
    """A typer command whose options are the Params fields (strings) of `owners` (specs or checks) plus `extra`
    and the common options; `action(overrides, **options)` gets the given fields as a dict."""
    defaults, kinds = {}, {}
    for owner in reversed(owners):  # a field shared by several: the first one's default and type
        defaults.update({f.name: _default(f) for f in dataclasses.fields(owner.params_type)})
        kinds.update(typing.get_type_hints(owner.params_type))
    clash = sorted(set(defaults) & (set(_COMMON) | set(extra)))
    if clash:
        raise TypeError(f"{owners[0].name}: fields {clash} clash with the CLI's own options; rename them.")
    options = {name: typer.Option(None, "--" + name.replace("_", "-"), help=f"default {default}")
               for name, default in defaults.items()}
    parameters = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                    annotation=_annotation(name, option, kinds.get(name)))
                  for name, option in {**options, **_COMMON, **extra}.items()]

    def command(**kwargs):
        overrides = {name: kwargs.pop(name) for name in defaults if kwargs.get(name) is not None}
        for name in defaults:
            kwargs.pop(name, None)
        return action(overrides, **kwargs)

    command.__signature__ = inspect.Signature(parameters)
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__name__ = owners[0].name  # the scope of the number ranges (workbench.core.validation)
    return friendly(command, out_dirs=("out",))


def _default(field: dataclasses.Field):
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def _annotation(name: str, option, kind: type | None) -> type:
    """Numbers typed (click parses them, `friendly` checks their range); other fields are strings for make_params."""
    if kind is not None:
        return Optional[kind] if kind in (int, float) else Optional[str]
    if name in ("results_dir", "out"):
        return Optional[Path]
    if name in ("run_id", "preset"):
        return Optional[str]
    return type(option.default)


def _own(params_type: type, overrides: dict) -> dict:
    """The overrides that name fields of `params_type`."""
    return {k: v for k, v in overrides.items() if k in {f.name for f in dataclasses.fields(params_type)}}


def run_and_show(spec: AnalysisSpec, overrides: dict, *, model, device, dtype, results_dir, save, out, top,
                 preset: str | None = None):
    """Run `spec` (on preset `preset`'s values, if named, under `overrides`), print and write its Result."""
    params = spec.make_params(overrides, preset)  # bad names, values and presets fail before the model loads
    result = api.run(spec.name, api.load_model(model, device=device, dtype=dtype), params=params, save=save,
                     results_dir=results_dir)
    print_result(result, top, out)
    return result


def _check(spec: AnalysisSpec, check: CheckSpec, overrides: dict, *, model, device, dtype, results_dir, save, out,
           run_id, scores=None):
    params = check.make_params(overrides)
    result = api.check(spec.name, check.name, api.load_model(model, device=device, dtype=dtype), params,
                       run_id=run_id, scores=scores, save=save, results_dir=results_dir)
    print_result(result, 10, out)


def _all(spec: AnalysisSpec, overrides: dict, preset: str | None = None, **options) -> None:
    overrides = {**spec.preset(preset), **overrides}  # a preset's values reach the checks that share its fields
    for owner in (spec, *spec.checks):
        owner.make_params(_own(owner.params_type, overrides))  # every bad value fails before the model loads
    result = run_and_show(spec, _own(spec.params_type, overrides), **options)
    options.pop("top")
    saved = result.record.run_id if result.record is not None else None
    for check in spec.checks:
        _check(spec, check, _own(check.params_type, overrides), run_id=saved,
               scores=None if saved else result.scores, **options)


def _show(spec: AnalysisSpec) -> Callable:
    @friendly
    def show_latest(model: Optional[str] = typer.Option(None, "--model", "-m", help="only runs of this model"),
                    results_dir: Optional[Path] = RESULTS_DIR,
                    top: int = typer.Option(10, help="show this many top heads")):
        from workbench.results.runs import find_runs, load_result

        runs = find_runs(results_dir, analysis=spec.name, model=model, kind="run")
        if runs.empty:
            raise WorkbenchError(f"no saved {spec.name} run{f' of {model}' if model else ''}; run "
                                 f"`workbench {spec.name} run` first.")
        print_result(load_result(runs["run_id"].iloc[0], results_dir), top)
        checks = find_runs(results_dir, analysis=spec.name)
        checks = checks[checks["parent_run"] == runs["run_id"].iloc[0]]
        if checks.empty:
            console.print("no checks saved for this run" + "".join(
                f"; `workbench {spec.name} {c.name}` runs one" for c in spec.checks[:1]))
        for row in checks.itertuples():
            summary = load_result(row.run_id, results_dir).summary
            console.print(f"check [bold]{row.kind}[/] {row.run_id} ({row.params}): " + _summary_text(summary))
    return show_latest


def _summary_text(summary: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()) or "-"


def print_result(result, top: int, out: Path | None = None) -> None:
    """Top heads (if the Result has per-head scores), a check's tables, the summary and where it was saved;
    with `out`, its tables as `<kind>_<table>.csv` there and its figures as `<kind>_<figure>.html`."""
    try:
        spec = analyses.get_analysis(result.analysis)
    except WorkbenchError:  # a run of an analysis no longer registered
        spec = None
    record, title = result.record, result.analysis + ("" if result.kind == "run" else f" · {result.kind}")
    if result.scores is not None:
        scores = ranked(result.scores, "score", top)  # by |score| where signed, average ranks
        cols = [c for c in scores.columns if c not in ("analysis", "model", "prompt_set", "layer", "head", "label")
                and not (c != "score" and scores[c].equals(scores["score"]))]  # a named copy of the score: once
        show(scores[cols].assign(head=scores["label"])[["head", *cols]],
             f"{title}: top {top} heads by {scores.attrs['by']}")
    if result.kind == "run":
        for name in spec.tables if spec else ():
            if name in result.tables:
                show(result.tables[name], f"{title}: {name}")
    else:
        shown = next((c.tables for c in spec.checks if c.name == result.kind), ()) if spec else ()
        for name, table in result.tables.items():
            if not shown or name in shown:
                show(table, f"{title}: {name}")
    console.print(f"summary: {_summary_text(result.summary)}")
    if record is not None:
        parent = f", checks run {record.parent_run}" if record.parent_run else ""
        console.print(f"{record.kind} [bold]{record.run_id}[/] ({record.timings['total']:.1f} s{parent}) is in the "
                      "catalog — `workbench results ls` lists it")
    if out is not None:
        _write(result, spec, Path(out))


def _write(result, spec: AnalysisSpec | None, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tables = {name: table for name, table in {"scores": result.scores, **result.tables}.items() if table is not None}
    for name, table in tables.items():
        table.to_csv(out / f"{result.kind}_{name}.csv", index=False)
    console.print(f"tables written to {out}/ ({', '.join(f'{result.kind}_{n}.csv' for n in tables)})")
    if spec is not None and spec.views:
        save_figures(resolve(spec.views)(result), out, f"{result.kind}_")
    elif result.kind == "run" and result.scores is not None:
        from workbench.viz.heads import head_heatmap

        save_figures({"heads": head_heatmap(result.scores, title=f"{result.analysis}: score")}, out, "run_")
