"""`workbench batch plan.toml`: run a plan of analyses × models × parameters, locally or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from workbench.batch.plan import load_plan
from workbench.cli.common import console, error_line, friendly, show


@friendly
def batch(plan_file: Path = typer.Argument(..., help="a TOML plan (see workbench/batch/plan.py)"),
          executor: str = typer.Option("local", help="local | ray"),
          workers: int = typer.Option(2, help="Ray workers (one model copy each)"),
          report: Optional[Path] = typer.Option(None, help="write a static HTML report here"),
          results_dir: Optional[Path] = typer.Option(None, "--results-dir",
                                                     help="save runs and batch markers here (default: the catalog)")):
    """Run every unfinished cell of a plan; finished cells are skipped, so a killed batch resumes.

    A cell that fails is recorded with its error and the others still run; the exit code is 1 if any failed.
    """
    from workbench.batch.executors import check_executor, run_plan
    from workbench.batch.report import write_report

    check_executor(executor)
    plan = load_plan(plan_file)
    console.print(f"plan [bold]{plan.name}[/]: {len(plan.cells)} cells, executor {executor}")
    table = run_plan(plan, executor, workers=workers, results_dir=results_dir)
    show(table.drop(columns=["error"] if not table["error"].any() else []), f"batch {plan.name}")
    failed = table[table["status"] == "failed"]
    if report:
        console.print(f"report: {write_report(table, report, title=f'Batch {plan.name}', results_dir=results_dir)}")
    if len(failed):
        for row in failed.itertuples():
            check = f" · check {row.check}" if row.check else ""
            error_line(f"cell {row.cell} ({row.analysis}{check} · {row.model} · {row.params or 'defaults'}) failed: "
                       f"{row.error}")
        error_line(f"{len(failed)} of {len(table)} cells failed; fix them and run the batch again "
                   "(finished cells are skipped).")
        raise typer.Exit(1)
