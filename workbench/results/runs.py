"""Saved analysis results: tidy per-head scores and run provenance (catalog: `workbench.results.catalog`).

A Result (a run, or a check: RunRecord.kind, .parent_run) lives in ``<results_dir>/<analysis>/<run_id>/``:
``scores.parquet`` (absent for a check without per-head values), ``per_prompt.parquet``, ``tables/*.parquet``,
``summary.json`` and ``run.json`` (a :class:`RunRecord` with every file's size and sha256; loading checks them,
so a damaged file is an error, never shown).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import numbers
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from workbench.analyses.base import PER_PROMPT_COLUMNS, Result
from workbench.core import paths
from workbench.core.integrity import remove_temps, sha256_file
from workbench.core.scores import (  # noqa: F401  (re-exported: the public names of workbench.results.runs)
    IDENTITY_COLUMNS,
    REQUIRED_COLUMNS,
    ResultsError,
    head_label,
    parse_head_label,
    validate_head_scores,
)
from workbench.results.catalog import CATALOG_COLUMNS, find_runs, query_catalog  # noqa: F401  (re-exported)
from workbench.results.record import RunRecord, _read_record, _run_files, verify_file  # noqa: F401  (re-exported)

PROVENANCE_DISTRIBUTIONS = ("torch", "transformers", "transformer-lens", "numpy", "pandas", "pyarrow",
                            "duckdb", "attention-workbench")
_SAFE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def collect_provenance() -> tuple[dict[str, str], str | None]:
    """Return (installed package versions, git commit or None); reads metadata only, never imports torch."""
    versions = {}
    for dist in PROVENANCE_DISTRIBUTIONS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions, _git_commit(paths.SOURCE_ROOT) if paths.SOURCE_ROOT is not None else None


def _git_commit(repo_root: Path) -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=repo_root,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and commit else None


def default_results_dir() -> Path:
    """``$WORKBENCH_RESULTS_DIR`` if set, else the user's data dir (workbench.core.paths)."""
    return paths.results_dir()


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(params, Mapping):
        raise ResultsError(f"params must be a dict, got {type(params).__name__}.")
    for key, value in params.items():
        try:
            json.dumps({key: value}, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ResultsError(f"params[{key!r}] is not JSON-serialisable ({exc}); use str/int/float/"
                               "bool/None/list/dict values (e.g. array.tolist(), str(path)), no NaN/inf."
                               ) from None
    return json.loads(json.dumps(dict(params)))


def _check_timings(timings: Mapping[str, Any]) -> dict[str, float]:
    bad = {k: v for k, v in dict(timings).items() if not (isinstance(v, numbers.Real) and math.isfinite(v))}
    if bad:
        raise ResultsError(f"timings {bad} are not finite numbers of seconds.")
    return {str(k): float(v) for k, v in dict(timings).items()}


def save_run(scores: pd.DataFrame | None, *, params: dict, model_fingerprint: str, prompts_fingerprint: str,
             timings: dict, results_dir: Path | None = None, tables: Mapping[str, pd.DataFrame] | None = None,
             summary: Mapping[str, Any] | None = None, per_prompt: pd.DataFrame | None = None, kind: str = "run",
             parent_run: str | None = None, analysis: str | None = None, model: str | None = None,
             prompt_set: str | None = None) -> RunRecord:
    """Validate and atomically write a run's directory; returns its RunRecord. A check passes ``kind`` and
    ``parent_run``; one without per-head values passes ``scores=None`` with ``analysis``, ``model``, ``prompt_set``.
    """
    tables = dict(tables or {})
    bad_tables = [n for n in tables if not _SAFE_NAME_RE.fullmatch(str(n))]
    if bad_tables:
        raise ResultsError(f"table names {bad_tables} cannot be file names; use letters, digits, '_', '-'.")
    clean_summary = _check_params(summary or {})
    clean = None if scores is None else validate_head_scores(scores)
    if clean is not None:
        clean.attrs = {}  # tables and summaries are written as files, not as parquet metadata
        analysis, model, prompt_set = (clean.loc[0, c] for c in ("analysis", "model", "prompt_set"))
    elif not (analysis and model and prompt_set is not None):
        raise ResultsError("a Result without scores needs analysis, model and prompt_set to be saved.")
    if not _SAFE_NAME_RE.fullmatch(analysis):
        raise ResultsError(f"analysis name {analysis!r} cannot be used as a directory name; use letters, "
                           "digits, '_', '-' or '.' (not starting with '.').")
    per_prompt = None if per_prompt is None else _check_per_prompt(per_prompt)
    clean_params, clean_timings = _check_params(params), _check_timings(timings)
    versions, commit = collect_provenance()
    now = _utcnow()
    root = Path(results_dir or default_results_dir())
    analysis_dir = root / analysis
    analysis_dir.mkdir(parents=True, exist_ok=True)
    remove_temps(analysis_dir, only_stale=True)  # left by killed writers
    run_id = _new_run_id(root, now)
    tmp = analysis_dir / f".{run_id}.tmp-{os.getpid()}"
    try:
        tmp.mkdir()
        for rel, table in [("scores.parquet", clean), ("per_prompt.parquet", per_prompt),
                           *((f"tables/{name}.parquet", table) for name, table in tables.items())]:
            if table is not None:
                (tmp / rel).parent.mkdir(exist_ok=True)
                table.to_parquet(tmp / rel, index=False)
        if clean_summary:
            (tmp / "summary.json").write_text(json.dumps(clean_summary, sort_keys=True, indent=2) + "\n")
        checksums = {rel: {"bytes": (tmp / rel).stat().st_size, "sha256": sha256_file(tmp / rel)}
                     for rel in _run_files(tmp)}
        record = RunRecord(
            run_id=run_id, analysis=analysis, model=str(model), prompt_set=str(prompt_set), params=clean_params,
            model_fingerprint=str(model_fingerprint), prompts_fingerprint=str(prompts_fingerprint),
            package_versions=versions, git_commit=commit, timings=clean_timings,
            created=now.isoformat(timespec="microseconds"),
            workbench_version=versions.get("attention-workbench", "unknown"),
            n_rows=0 if clean is None else len(clean), checksums=checksums, kind=str(kind), parent_run=parent_run,
        )
        (tmp / "run.json").write_text(json.dumps(record.to_json(), sort_keys=True, indent=2) + "\n")
        os.rename(tmp, analysis_dir / run_id)  # fails rather than merge if the id was taken meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def _check_per_prompt(per_prompt: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(per_prompt, pd.DataFrame) or list(per_prompt.columns) != list(PER_PROMPT_COLUMNS):
        got = list(per_prompt.columns) if isinstance(per_prompt, pd.DataFrame) else type(per_prompt).__name__
        raise ResultsError(f"per_prompt must be a DataFrame with columns {list(PER_PROMPT_COLUMNS)}; got {got}.")
    out = per_prompt.reset_index(drop=True)
    out.attrs = {}
    return out


def _new_run_id(root: Path, now: datetime) -> str:
    """A run id no run under `root` has (in any analysis), so a bare id always names one run."""
    while True:
        run_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        if not any(root.glob(f"*/{run_id}")):
            return run_id


def _open(run_dir_or_id: str | Path, results_dir: Path | None) -> tuple[Path, RunRecord]:
    run_dir = _find_run_dir(run_dir_or_id, results_dir)
    return run_dir, _read_record(run_dir / "run.json")


def load_table(run_dir_or_id: str | Path, name: str, results_dir: Path | None = None) -> pd.DataFrame:
    """A named extra table of a run (e.g. per-token traces), saved with ``save_run(tables=...)``."""
    run_dir, record = _open(run_dir_or_id, results_dir)
    if not (run_dir / "tables" / f"{name}.parquet").exists():
        raise ResultsError(f"run {run_dir_or_id} has no table {name!r}; it was not saved by this analysis.")
    return _read_parquet(run_dir, record, f"tables/{name}.parquet")


def load_per_prompt(run_dir_or_id: str | Path, results_dir: Path | None = None) -> pd.DataFrame | None:
    """The per-prompt head values of a run (prompt, layer, head, metric, value), or None if it saved none."""
    run_dir, record = _open(run_dir_or_id, results_dir)
    return _read_parquet(run_dir, record, "per_prompt.parquet") if (run_dir / "per_prompt.parquet").exists() else None


def _read_parquet(run_dir: Path, record: RunRecord, rel: str) -> pd.DataFrame:
    """A checksum-verified parquet file of a run."""
    verify_file(run_dir, record, rel)
    try:
        return pd.read_parquet(run_dir / rel)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ResultsError(f"cannot read {run_dir / rel} ({type(exc).__name__}: {exc}); delete the run directory "
                           "or re-run the analysis.") from None


def load_summary(run_dir_or_id: str | Path, results_dir: Path | None = None) -> dict[str, Any]:
    """The JSON summary of a run ({} when the analysis saved none)."""
    run_dir, record = _open(run_dir_or_id, results_dir)
    path = run_dir / "summary.json"
    if not path.exists():
        return {}
    verify_file(run_dir, record, "summary.json")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path} is not valid JSON ({exc}); re-run the analysis.") from None


