"""Circuits as files: a named set of heads of one model on one task, chosen from a score map by a rule.

A circuit is ``<directory>/<name>.toml`` (default ``<repo>/circuits/``): format_version, name, model, task,
n_layers, n_heads, method, selection, run_id (omitted when unknown), notes, heads (``["L3H5", …]``), [metric].
Selection (:func:`select_heads`): ``top_fraction=f`` keeps the ``ceil(f · N)`` best heads (at least 1),
``top_k=k`` the k best, ``threshold=t`` those with ``key >= t``; NaN never selected; ties at the cut go to the lower
(layer, head). ``selection="abs"`` (default) ranks by ``|score|`` (negative heads count: Wang et al.'s IOI circuit
keeps its negative name movers), ``"signed"`` by the score itself. Torch-free (the app imports it).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from workbench.core.errors import WorkbenchError
from workbench.core.heads import HeadRef, parse_heads
from workbench.core.paths import circuits_dir, shipped

FORMAT_VERSION = 1
SELECTIONS = ("abs", "signed")  # rank heads by |score| (default) or by the signed score


def selection_label(selection: str, top_fraction: float) -> str:
    """How a circuit file records its rule: 'top 5% by |score|' or 'top 5% by signed score'."""
    return f"top {top_fraction:.0%} by {'|score|' if selection == 'abs' else 'signed score'}"
LIST_COLUMNS = ("name", "model", "task", "n_heads_in_circuit", "method", "selection", "run_id", "path", "error")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_REQUIRED = ("format_version", "name", "model", "task", "n_layers", "n_heads", "method", "selection", "heads")
_KINDS: dict[str, tuple[type, str]] = {
    "format_version": (int, "an integer"), "name": (str, "a string"), "model": (str, "a string"),
    "task": (str, "a string"), "n_layers": (int, "an integer"), "n_heads": (int, "an integer"),
    "method": (str, "a string"), "selection": (str, "a string"), "run_id": (str, "a string"),
    "notes": (str, "a string"), "heads": (list, 'an array of head labels like ["L3H5", "L9H1"]'),
    "metric": (dict, "a table of scalars ([metric] with key = value lines)"),
}


class CircuitError(WorkbenchError):
    """An invalid circuit, circuit file or head selection; the message says what to do."""


def _scalar(key: str, value: Any) -> float | int | str | bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return value
    raise CircuitError(f"metric[{key!r}] = {value!r} is a {type(value).__name__}; metric values must be scalars "
                       "(float, int, str or bool). Store lists or tables elsewhere, e.g. in notes or the run.")


@dataclass(frozen=True)
class Circuit:
    """A set of heads of `model` (``n_layers`` × ``n_heads``) on `task`, found by `method` with `selection`."""

    name: str
    model: str
    task: str
    heads: tuple[HeadRef, ...]
    n_layers: int
    n_heads: int
    method: str
    selection: str
    run_id: str | None = None
    metric: dict[str, float | str] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        check_circuit_name(self.name)
        for key in ("model", "task", "method", "selection", "notes"):
            if not isinstance(getattr(self, key), str):
                raise CircuitError(f"circuit {key} must be a string, got {getattr(self, key)!r}.")
        for key in ("model", "task", "method", "selection"):
            if not getattr(self, key).strip():
                raise CircuitError(f"circuit {self.name!r} has an empty {key}; say which {key} it belongs to.")
        if self.run_id is not None and not isinstance(self.run_id, str):
            raise CircuitError(f"run_id must be a string or None, got {self.run_id!r}.")
        for key in ("n_layers", "n_heads"):
            value = getattr(self, key)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise CircuitError(f"{key} must be a positive integer (the model's shape), got {value!r}.")
            object.__setattr__(self, key, int(value))
        try:
            heads = parse_heads(self.heads)
        except (WorkbenchError, TypeError, ValueError) as exc:
            raise CircuitError(f"circuit {self.name!r} has an unreadable head: {exc}") from None
        if not heads:
            raise CircuitError(f"circuit {self.name!r} has no heads; a circuit needs at least one head.")
        bad = [str(h) for h in heads if not (0 <= h.layer < self.n_layers and 0 <= h.head < self.n_heads)]
        if bad:
            raise CircuitError(f"circuit {self.name!r} names heads {', '.join(bad[:8])} outside the model's shape: "
                               f"layers 0..{self.n_layers - 1}, heads 0..{self.n_heads - 1}. Check n_layers/n_heads "
                               "or that the heads belong to this model.")
        object.__setattr__(self, "heads", heads)
        if not isinstance(self.metric, Mapping):
            raise CircuitError(f"metric must be a dict of scalars, got {type(self.metric).__name__}.")
        object.__setattr__(self, "metric", {str(k): _scalar(str(k), v) for k, v in self.metric.items()})

    @property
    def labels(self) -> list[str]:
        """The heads as ``L{layer}H{head}`` strings."""
        return [str(h) for h in self.heads]


# ---- selection -----------------------------------------------------------------------------------------
def select_heads(scores: pd.DataFrame, *, top_fraction: float | None = None, top_k: int | None = None,
                 threshold: float | None = None, column: str = "score", selection: str = "abs"
                 ) -> tuple[HeadRef, ...]:
    """Heads of a score map by exactly one criterion, ranked by |score| or the signed score (module docstring)."""
    if selection not in SELECTIONS:
        raise CircuitError(f"selection must be one of {', '.join(SELECTIONS)} (rank by |score| or by the signed "
                           f"score); got {selection!r}.")
    given = [name for name, v in (("top_fraction", top_fraction), ("top_k", top_k), ("threshold", threshold))
             if v is not None]
    if len(given) != 1:
        raise CircuitError(f"select_heads needs exactly one of top_fraction, top_k, threshold; got "
                           f"{given or 'none'}. E.g. select_heads(scores, top_fraction=0.05).")
    if not isinstance(scores, pd.DataFrame):
        raise CircuitError(f"scores must be a HeadScores DataFrame, got {type(scores).__name__}.")
    missing = [c for c in ("layer", "head", column) if c not in scores.columns]
    if missing:
        raise CircuitError(f"scores have no column(s) {missing}; columns are {list(scores.columns)}.")
    if scores.duplicated(["layer", "head"]).any():
        raise CircuitError("scores list some heads twice; aggregate per (layer, head) before selecting.")
    value = pd.to_numeric(scores[column], errors="coerce").astype(float)
    frame = pd.DataFrame({"layer": scores["layer"].astype(int).to_numpy(),
                          "head": scores["head"].astype(int).to_numpy(),
                          "key": (value.abs() if selection == "abs" else value).to_numpy()})
    n_total = len(frame)
    frame = frame[frame["key"].notna()]
    if threshold is not None:
        if not isinstance(threshold, numbers.Real) or math.isnan(threshold):
            raise CircuitError(f"threshold must be a number, got {threshold!r}.")
        chosen = frame[frame["key"] >= threshold]
    else:
        if top_fraction is not None:
            if not isinstance(top_fraction, numbers.Real) or not 0 < top_fraction <= 1:
                raise CircuitError(f"top_fraction must be in (0, 1], e.g. 0.05 for the top 5%; got {top_fraction!r}.")
            k = max(1, math.ceil(round(top_fraction * n_total, 9)))
        else:
            if not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool) or top_k < 1:
                raise CircuitError(f"top_k must be a positive integer, got {top_k!r}.")
            k = int(top_k)
        chosen = frame.sort_values(["key", "layer", "head"], ascending=[False, True, True], kind="mergesort").head(k)
    return tuple(sorted(HeadRef(int(r.layer), int(r.head)) for r in chosen.itertuples(index=False)))


def random_circuits(n_layers: int, n_heads: int, size: int, n: int, seed: int,
                    exclude: Iterable = ()) -> list[tuple[HeadRef, ...]]:
    """`n` uniformly random sets of `size` distinct heads (never from `exclude`), sorted; same seed, same sets."""
    excluded = set(parse_heads(exclude))
    pool = [HeadRef(layer, head) for layer in range(n_layers) for head in range(n_heads)
            if HeadRef(layer, head) not in excluded]
    if not isinstance(size, numbers.Integral) or size < 0 or size > len(pool):
        raise CircuitError(f"cannot draw {size!r} distinct heads from the {len(pool)} heads available "
                           f"({n_layers}×{n_heads} minus {len(excluded)} excluded); use a size in 0..{len(pool)}.")
    if not isinstance(n, numbers.Integral) or n < 0:
        raise CircuitError(f"n (how many random circuits) must be a non-negative integer, got {n!r}.")
    rng = np.random.default_rng(seed)
    return [tuple(sorted(pool[i] for i in rng.choice(len(pool), size=int(size), replace=False))) for _ in range(n)]


# ---- files -----------------------------------------------------------------------------------------------
def _toml_str(value: str) -> str:
    """A TOML basic string: JSON escaping (a subset of TOML's) plus DEL, which TOML forbids raw."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007F")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    return _toml_str(value)


def _to_toml(circuit: Circuit) -> str:
    lines = ["# A circuit (workbench.results.circuits). Heads are L{layer}H{head}, 0-based.",
             f"format_version = {FORMAT_VERSION}"]
    for key in ("name", "model", "task", "n_layers", "n_heads", "method", "selection", "run_id", "notes"):
        value = getattr(circuit, key)
        if value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    labels = [_toml_str(x) for x in circuit.labels]
    if len(labels) <= 10:
        lines.append(f"heads = [{', '.join(labels)}]")
    else:
        lines.append("heads = [")
        lines += ["    " + ", ".join(labels[i:i + 10]) + "," for i in range(0, len(labels), 10)]
        lines.append("]")
    lines += ["", "[metric]"] + [f"{k if _BARE_KEY_RE.fullmatch(k) else _toml_str(k)} = {_toml_value(v)}"
                                 for k, v in circuit.metric.items()]
    return "\n".join(lines) + "\n"


def _from_toml(data: Mapping[str, Any], source: str) -> Circuit:
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CircuitError(f"{source} is missing key(s) {missing}; a circuit file needs {', '.join(_REQUIRED)} "
                           "(run_id, metric and notes are optional).")
    for key, (kind, what) in _KINDS.items():
        if key in data and (not isinstance(data[key], kind) or isinstance(data[key], bool)):
            raise CircuitError(f"{source}: {key} should be {what}, got {data[key]!r}.")
    if data["format_version"] != FORMAT_VERSION:
        newer = data["format_version"] > FORMAT_VERSION
        raise CircuitError(f"{source} has format_version = {data['format_version']}; this workbench reads version "
                           f"{FORMAT_VERSION}" + ("; upgrade the workbench to read it." if newer else
                                                  "; re-save the circuit with save_circuit()."))
    if not all(isinstance(h, str) for h in data["heads"]):
        raise CircuitError(f"{source}: heads should be strings like \"L3H5\", got {data['heads']!r}.")
    unknown = sorted(set(data) - set(_KINDS))
    if unknown:
        raise CircuitError(f"{source} has unknown key(s) {unknown}; put free-form values under [metric] or in notes.")
    try:
        return Circuit(name=data["name"], model=data["model"], task=data["task"], heads=tuple(data["heads"]),
                       n_layers=data["n_layers"], n_heads=data["n_heads"], method=data["method"],
                       selection=data["selection"], run_id=data.get("run_id"), metric=data.get("metric", {}),
                       notes=data.get("notes", ""))
    except CircuitError as exc:
        raise CircuitError(f"{source}: {exc}") from None


def check_circuit_name(name) -> str:
    """`name` if it can be a circuit's file name, else a CircuitError saying what a name may hold."""
    if not isinstance(name, str) or not name:
        raise CircuitError("a circuit needs a non-empty name, e.g. 'gpt2_ioi'; it is also its file name.")
    if not _NAME_RE.fullmatch(name):
        raise CircuitError(f"circuit name {name!r} cannot be a file name; use letters, digits, '_', '-' "
                           "and '.', not starting with '.' or '-' (e.g. 'smollm2-135m_ioi').")
    return name


def default_circuit_name(model: str, task: str) -> str:
    """`<model>_<task>` as a file name: an HF id's '/' becomes '--', a local path gives its folder name."""
    is_path = model.startswith((".", "/", "~")) or Path(model).expanduser().is_dir()
    stem = Path(model).expanduser().name if is_path else model.replace("/", "--")
    return check_circuit_name(f"{re.sub(r'[^A-Za-z0-9_.-]', '-', stem).lstrip('.-')}_{task}")


def _directory(directory: Path | str | None) -> Path:
    """Where circuits are saved: `directory`, else `workbench.core.paths.circuits_dir()`."""
    return Path(directory) if directory is not None else circuits_dir()


def _folders(directory: Path | str | None) -> list[Path]:
    """Where circuits are looked up: `directory`, else the save folder, then the circuits shipped with the package."""
    if directory is not None:
        return [Path(directory)]
    folders = [circuits_dir(), shipped("circuits")]
    return [f for i, f in enumerate(folders) if f.resolve() not in {g.resolve() for g in folders[:i]}]


def circuit_path(path_or_name: str | Path, directory: Path | str | None = None) -> Path:
    """The file of a circuit: `path_or_name` itself if it looks like a path, else ``<directory>/<name>.toml``."""
    text = str(path_or_name)
    if isinstance(path_or_name, Path) or text.endswith(".toml") or "/" in text or os.sep in text:
        return Path(path_or_name)
    if not _NAME_RE.fullmatch(text):
        raise CircuitError(f"{text!r} is neither a circuit name nor a .toml path; list circuits with list_circuits().")
    found = [f / f"{text}.toml" for f in _folders(directory) if (f / f"{text}.toml").is_file()]
    return found[0] if found else _directory(directory) / f"{text}.toml"


def _available(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.toml") if not p.name.startswith("."))


def save_circuit(circuit: Circuit, directory: Path | str | None = None) -> Path:
    """Write ``<directory>/<circuit.name>.toml`` atomically (tmp file, re-read with tomllib, os.replace)."""
    if not isinstance(circuit, Circuit):
        raise CircuitError(f"save_circuit needs a Circuit, got {type(circuit).__name__}.")
    folder = _directory(directory)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{circuit.name}.toml"
    text = _to_toml(circuit)
    try:
        back = _to_toml(_from_toml(tomllib.loads(text), str(target)))
    except (tomllib.TOMLDecodeError, CircuitError) as exc:
        raise CircuitError(f"circuit {circuit.name!r} does not survive a TOML round trip ({exc}); check its strings "
                           "for unusual characters.") from None
    if back != text:
        raise CircuitError(f"circuit {circuit.name!r} reads back differently from TOML; check its metric values.")
    tmp = folder / f".{circuit.name}.toml.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        with open(tmp, "rb") as fh:
            if _to_toml(_from_toml(tomllib.load(fh), str(tmp))) != text:
                raise CircuitError(f"{tmp} did not read back as written; the disk may be full.")
        os.replace(tmp, target)
    except (OSError, UnicodeEncodeError) as exc:
        raise CircuitError(f"cannot write {target} ({type(exc).__name__}: {exc}); check the directory "
                           "permissions and the circuit's strings.") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def load_circuit(path_or_name: str | Path, directory: Path | str | None = None) -> Circuit:
    """Read a circuit from a ``.toml`` path or a bare name looked up in `directory` (default ``circuits/``)."""
    path = circuit_path(path_or_name, directory)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        folders = _folders(None) if directory is None and path.parent == _directory(None) else [path.parent]
        names = sorted({n for f in folders for n in _available(f)})
        listing = f"available in {path.parent}: {', '.join(names)}" if names else f"{path.parent} has no circuits"
        raise CircuitError(f"no circuit file {path}; {listing}. Save one with save_circuit() or "
                           "`workbench circuits find`.") from None
    except IsADirectoryError:
        raise CircuitError(f"{path} is a directory, not a circuit file.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CircuitError(f"{path} is not valid TOML ({exc}); fix the file or re-save the circuit.") from None
    return _from_toml(data, str(path))


def list_circuits(directory: Path | str | None = None) -> pd.DataFrame:
    """One row per ``*.toml`` in `directory`; files that do not load get their message in ``error``."""
    rows = []
    paths = {}
    for folder in reversed(_folders(directory)):  # the save folder wins over a shipped circuit of the same name
        paths.update({name: folder / f"{name}.toml" for name in _available(folder)})
    for name, path in sorted(paths.items()):
        try:
            c = load_circuit(path)
        except CircuitError as exc:
            rows.append({"name": name, "path": str(path), "error": str(exc)})
            continue
        rows.append({"name": c.name, "model": c.model, "task": c.task, "n_heads_in_circuit": len(c.heads),
                     "method": c.method, "selection": c.selection, "run_id": c.run_id, "path": str(path),
                     "error": None})
    out = pd.DataFrame(rows, columns=list(LIST_COLUMNS))
    for col in out.columns.drop("n_heads_in_circuit"):
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    out["n_heads_in_circuit"] = out["n_heads_in_circuit"].astype("Int64")
    return out
