"""`--fill`: the atlas cells (data/plans/atlas.toml) a model still lacks, run as one resumable batch.

The catalog decides what is missing, as the atlas reads it (workbench.atlas.sources): runs of the fingerprint of
the model's newest run. A run cell is missing when there is no run of its analysis (and task); a check cell when
the newest such run, the one the atlas reads, has no saved check of that name with the params the cell sets.
A missing check of an existing run is planned against that run: its parent cell is the plan's cell when that made
the run (same cell ids as the plan), else one with the run's own params, and `fill` records the run as that
cell's batch marker (workbench.batch.state), so the batch checks exactly that run and never re-runs it; the marker
of a planned run cell (a run of another fingerprint) is stale and removed.
Resuming: what a killed fill finished is in the catalog, so the next plan leaves it out (and the batch skips
cells it marked finished).
"""

from __future__ import annotations

import dataclasses
import time
import tomllib
from pathlib import Path

import pandas as pd

from workbench.batch.plan import Cell, Plan, parse_plan


def atlas_plan(model: str) -> Plan:
    """Every atlas cell of `model` (data/plans/atlas.toml with its models replaced by this one)."""
    from workbench.core.paths import shipped
    from workbench.models.loading import resolve_spec

    path = Path(shipped("data", "plans", "atlas.toml"))
    raw = tomllib.loads(path.read_text())
    return parse_plan({**raw, "models": [resolve_spec(model).name]}, source=str(path))


def _params(cell: Cell, check: bool = False) -> dict:
    """Every param of a cell's run (or, with check=True, of its check), as a record holds them (JSON lists)."""
    import json

    from workbench.analyses import get_analysis

    spec = get_analysis(cell.analysis)
    params = spec.check(cell.check).make_params(cell.check_params) if check else spec.make_params(cell.params)
    return json.loads(json.dumps(dataclasses.asdict(params)))


def _has_check(cell: Cell, run_id: str, checks: pd.DataFrame) -> bool:
    """Whether the run has a saved check of this cell's name with the params the cell sets (others may differ)."""
    from workbench.results.runs import load_result

    want = {k: v for k, v in _params(cell, check=True).items() if k in cell.check_params}
    for row in checks[(checks["parent_run"] == run_id) & (checks["kind"] == cell.check)].itertuples():
        params = load_result(row.path).record.params
        if all(params.get(k) == v for k, v in want.items()):
            return True
    return False


def _newest_runs(model: str, results_dir) -> tuple[dict, pd.DataFrame]:
    """({(analysis, task): newest run's catalog row}, check rows) of the fingerprint of the model's newest run."""
    from workbench.results.runs import find_runs, load_result

    catalog = find_runs(results_dir, model=model)
    runs = catalog[catalog["kind"] == "run"]
    if runs.empty:
        return {}, catalog.iloc[:0]
    runs = runs[runs["model_fingerprint"] == runs["model_fingerprint"].iloc[0]]
    newest: dict = {}
    for row in runs.itertuples():  # newest first
        params = load_result(row.path).record.params
        newest.setdefault((row.analysis, params.get("task")), (row, params))
    return newest, catalog[catalog["kind"] != "run"]


def _missing(model: str, results_dir) -> list[tuple[Cell, str | None]]:
    """(cell, run id its parent cell stands for, or None when the run cell itself is planned)."""
    from workbench.models.loading import resolve_spec

    plan = atlas_plan(model)
    newest, checks = _newest_runs(resolve_spec(model).name, results_dir)
    out = []
    for cell in plan.cells:
        found = newest.get((cell.analysis, _params(cell).get("task")))
        if found is None:
            out.append((cell, None))
            continue
        row, params = found
        if cell.check and not _has_check(cell, row.run_id, checks):
            # the parent cell stands for this run: the plan's cell if it made it, else one with the run's own params
            parent = cell.parent if _params(cell) == params else dataclasses.replace(cell.parent, params=params)
            out.append((dataclasses.replace(parent, check=cell.check, check_params=cell.check_params), row.run_id))
    return out


def fill_plan(model: str, results_dir: Path | None = None) -> Plan:
    """A batch Plan of only the atlas cells `model` lacks (see the module docstring)."""
    return Plan(name=f"atlas-fill-{model}", cells=tuple(c for c, _ in _missing(model, results_dir)))


def fill(model: str, *, results_dir: Path | None = None, progress: bool = True) -> float:
    """Run the missing atlas cells of `model` through workbench.batch (resumable, one progress bar); seconds."""
    from workbench.batch.executors import run_plan
    from workbench.batch.state import finished_run, mark_finished, state_dir

    started = time.perf_counter()
    missing = _missing(model, results_dir)
    for cell, run_id in missing:
        if run_id is not None and finished_run(cell.parent, results_dir) != run_id:
            mark_finished(cell.parent, run_id, 0.0, results_dir)
        elif run_id is None and not cell.check and finished_run(cell, results_dir) is not None:
            (state_dir(results_dir) / f"{cell.cell_id}.json").unlink()  # a run of another fingerprint: stale
    plan = Plan(name=f"atlas-fill-{model}", cells=tuple(c for c, _ in missing))
    if plan.cells:
        run_plan(plan, progress=progress, results_dir=results_dir)
    return time.perf_counter() - started
