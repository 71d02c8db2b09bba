"""Which cells of a batch are finished: one small JSON marker per cell, written atomically.

Markers live in `<results_dir>/batches/<cell_id>.json` and name the catalog run the cell produced; a
cell whose marker exists and whose run still loads is skipped, so a killed batch loses only the cell
in flight. Markers are keyed by cell, not by plan, so plans that share cells share the work.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from workbench import results
from workbench.batch.plan import Cell


def state_dir(results_dir: Path | None = None) -> Path:
    return Path(results_dir or results.default_results_dir()) / "batches"


def finished_run(cell: Cell, results_dir: Path | None = None) -> str | None:
    """The run id recorded for `cell`, if its marker exists and the run is still in the catalog."""
    marker = state_dir(results_dir) / f"{cell.cell_id}.json"
    if not marker.exists():
        return None
    try:
        run_id = json.loads(marker.read_text())["run_id"]
        results.load_run(run_id, results_dir)
    except (OSError, ValueError, KeyError):
        return None  # a damaged marker or a deleted run: do the cell again
    return run_id


def mark_finished(cell: Cell, run_id: str, seconds: float, results_dir: Path | None = None) -> None:
    folder = state_dir(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{cell.cell_id}.json"
    tmp = folder / f".{marker.name}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({"run_id": run_id, "seconds": seconds, "analysis": cell.analysis,
                               "model": cell.model, "params": cell.params}, sort_keys=True))
    os.replace(tmp, marker)
