"""The DuckDB catalog of saved runs, newest first; damaged runs are skipped with a warning, and a run whose
run.json disagrees with its directory (a copy) is refused, so a bare id reaches exactly one run.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import duckdb
import pandas as pd

from workbench.core.integrity import remove_temps
from workbench.core.paths import results_dir as default_results_dir
from workbench.core.scores import ResultsError
from workbench.results.record import _read_record, verify_file

CATALOG_COLUMNS = ("run_id", "analysis", "kind", "parent_run", "model", "prompt_set", "created", "n_rows",
                   "model_fingerprint", "prompts_fingerprint", "git_commit", "params", "path", "seconds", "label")


def _good_run_files(root: Path) -> list[str]:
    """run.json paths under root/*/*/ that parse as RunRecords; warn about and skip the rest."""
    good, bad = _scan(root)
    for problem in bad["problem"]:
        warnings.warn(f"skipping run in catalog: {problem}", stacklevel=3)
    return good


def damaged_runs(results_dir: Path | None = None) -> pd.DataFrame:
    """Run directories the catalog skips (run_id, analysis, path, problem): delete them with `results rm`."""
    return _scan(Path(results_dir or default_results_dir()))[1]


def _scan(root: Path) -> tuple[list[str], pd.DataFrame]:
    good, bad = [], []
    if not root.is_dir():
        return good, pd.DataFrame(bad, columns=["run_id", "analysis", "path", "problem"])
    for analysis_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        remove_temps(analysis_dir, only_stale=True)  # left by killed writers
        for run_dir in sorted(p for p in analysis_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                record = _read_record(run_dir / "run.json")
                _check_place(run_dir, record)
                for rel in record.checksums:
                    verify_file(run_dir, record, rel, full=rel == "scores.parquet")  # the rest: sizes only
            except ResultsError as exc:
                bad.append((run_dir.name, analysis_dir.name, str(run_dir), str(exc)))
                continue
            good.append(str(run_dir / "run.json"))
    return good, pd.DataFrame(bad, columns=["run_id", "analysis", "path", "problem"])


def _check_place(run_dir: Path, record) -> None:
    """A run's id and analysis must match its directories (a copied or moved run would shadow another)."""
    if record.run_id != run_dir.name or record.analysis != run_dir.parent.name:
        raise ResultsError(f"{run_dir / 'run.json'} says {record.analysis}/{record.run_id} but lives in "
                           f"{run_dir.parent.name}/{run_dir.name} (a copied run?); move it back to "
                           f"{record.analysis}/{record.run_id} or delete it.")


# Fields DuckDB reads from run.json (package_versions are not catalogued; params become a short text).
_CATALOG_SCHEMA = {c: "VARCHAR" for c in CATALOG_COLUMNS if c not in ("n_rows", "params", "path", "seconds")}
_CATALOG_SCHEMA |= {"n_rows": "BIGINT", "params": "JSON", "timings": "MAP(VARCHAR, DOUBLE)"}
_PARAMS_WIDTH = 240  # every param of a typical run (task, method, n, lengths …)


def _empty_catalog() -> pd.DataFrame:
    dtypes = {"n_rows": "int64", "seconds": "float64"}
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, str)) for c in CATALOG_COLUMNS})


def _params_text(params: str | None) -> str:
    """`k=5, mode=mean` from the params JSON, cut to _PARAMS_WIDTH characters."""
    text = ", ".join(f"{k}={v}" for k, v in json.loads(params or "{}").items())
    return text if len(text) <= _PARAMS_WIDTH else text[:_PARAMS_WIDTH - 1] + "…"


def find_runs(results_dir: Path | None = None, *, analysis: str | None = None, model: str | None = None,
              prompt_set: str | None = None, kind: str | None = None) -> pd.DataFrame:
    """One row per saved run or check (`kind`: "run" or the check's name; `parent_run`: the run it checked),
    newest first, optionally filtered. Malformed runs are skipped with a warning."""
    files = _good_run_files(Path(results_dir or default_results_dir()))
    if not files:
        return _empty_catalog()
    where, args = [], [files, _CATALOG_SCHEMA]
    for column, value in (("analysis", analysis), ("model", model), ("prompt_set", prompt_set), ("kind", kind)):
        if value is not None:
            where.append(f"{column} = ?")  # column names are constants; values are bound
            args.append(value)
    sql = (
        "SELECT * FROM (SELECT run_id, analysis, coalesce(kind, 'run') AS kind, parent_run, model, prompt_set, "
        "created, n_rows, model_fingerprint, prompts_fingerprint, git_commit, params::VARCHAR AS params, "
        "filename AS path, coalesce(list_sum(map_values(timings)), 0.0)::DOUBLE AS seconds, "
        "coalesce(label, '') AS label "
        "FROM read_json(?, columns = ?, filename = true, format = 'auto')) "
        + (f"WHERE {' AND '.join(where)} " if where else "")
        + "ORDER BY TRY_CAST(created AS TIMESTAMPTZ) DESC NULLS LAST, run_id DESC"
    )
    with duckdb.connect() as con:
        df = con.execute(sql, args).df()
    if df.empty:
        return _empty_catalog()
    df["path"] = [str(Path(f).parent) for f in df["path"]]
    df["params"] = [_params_text(p) for p in df["params"]]
    for column in ("git_commit", "parent_run"):
        df[column] = df[column].astype(object).where(df[column].notna(), None)
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
