"""The CLI of every registered analysis, built from its spec: `workbench <analysis> run | show | <check>`.

Each field of the analysis's (or check's) Params becomes an option `--field-name` taking a string, parsed by
spec.make_params / check.make_params (so names, types, ranges and their one-line errors are the registry's),
next to --model, --device, --dtype and --results-dir. `run` prints the top heads and the summary and saves the
Result; a check prints its tables and summary and saves its Result linked to the run it checked; `show` prints
the newest saved run (top heads, summary) and the checks saved for it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from pathlib import Path
from typing import Callable, Optional

import typer

from workbench.analyses.base import AnalysisSpec, CheckSpec
from workbench.cli.common import DEVICE, DTYPE, MODEL, console, friendly, show

RESULTS_DIR = typer.Option(None, "--results-dir", help="save and read results here (default: the catalog)")
_COMMON = {"model": MODEL, "device": DEVICE, "dtype": DTYPE, "results_dir": RESULTS_DIR}


def add_analysis_apps(app: typer.Typer, specs: tuple[AnalysisSpec, ...] | None = None) -> None:
    """One sub-app per analysis (default: the whole registry)."""
    from workbench.analyses import REGISTRY

    for spec in specs or REGISTRY:
        app.add_typer(analysis_app(spec), name=spec.name)


def analysis_app(spec: AnalysisSpec) -> typer.Typer:
    sub = typer.Typer(help=spec.summary, no_args_is_help=True)
    extra = {"top": typer.Option(10, help="show this many top heads"),
             "save": typer.Option(True, help="save the Result to the results catalog")}
    sub.command("run", help=f"Run {spec.name} and save its Result.")(
        _command(spec.params_type, extra, functools.partial(_run, spec)))
    sub.command("show", help=f"The newest saved {spec.name} run: top heads, summary and its checks.")(_show(spec))
    for check in spec.checks:
        options = {"run_id": typer.Option(None, "--run-id", help="check this run (default: the newest on --model)"),
                   "save": extra["save"]}
        sub.command(check.name, help=f"{check.summary} (saved with the run it checks).")(
            _command(check.params_type, options, functools.partial(_check, spec, check)))
    return sub


def _command(params_type: type, extra: dict, action: Callable) -> Callable:
    """A typer command whose options are the Params fields (strings) plus `extra` and the model options;
    `action(overrides, **options)` gets the given fields as a dict."""
    fields = [f.name for f in dataclasses.fields(params_type)]
    clash = sorted(set(fields) & (set(_COMMON) | set(extra)))
    if clash:
        raise TypeError(f"{params_type.__qualname__}: fields {clash} clash with the CLI's own options; rename them.")
    options = {name: typer.Option(None, "--" + name.replace("_", "-"), help=f"default {_default(params_type, name)}")
               for name in fields}
    parameters = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                    annotation=Optional[str] if name in options else _annotation(name, option))
                  for name, option in {**options, **_COMMON, **extra}.items()]

    def command(**kwargs):
        overrides = {name: kwargs.pop(name) for name in fields if kwargs.get(name) is not None}
        for name in fields:
            kwargs.pop(name, None)
        return action(overrides, **kwargs)

    command.__signature__ = inspect.Signature(parameters)
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__name__ = getattr(action, "func", action).__name__.strip("_")
    return friendly(command)


def _default(params_type: type, name: str):
    return next(f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(params_type) if f.name == name)


def _annotation(name: str, option) -> type:
    if name == "results_dir":
        return Optional[Path]
    if name == "run_id":
        return Optional[str]
    return type(option.default)


def _run(spec: AnalysisSpec, overrides: dict, *, model, device, dtype, results_dir, top, save) -> None:
    from workbench import api

    params = spec.make_params(overrides)  # bad names and values fail before the model loads
    result = api.run(spec.name, api.load_model(model, device=device, dtype=dtype), params=params, save=save,
                     results_dir=results_dir)
    print_result(result, top)


def _check(spec: AnalysisSpec, check: CheckSpec, overrides: dict, *, model, device, dtype, results_dir, run_id,
           save) -> None:
    from workbench import api

    params = check.make_params(overrides)
    result = api.check(spec.name, check.name, api.load_model(model, device=device, dtype=dtype), params,
                       run_id=run_id, save=save, results_dir=results_dir)
    print_result(result, 10)


def _show(spec: AnalysisSpec) -> Callable:
    @friendly
    def show_latest(model: Optional[str] = typer.Option(None, "--model", "-m", help="only runs of this model"),
                    results_dir: Optional[Path] = RESULTS_DIR,
                    top: int = typer.Option(10, help="show this many top heads")):
        from workbench.core.errors import WorkbenchError
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


def print_result(result, top: int) -> None:
    """Top heads (if the Result has per-head scores), its tables, summary and where it was saved."""
    from workbench.core.scores import head_label

    record, title = result.record, result.analysis + ("" if result.kind == "run" else f" · {result.kind}")
    if result.scores is not None:
        scores = result.scores.sort_values("score", ascending=False).head(top)
        cols = [c for c in scores.columns if c not in ("analysis", "model", "prompt_set", "layer", "head", "label")
                and not (c != "score" and scores[c].equals(scores["score"]))]  # a named copy of the score: once
        heads = [head_label(int(r.layer), int(r.head)) for r in scores.itertuples()]
        show(scores[cols].assign(head=heads)[["head", *cols]], f"{title}: top {top} heads by score")
    if result.kind != "run":
        for name, table in result.tables.items():
            show(table, f"{title}: {name}")
    console.print(f"summary: {_summary_text(result.summary)}")
    if record is not None:
        parent = f", checks run {record.parent_run}" if record.parent_run else ""
        console.print(f"{record.kind} [bold]{record.run_id}[/] ({record.timings['total']:.1f} s{parent}) is in the "
                      "catalog — `workbench results ls` lists it")