def _find_run_dir(run_dir_or_id: str | Path, results_dir: Path | None) -> Path:
    candidate = Path(run_dir_or_id)
    if candidate.is_dir():
        return candidate
    run_id = str(run_dir_or_id)
    root = Path(results_dir or default_results_dir())
    if os.sep in run_id or "/" in run_id or run_id.startswith("."):
        raise ResultsError(f"run directory {candidate} does not exist; check the path.")
    matches = [p for p in root.glob(f"*/{glob.escape(run_id)}") if p.is_dir()]
    if not matches:
        raise ResultsError(f"no run with id {run_id!r} under {root}; list saved runs with "
                           "`workbench results ls` (or find_runs()) or pass the run directory path.")
    if len(matches) > 1:  # a copied run: prefer the one whose run.json agrees with where it lives
        matches = [p for p in matches if _names_itself(p)] or matches
    if len(matches) > 1:
        raise ResultsError(f"run id {run_id!r} is ambiguous: {sorted(map(str, matches))}; pass a path.")
    return matches[0]


def _names_itself(run_dir: Path) -> bool:
    try:
        record = _read_record(run_dir / "run.json")
    except ResultsError:
        return False
    return record.run_id == run_dir.name and record.analysis == run_dir.parent.name


def load_run(run_dir_or_id: str | Path, results_dir: Path | None = None) -> tuple[pd.DataFrame, RunRecord]:
    """Load (scores, record) from a run directory path or a bare run_id."""
    run_dir, record = _open(run_dir_or_id, results_dir)
    if record.kind != "run" and not (run_dir / "scores.parquet").exists():
        raise ResultsError(f"{record.run_id} is a {record.kind!r} check of {record.analysis} without per-head "
                           "scores; read its tables with load_result().")
    scores = _read_parquet(run_dir, record, "scores.parquet")
    try:
        scores = validate_head_scores(scores)
    except ResultsError as exc:
        raise ResultsError(f"{run_dir / 'scores.parquet'} holds invalid head scores: {exc}") from None
    return scores, record


