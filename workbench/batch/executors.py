"""Run a plan's cells locally or on Ray (models loaded once per worker), into one catalog, skipping finished cells.
A cell that raises is recorded as failed and the batch goes on; check cells run after their run cells.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
from tqdm.auto import tqdm

from workbench.analyses.runner import run_analysis, run_check
from workbench.batch.plan import Cell, Plan
from workbench.batch.state import finished_run, mark_finished, mark_started
from workbench.core.errors import WorkbenchError


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # "done" | "skipped" | "failed"
    run_id: str | None = None
    seconds: float = 0.0
    error: str = ""


EXECUTORS = ("local", "ray")


def check_executor(executor: str) -> None:
    if executor not in EXECUTORS:
        raise WorkbenchError(f"Unknown executor {executor!r}; use 'local' or 'ray'.")


def run_cell(cell: Cell, results_dir: Path | None = None) -> tuple[str, float]:
    """Run one cell through the runner; returns (run id, seconds). Models stay loaded per process."""
    from workbench.models.loading import loaded_model

    started = time.perf_counter()
    model = loaded_model(cell.model, device=cell.device, dtype=cell.dtype)
    if not cell.check:
        result = run_analysis(cell.analysis, model, params=dict(cell.params), progress=False, results_dir=results_dir)
        return result.record.run_id, time.perf_counter() - started
    parent = finished_run(cell.parent, results_dir)
    if parent is None:
        raise WorkbenchError(f"check {cell.check} has no run to check: its run cell ({cell.parent.label()}) did not "
                             "finish; fix that cell and run the batch again.")
    result = run_check(cell.analysis, cell.check, model, dict(cell.check_params), run_id=parent, progress=False,
                       results_dir=results_dir)
    return result.record.run_id, time.perf_counter() - started


def run_plan(plan: Plan, executor: str = "local", *, workers: int = 2, progress: bool = True,
             results_dir: Path | None = None, on_done: Callable[[CellOutcome], None] | None = None) -> pd.DataFrame:
    """Run every unfinished cell; return a summary table (one row per cell)."""
    check_executor(executor)

    outcomes = {c.cell_id: CellOutcome(c, "skipped", finished_run(c, results_dir)) for c in plan.cells}
    todo = [c for c in plan.cells if outcomes[c.cell_id].run_id is None]
    bar = tqdm(total=len(plan.cells), initial=len(plan.cells) - len(todo), desc=f"batch {plan.name}",
               unit="cell", disable=not progress)

    def record(outcome: CellOutcome) -> None:
        outcomes[outcome.cell.cell_id] = outcome
        if outcome.status == "done":
            mark_finished(outcome.cell, outcome.run_id, outcome.seconds, results_dir)
        bar.update()
        bar.set_postfix_str(f"{outcome.status}: {outcome.cell.label()}")
        if on_done:
            on_done(outcome)

    for cell in todo:
        mark_started(cell, results_dir)
    phases = [[c for c in todo if not c.check], [c for c in todo if c.check]]  # runs, then the checks of their runs
    if executor == "local":
        for cell in phases[0] + phases[1]:
            record(_run_safely(cell, results_dir))
    else:
        _run_on_ray([p for p in phases if p], workers, record, results_dir)
    bar.close()
    return summary(outcomes.values())


def _run_safely(cell: Cell, results_dir: Path | None = None) -> CellOutcome:
    started = time.perf_counter()
    try:
        run_id, seconds = run_cell(cell, results_dir)
        return CellOutcome(cell, "done", run_id, seconds)
    except WorkbenchError as exc:  # bad input in one cell must not stop the batch
        return CellOutcome(cell, "failed", seconds=time.perf_counter() - started, error=str(exc))
    except Exception as exc:  # nor a bug or a crash in one analysis: record it and go on
        return CellOutcome(cell, "failed", seconds=time.perf_counter() - started,
                           error=f"{type(exc).__name__}: {exc}")


def _run_on_ray(phases: list[list[Cell]], workers: int, record: Callable[[CellOutcome], None],
                results_dir: Path | None = None) -> None:
    """Each phase's cells on one pool of workers; a phase starts when the one before has finished."""
    import ray
    from ray.util import ActorPool

    started_here = not ray.is_initialized()
    if started_here:
        env = {k: v for k, v in os.environ.items() if k.startswith(("WORKBENCH_", "HF_", "TRANSFORMERS_"))}
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": env})
    try:
        actor = ray.remote(num_cpus=1)(_CellWorker)
        pool = ActorPool([actor.remote() for _ in range(workers)])
        for cells in phases:
            for outcome in pool.map_unordered(lambda a, c: a.run.remote(c, results_dir), cells):
                record(outcome)
    finally:
        if started_here:
            ray.shutdown()


class _CellWorker:
    """A Ray actor: keeps models loaded across the cells it runs (loaded_model caches per process)."""

    def __init__(self):
        import torch

        torch.set_num_threads(1)

    def run(self, cell: Cell, results_dir: Path | None = None) -> CellOutcome:
        return _run_safely(cell, results_dir)


def summary(outcomes) -> pd.DataFrame:
    rows = [{"cell": o.cell.cell_id, "analysis": o.cell.analysis, "check": o.cell.check, "model": o.cell.model,
             "params": ", ".join(f"{k}={v}" for k, v in sorted(o.cell.params.items())), "status": o.status,
             "run_id": o.run_id or "", "seconds": round(o.seconds, 2), "error": o.error} for o in outcomes]
    return pd.DataFrame(rows)
