"""What every page and callback needs: where results live, the model name and shape, the worker handle."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import workbench.api as wb
from workbench_app import controllers


@dataclass
class AppContext:
    model: str
    results_dir: Path | None
    worker: Any  # workbench_app.worker_client.WorkerClient (or None: model views disabled)
    model_facts: dict[str, Any] = field(default_factory=dict)
    circuits_dir: Path | None = None  # None: the repository's circuits/

    @property
    def shape(self) -> tuple[int, int]:
        info = (self.worker.info if self.worker is not None else None) or {}
        layers = info.get("n_layers") or self.model_facts.get("layers") or 1
        heads = info.get("n_heads") or self.model_facts.get("heads") or 1
        return int(layers), int(heads)

    _catalog: tuple[tuple, pd.DataFrame, pd.DataFrame] | None = None

    def results(self) -> pd.DataFrame:
        """The catalog's top-level results (runs, reports, interventions; checks sit in their `checks` column),
        re-read only when a run.json appears, disappears or changes."""
        root = Path(self.results_dir or wb.default_results_dir())
        files = sorted(root.glob("[!.]*/*/run.json")) if root.is_dir() else []
        signature = tuple((str(f), f.stat().st_mtime_ns) for f in files)
        if self._catalog is None or self._catalog[0] != signature:
            found = controllers.catalog(self.results_dir)
            self._catalog = (signature, found, found[found["n_rows"] > 0].reset_index(drop=True))
        return self._catalog[1]

    def runs(self) -> pd.DataFrame:
        """The results with head scores (what maps can show), newest first."""
        self.results()
        return self._catalog[2]

    _atlases: dict = field(default_factory=dict)

    def atlas(self, model: str):
        """The newest saved atlas of `model` (a WorkbenchError naming the commands if none), cached until the catalog
        changes."""
        self.runs()
        key = (model, self._catalog[0])
        if key not in self._atlases:
            fresh = {k: v for k, v in self._atlases.items() if k[1] == key[1]}
            self._atlases = {**fresh, key: wb.load_atlas(model, self.results_dir)}
        return self._atlases[key]

    def atlas_models(self) -> list[str]:
        """Models with a saved atlas, the app's own model first."""
        found = wb.find_results(kind="atlas", results_dir=self.results_dir)
        return list(dict.fromkeys([self.model, *sorted(found["model"].unique())]))

    def model_runs(self) -> pd.DataFrame:
        runs = self.runs()
        return runs[runs["model"] == self.model]
