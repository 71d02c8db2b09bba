"""Saved analysis results: tidy per-head scores, run provenance, and a DuckDB catalog.

Each run lives in ``<results_dir>/<analysis>/<run_id>/`` as ``scores.parquet`` (one row per
head, see :func:`validate_head_scores`) plus ``run.json`` (a :class:`RunRecord`).
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
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from workbench import paths
from workbench.errors import WorkbenchError

REQUIRED_COLUMNS = ("analysis", "model", "prompt_set", "layer", "head", "score")
IDENTITY_COLUMNS = ("analysis", "model", "prompt_set")
CATALOG_COLUMNS = ("run_id", "analysis", "model", "prompt_set", "created", "n_rows", "model_fingerprint",
                   "prompts_fingerprint", "git_commit", "path", "seconds")
PROVENANCE_DISTRIBUTIONS = ("torch", "transformers", "transformer-lens", "numpy", "pandas", "pyarrow",
                            "duckdb", "attention-workbench")
_LABEL_RE = re.compile(r"L(\d+)H(\d+)")
_SAFE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


class ResultsError(WorkbenchError):
    """Invalid head scores, run record or results directory."""


def head_label(layer: int, head: int) -> str:
    """Format a head as ``L{layer}H{head}``."""
    if not all(isinstance(x, numbers.Integral) and not isinstance(x, bool) and x >= 0 for x in (layer, head)):
        raise ResultsError(f"head_label needs non-negative integers, got layer={layer!r}, head={head!r}.")
    return f"L{int(layer)}H{int(head)}"


def parse_head_label(label: str) -> tuple[int, int]:
    """Parse ``"L3H5"`` into ``(3, 5)``."""
    match = _LABEL_RE.fullmatch(label) if isinstance(label, str) else None
    if match is None:
        raise ResultsError(f"malformed head label {label!r}; write heads as L{{layer}}H{{head}} with "
                           "non-negative integers, e.g. 'L3H5' for layer 3, head 5.")
    return int(match.group(1)), int(match.group(2))


def _labels(df: pd.DataFrame, mask: pd.Series, limit: int = 5) -> str:
    rows = df.loc[mask, ["layer", "head"]].head(limit)
    return ", ".join(f"L{r.layer}H{r.head}" for r in rows.itertuples(index=False))


def _coerce_index_column(df: pd.DataFrame, col: str, limit: int | None, limit_name: str) -> pd.Series:
    num = pd.to_numeric(df[col], errors="coerce")
    bad = num.isna() | (num % 1 != 0) | (num < 0)
    if bad.any():
        sample = df.loc[bad, col].head(5).tolist()
        raise ResultsError(f"column {col!r} must hold non-negative integers (0-based); bad values: {sample}. "
                           f"Fix them or convert with df[{col!r}].astype(int).")
    num = num.astype("int64")
    if limit is not None and (num >= limit).any():
        sample = sorted(set(num[num >= limit].tolist()))[:5]
        raise ResultsError(f"column {col!r} has values {sample} out of range for {limit_name}={limit}; "
                           f"valid values are 0..{limit - 1}. Check that the scores belong to this model.")
    return num


def validate_head_scores(
    df: pd.DataFrame, n_layers: int | None = None, n_heads: int | None = None
) -> pd.DataFrame:
    """Check a HeadScores frame and return a cleaned copy with coerced dtypes.

    Required columns: analysis, model, prompt_set (str, one value each), layer, head
    (int >= 0, unique pairs), score (float; NaN allowed, inf not). Extra columns are kept.
    """
    if not isinstance(df, pd.DataFrame):
        raise ResultsError(f"head scores must be a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"head scores are missing required column(s) {missing}; add them "
                           f"(required: {', '.join(REQUIRED_COLUMNS)}).")
    if df.empty:
        raise ResultsError("head scores frame is empty; an analysis must produce one row per (layer, head). "
                           "Check that the analysis actually ran over at least one head.")
    out = df.copy().reset_index(drop=True)
    for col in IDENTITY_COLUMNS:
        if out[col].isna().any():
            raise ResultsError(f"column {col!r} has missing values; fill it with the {col} name.")
        out[col] = out[col].astype(str)
        values = sorted(out[col].unique().tolist())
        if len(values) != 1:
            raise ResultsError(f"column {col!r} has {len(values)} distinct values {values[:5]}; a run holds "
                               "one (analysis, model, prompt_set). Split the frame, e.g. with "
                               "df.groupby(['analysis', 'model', 'prompt_set']), and save each part.")
    out["layer"] = _coerce_index_column(out, "layer", n_layers, "n_layers")
    out["head"] = _coerce_index_column(out, "head", n_heads, "n_heads")

    score = pd.to_numeric(out["score"], errors="coerce")
    non_numeric = score.isna() & out["score"].notna()
    if non_numeric.any():
        sample = out.loc[non_numeric, "score"].head(5).tolist()
        raise ResultsError(f"column 'score' has non-numeric values {sample} (heads "
                           f"{_labels(out, non_numeric)}); convert scores to float (NaN if undefined).")
    score = score.astype("float64")
    infinite = np.isinf(score)
    if infinite.any():
        raise ResultsError(f"column 'score' has infinite values for heads {_labels(out, infinite)}; replace "
                           "them with finite numbers, or NaN if the score is undefined.")
    out["score"] = score

    dup = out.duplicated(["layer", "head"], keep=False)
    if dup.any():
        ident = tuple(out.loc[0, c] for c in IDENTITY_COLUMNS)
        raise ResultsError(f"duplicate rows for heads {_labels(out, dup)} in (analysis, model, prompt_set)="
                           f"{ident}; each head must appear once. Aggregate (e.g. groupby(['layer', 'head'])"
                           ".mean()) or drop duplicates first.")
    return out


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """Provenance of one saved run (stored as run.json next to scores.parquet)."""

    run_id: str
    analysis: str
    model: str
    prompt_set: str
    params: dict[str, Any]
    model_fingerprint: str
    prompts_fingerprint: str
    package_versions: dict[str, str]
    git_commit: str | None
    timings: dict[str, float]
    created: str
    workbench_version: str
    n_rows: int

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """Build a record from a dict as written by :meth:`to_json`, checking fields and types."""
        if not isinstance(data, Mapping):
            raise ResultsError(f"run record must be a JSON object, got {type(data).__name__}.")
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(fields - set(data))
        if missing:
            raise ResultsError(f"run record is missing field(s) {missing}.")
        kinds = {"params": dict, "package_versions": dict, "timings": dict, "n_rows": int}
        for name in fields:
            value, kind = data[name], kinds.get(name, str)
            ok = isinstance(value, kind) and not isinstance(value, bool)
            if not ok and not (name == "git_commit" and value is None):
                raise ResultsError(f"run record field {name!r} should be {kind.__name__}, got {value!r}.")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data["timings"].values()):
            raise ResultsError("run record field 'timings' must map names to seconds (numbers).")
        try:
            datetime.fromisoformat(data["created"])
        except ValueError:
            raise ResultsError(f"run record field 'created' is not ISO-8601: {data['created']!r}.") from None
        return cls(**{name: data[name] for name in fields})


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
    """``$WORKBENCH_RESULTS_DIR`` if set, else the user's data dir (workbench.paths)."""
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
    out = {}
    for key, value in dict(timings).items():
        seconds = float(value) if isinstance(value, numbers.Real) else math.nan
        if not math.isfinite(seconds):
            raise ResultsError(f"timings[{key!r}]={value!r} is not a finite number of seconds.")
        out[str(key)] = seconds
    return out


