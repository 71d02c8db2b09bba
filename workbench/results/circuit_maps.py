"""A circuit file `<name>.toml` next to its `<name>.scores.parquet` score map, so full-map overlap works offline."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd

from workbench.results.circuits import Circuit, circuit_path, load_circuit, save_circuit
from workbench.results.runs import validate_head_scores

MAP_COLUMNS = ("analysis", "model", "prompt_set", "layer", "head", "score")


def scores_path(toml_path: Path) -> Path:
    return toml_path.with_name(toml_path.stem + ".scores.parquet")


def save_with_scores(circuit: Circuit, scores: pd.DataFrame, directory: Path | None = None) -> Path:
    """Save the circuit TOML and its score map (map first: a failed write keeps the old pair); returns the TOML path."""
    scores = validate_head_scores(scores, n_layers=circuit.n_layers, n_heads=circuit.n_heads)
    keep = [c for c in scores.columns if c in MAP_COLUMNS or c.endswith("_score")]
    target = scores_path(circuit_path(circuit.name, directory))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        scores[keep].to_parquet(tmp, index=False)
        path = save_circuit(circuit, directory)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_with_scores(name_or_path: str | Path, directory: Path | None = None) -> tuple[Circuit, pd.DataFrame | None]:
    """The circuit and its score map (None when the circuit was written without one)."""
    circuit = load_circuit(name_or_path, directory)
    target = scores_path(circuit_path(name_or_path, directory))
    if not target.exists():
        return circuit, None
    scores = validate_head_scores(pd.read_parquet(target), n_layers=circuit.n_layers, n_heads=circuit.n_heads)
    return circuit, scores
