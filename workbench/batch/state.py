"""Which cells of a batch are finished: one atomic JSON marker per cell, `<results_dir>/batches/<cell_id>.json`.

A marker names the cell's catalog run; a cell whose marker exists and whose run loads is skipped (keyed by cell,
so plans share work). `<cell_id>.pending` marks a started cell: on resume a run saved since then with the same
analysis, model and params is adopted. A check cell is done when its Result loads and checked its run cell's run.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path

from workbench.analyses import get_analysis
from workbench.batch.plan import Cell
from workbench.core.errors import WorkbenchError
from workbench.core.integrity import atomic_write_text
from workbench.models.loading import resolve_spec
from workbench.results import runs as results


def state_dir(results_dir: Path | None = None) -> Path:
    return Path(results_dir or results.default_results_dir()) / "batches"


def finished_run(cell: Cell, results_dir: Path | None = None) -> str | None:
    """The run id recorded for `cell` (or saved for it by a batch killed before its marker), if it still loads."""
    marker = state_dir(results_dir) / f"{cell.cell_id}.json"
    if not marker.exists():
        return _adopt_saved_run(cell, results_dir)
    try:
        run_id = json.loads(marker.read_text())["run_id"]
        record = results.load_result(run_id, results_dir).record
    except (OSError, ValueError, KeyError):
        return None  # a damaged marker or a deleted run: do the cell again
    if cell.check and record.parent_run != finished_run(cell.parent, results_dir):
        return None  # its run cell was done again since: check the new run
    return run_id


def _about(cell: Cell) -> dict:
    about = {"analysis": cell.analysis, "model": cell.model, "params": cell.params}
    return about | ({"check": cell.check, "check_params": cell.check_params} if cell.check else {})


def mark_started(cell: Cell, results_dir: Path | None = None) -> None:
    """Record that `cell` is about to run (see the module docstring)."""
    _write_atomic(state_dir(results_dir) / f"{cell.cell_id}.pending",
                  {"started": datetime.now(timezone.utc).isoformat(), **_about(cell)})


def mark_finished(cell: Cell, run_id: str, seconds: float, results_dir: Path | None = None) -> None:
    folder = state_dir(results_dir)
    _write_atomic(folder / f"{cell.cell_id}.json", {"run_id": run_id, "seconds": seconds, **_about(cell)})
    (folder / f"{cell.cell_id}.pending").unlink(missing_ok=True)


def _write_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, sort_keys=True))


def _adopt_saved_run(cell: Cell, results_dir: Path | None) -> str | None:
    """A run of this cell saved after its pending note (the batch died before the marker); marks it finished."""
    pending = state_dir(results_dir) / f"{cell.cell_id}.pending"
    try:
        started = datetime.fromisoformat(json.loads(pending.read_text())["started"])
    except (OSError, ValueError, KeyError):
        return None

    try:
        spec = get_analysis(cell.analysis)
        owner = spec.check(cell.check) if cell.check else spec
        want = _canonical(dataclasses.asdict(owner.make_params(cell.check_params if cell.check else cell.params)))
        model = resolve_spec(cell.model).name
    except WorkbenchError:
        return None  # the cell will run (and fail) with this error
    parent = finished_run(cell.parent, results_dir) if cell.check else None
    root = Path(results_dir or results.default_results_dir()) / cell.analysis
    for run_json in sorted(root.glob("*/run.json")):
        try:
            record = json.loads(run_json.read_text())
            if (record["model"] == model and _canonical(record["params"]) == want
                    and record.get("kind", "run") == (cell.check or "run") and record.get("parent_run") == parent
                    and datetime.fromisoformat(record["created"]) >= started):
                results.load_result(record["run_id"], results_dir)
                mark_finished(cell, record["run_id"], float(sum(record["timings"].values())), results_dir)
                return record["run_id"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _canonical(params: dict) -> str:
    return json.dumps(params, sort_keys=True, default=str)