def save_run(scores: pd.DataFrame, *, params: dict, model_fingerprint: str, prompts_fingerprint: str,
             timings: dict, results_dir: Path | None = None, tables: Mapping[str, pd.DataFrame] | None = None,
             summary: Mapping[str, Any] | None = None) -> RunRecord:
    """Validate and atomically write ``<results_dir>/<analysis>/<run_id>/{scores.parquet,run.json}``.

    Analyses with per-token or per-trial output add ``tables`` (``tables/<name>.parquet``) and a JSON
    ``summary`` (``summary.json``); read them back with :func:`load_table` and :func:`load_summary`.
    """
    tables = dict(tables or {})
    bad_tables = [n for n in tables if not _SAFE_NAME_RE.fullmatch(str(n))]
    if bad_tables:
        raise ResultsError(f"table names {bad_tables} cannot be file names; use letters, digits, '_', '-'.")
    clean_summary = _check_params(summary or {})
    clean = validate_head_scores(scores)
    clean.attrs = {}  # tables and summaries are written as files, not as parquet metadata
    analysis = clean.loc[0, "analysis"]
    if not _SAFE_NAME_RE.fullmatch(analysis):
        raise ResultsError(f"analysis name {analysis!r} cannot be used as a directory name; use letters, "
                           "digits, '_', '-' or '.' (not starting with '.').")
    clean_params, clean_timings = _check_params(params), _check_timings(timings)
    versions, commit = collect_provenance()
    now = _utcnow()
    run_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    record = RunRecord(
        run_id=run_id, analysis=analysis, model=clean.loc[0, "model"],
        prompt_set=clean.loc[0, "prompt_set"], params=clean_params,
        model_fingerprint=str(model_fingerprint), prompts_fingerprint=str(prompts_fingerprint),
        package_versions=versions, git_commit=commit, timings=clean_timings,
        created=now.isoformat(timespec="microseconds"),
        workbench_version=versions.get("attention-workbench", "unknown"),
        n_rows=len(clean),
    )
    analysis_dir = Path(results_dir or default_results_dir()) / analysis
    analysis_dir.mkdir(parents=True, exist_ok=True)
    tmp = analysis_dir / f".{run_id}.tmp-{os.getpid()}"
    try:
        tmp.mkdir()
        clean.to_parquet(tmp / "scores.parquet", index=False)
        if tables:
            (tmp / "tables").mkdir()
            for name, table in tables.items():
                table.to_parquet(tmp / "tables" / f"{name}.parquet", index=False)
        if clean_summary:
            (tmp / "summary.json").write_text(json.dumps(clean_summary, sort_keys=True, indent=2) + "\n")
        (tmp / "run.json").write_text(json.dumps(record.to_json(), sort_keys=True, indent=2) + "\n")
        os.rename(tmp, analysis_dir / run_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def load_table(run_dir_or_id: str | Path, name: str, results_dir: Path | None = None) -> pd.DataFrame:
    """A named extra table of a run (e.g. per-token traces), saved with ``save_run(tables=...)``."""
    path = _find_run_dir(run_dir_or_id, results_dir) / "tables" / f"{name}.parquet"
    if not path.exists():
        raise ResultsError(f"run {run_dir_or_id} has no table {name!r}; it was not saved by this analysis.")
    return pd.read_parquet(path)


def load_summary(run_dir_or_id: str | Path, results_dir: Path | None = None) -> dict[str, Any]:
    """The JSON summary of a run ({} when the analysis saved none)."""
    path = _find_run_dir(run_dir_or_id, results_dir) / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _read_record(path: Path) -> RunRecord:
    hint = "delete the run directory or re-run the analysis"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path} is missing; the run is incomplete — {hint}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path} is not valid JSON ({exc}); {hint}.") from None
    try:
        return RunRecord.from_json(data)
    except ResultsError as exc:
        raise ResultsError(f"{path} is malformed: {exc} To fix: {hint}.") from None


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
        raise ResultsError(f"no run with id {run_id!r} under {root}; list saved runs with find_runs() "
                           "or pass the run directory path.")
    if len(matches) > 1:
        raise ResultsError(f"run id {run_id!r} is ambiguous: {sorted(map(str, matches))}; pass a path.")
    return matches[0]


