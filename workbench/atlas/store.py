"""An atlas in the catalog (a run with analysis "atlas", kind "atlas"; its tables as Parquet) and its export."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workbench.atlas.table import TABLES, Atlas, empty
from workbench.core.errors import WorkbenchError

ANALYSIS = KIND = "atlas"


def save_atlas(atlas: Atlas, results_dir: Path | None = None):
    """Save the atlas's tables in the catalog; sets and returns atlas.record."""
    from workbench.results.runs import save_run

    params = {k: v for k, v in atlas.params.items() if k != "build_s"}
    summary = {"n_layers": atlas.n_layers, "n_heads": atlas.n_heads, "n_metrics": len(atlas.metrics),
               "n_missing": len(atlas.missing), "n_multi_role_heads": _n_multi(atlas)}
    atlas.record = save_run(None, params=params, model_fingerprint=atlas.fingerprint, prompts_fingerprint="",
                            timings={"build": float(atlas.params.get("build_s", 0.0))}, results_dir=results_dir,
                            tables={name: _storable(t) for name, t in atlas.tables().items()}, summary=summary,
                            kind=KIND, analysis=ANALYSIS, model=atlas.model, prompt_set="saved runs")
    return atlas.record


def _n_multi(atlas: Atlas) -> int:
    counts = atlas.roles.groupby("label")["role"].nunique() if not atlas.roles.empty else pd.Series(dtype=int)
    return int((counts >= 2).sum())


def _storable(table: pd.DataFrame) -> pd.DataFrame:
    """Object columns as strings (None kept), so Parquet never guesses a type from an empty or mixed column."""
    out = table.copy()
    for column in [c for c in out.columns if pd.api.types.is_object_dtype(out[c])]:
        out[column] = out[column].map(lambda v: v if v is None or isinstance(v, str) else str(v))
    return out


def load_atlas(model: str, results_dir: Path | None = None) -> Atlas:
    """The newest saved atlas of `model`; a clear error naming the command when there is none."""
    from workbench.models.loading import resolve_spec
    from workbench.results.runs import find_runs, load_result

    model = resolve_spec(model).name  # an unknown name: the list of known models
    found = find_runs(results_dir, analysis=ANALYSIS, model=model, kind=KIND)
    if found.empty:
        raise WorkbenchError(f"no saved atlas of {model}; build one with `workbench atlas build -m {model}` "
                             "(or workbench.api.build_atlas).")
    result = load_result(found["path"].iloc[0])
    tables = {name: result.tables.get(name, empty(name)) for name in TABLES}
    summary, record = result.summary, result.record
    return Atlas(model, record.model_fingerprint, int(summary["n_layers"]), int(summary["n_heads"]), **tables,
                 params=dict(record.params), record=record)


def export_atlas(atlas: Atlas, out: Path) -> list[Path]:
    """atlas.parquet + atlas.csv (the values table) and <table>.parquet/.csv for the other tables, under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in atlas.tables().items():
        stem = "atlas" if name == "values" else name
        table = _storable(table)
        table.to_parquet(out / f"{stem}.parquet", index=False)
        table.to_csv(out / f"{stem}.csv", index=False)
        written += [out / f"{stem}.parquet", out / f"{stem}.csv"]
    return written