def load_result(run_dir_or_id: str | Path, results_dir: Path | None = None):
    """The saved Result (scores or None, tables, summary, per_prompt, kind, record) of a run or a check."""
    run_dir, record = _open(run_dir_or_id, results_dir)
    scores = load_run(run_dir)[0] if (run_dir / "scores.parquet").exists() or record.kind == "run" else None
    tables = {p.stem: _read_parquet(run_dir, record, f"tables/{p.name}")
              for p in sorted(run_dir.glob("tables/*.parquet"))}
    return Result(record.analysis, scores, tables, load_summary(run_dir), load_per_prompt(run_dir), record.kind,
                  record)


# ---- labels and deletion --------------------------------------------------------------------------------
LABEL_MAX_CHARS = 60
LOCK_TIMEOUT_S = 30


def check_label(text: Any) -> str:
    """A run label: text of at most LABEL_MAX_CHARS printable characters on one line ("" clears the label)."""
    if not isinstance(text, str):
        raise ResultsError(f"a run label must be text, got {type(text).__name__}.")
    label = text.strip()
    if len(label) > LABEL_MAX_CHARS:
        raise ResultsError(f"a run label has at most {LABEL_MAX_CHARS} characters; this one has {len(label)}.")
    if not label.isprintable():
        raise ResultsError("a run label is one line of printable text (no newlines, tabs or control characters).")
    return label


def _results_lock(root: Path):
    """The writers' lock of a results directory (labels and deletion take it)."""
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    return FileLock(str(root / ".lock"), timeout=LOCK_TIMEOUT_S)


def label_run(run_dir_or_id: str | Path, text: str, results_dir: Path | None = None) -> RunRecord:
    """Store a short label in the run's run.json (atomically, under the results lock); its new RunRecord."""
    from workbench.core.integrity import atomic_write_text

    label = check_label(text)
    run_dir = _find_run_dir(run_dir_or_id, results_dir)
    with _results_lock(run_dir.parent.parent):
        record = dataclasses.replace(_read_record(run_dir / "run.json"), label=label)
        atomic_write_text(run_dir / "run.json", json.dumps(record.to_json(), sort_keys=True, indent=2) + "\n")
    return record


def delete_run(run_dir_or_id: str | Path, results_dir: Path | None = None) -> list[str]:
    """Move a run (damaged or not) and the checks of it to ``<results_dir>/.trash/`` under the results lock (one
    rename each, so the catalog never sees half a run); the ids moved, the run's first."""
    root = Path(results_dir or default_results_dir())
    run_dir = _find_run_dir(run_dir_or_id, results_dir)
    if run_dir.parent.parent.resolve() != root.resolve() or run_dir.name.startswith("."):
        raise ResultsError(f"{run_dir} is not a run directory of {root}; pass a run id from `workbench results ls` "
                           "(or --results-dir for another catalog).")
    trash = root / ".trash"
    with _results_lock(root):
        checks = [p.parent for p in root.glob("*/*/run.json")
                  if not p.parent.parent.name.startswith(".") and _parent_of(p) == run_dir.name]
        trash.mkdir(exist_ok=True)
        for directory in [run_dir, *checks]:
            target = trash / f"{directory.parent.name}.{directory.name}"
            os.rename(directory, target if not target.exists() else target.with_name(f"{target.name}-{uuid.uuid4()}"))
    return [run_dir.name, *(c.name for c in checks)]


def _parent_of(run_json: Path) -> str | None:
    try:
        return json.loads(run_json.read_text("utf-8")).get("parent_run")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