def load_run(run_dir_or_id: str | Path, results_dir: Path | None = None) -> tuple[pd.DataFrame, RunRecord]:
    """Load (scores, record) from a run directory path or a bare run_id."""
    run_dir = _find_run_dir(run_dir_or_id, results_dir)
    record = _read_record(run_dir / "run.json")
    parquet = run_dir / "scores.parquet"
    try:
        scores = pd.read_parquet(parquet)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ResultsError(f"cannot read {parquet} ({type(exc).__name__}: {exc}); delete the run directory "
                           "or re-run the analysis.") from None
    try:
        scores = validate_head_scores(scores)
    except ResultsError as exc:
        raise ResultsError(f"{parquet} holds invalid head scores: {exc}") from None
    return scores, record


def _good_run_files(root: Path) -> list[str]:
    """run.json paths under root/*/*/ that parse as RunRecords; warn about and skip the rest."""
    if not root.is_dir():
        return []
    good = []
    for analysis_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for run_dir in sorted(p for p in analysis_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                _read_record(run_dir / "run.json")
            except ResultsError as exc:
                warnings.warn(f"skipping run in catalog: {exc}", stacklevel=3)
                continue
            good.append(str(run_dir / "run.json"))
    return good


# Fields DuckDB reads from run.json (params and package_versions are not catalogued).
_CATALOG_SCHEMA = {c: "VARCHAR" for c in CATALOG_COLUMNS[:-2]}
_CATALOG_SCHEMA |= {"n_rows": "BIGINT", "timings": "MAP(VARCHAR, DOUBLE)"}


def _empty_catalog() -> pd.DataFrame:
    dtypes = {"n_rows": "int64", "seconds": "float64"}
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, str)) for c in CATALOG_COLUMNS})


def find_runs(results_dir: Path | None = None, *, analysis: str | None = None, model: str | None = None,
              prompt_set: str | None = None) -> pd.DataFrame:
    """One row per saved run, newest first, optionally filtered. Malformed runs are skipped with a warning."""
    files = _good_run_files(Path(results_dir or default_results_dir()))
    if not files:
        return _empty_catalog()
    where, args = [], [files, _CATALOG_SCHEMA]
    for column, value in (("analysis", analysis), ("model", model), ("prompt_set", prompt_set)):
        if value is not None:
            where.append(f"{column} = ?")  # column names are constants; values are bound
            args.append(value)
    sql = (
        "SELECT run_id, analysis, model, prompt_set, created, n_rows, model_fingerprint, "
        "prompts_fingerprint, git_commit, filename AS path, "
        "coalesce(list_sum(map_values(timings)), 0.0)::DOUBLE AS seconds "
        "FROM read_json(?, columns = ?, filename = true, format = 'auto') "
        + (f"WHERE {' AND '.join(where)} " if where else "")
        + "ORDER BY TRY_CAST(created AS TIMESTAMPTZ) DESC NULLS LAST, run_id DESC"
    )
    with duckdb.connect() as con:
        df = con.execute(sql, args).df()
    if df.empty:
        return _empty_catalog()
    df["path"] = [str(Path(f).parent) for f in df["path"]]
    df["git_commit"] = df["git_commit"].astype(object).where(df["git_commit"].notna(), None)
    return df[list(CATALOG_COLUMNS)]


def query_catalog(sql: str, results_dir: Path | None = None) -> pd.DataFrame:
    """Run user SQL against the catalog, exposed as a DuckDB view named ``runs``."""
    runs = find_runs(results_dir)
    with duckdb.connect() as con:
        con.register("runs", runs)
        try:
            return con.execute(sql).df()
        except duckdb.Error as exc:
            raise ResultsError(f"catalog query failed: {exc}. Query the view 'runs' with columns "
                               f"{', '.join(CATALOG_COLUMNS)}.") from None
