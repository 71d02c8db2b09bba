"""Batch plans: TOML files that expand to cells (one analysis on one model with one parameter set).

Keys: name, models, optional device and dtype, and `[[analyses]]` with name, params, grid (every combination
is a cell), checks and check_params (a check cell per run cell); shipped examples in `data/plans/`.
A cell's id hashes analysis, model, params, a non-default dtype and any check with its params, so the same
cell in two plans is the same work; the device is not part of it (as in the model fingerprint).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.analyses import get_analysis
from workbench.core.errors import WorkbenchError
from workbench.core.validation import check_device_names
from workbench.models.loading import DEFAULT_MODEL, resolve_spec


class PlanError(WorkbenchError):
    """A plan file that cannot be run as written."""


@dataclass(frozen=True)
class Cell:
    analysis: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    device: str = "auto"
    check: str = ""  # a check cell: the check's name, run on the run of `parent` ("" for a run cell)
    check_params: dict[str, Any] = field(default_factory=dict)

    @property
    def cell_id(self) -> str:
        fields: dict[str, Any] = {"a": self.analysis, "m": self.model, "p": self.params}
        if self.dtype != "float32":  # float32 cells keep the ids they had before dtypes existed
            fields["d"] = self.dtype
        if self.check:
            fields |= {"c": self.check, "cp": self.check_params}
        payload = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def parent(self) -> Cell:
        """The run cell whose run a check cell checks (a run cell is its own parent)."""
        return dataclasses.replace(self, check="", check_params={})

    def label(self) -> str:
        params, check_params = (",".join(f"{k}={v}" for k, v in sorted(p.items()))
                                for p in (self.params, self.check_params))
        dtype = f" · {self.dtype}" if self.dtype != "float32" else ""
        check = f" · check {self.check}" + (f"({check_params})" if check_params else "") if self.check else ""
        return f"{self.analysis} · {self.model}{dtype}" + (f" · {params}" if params else "") + check


@dataclass(frozen=True)
class Plan:
    name: str
    cells: tuple[Cell, ...]
    source: str = ""

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps([c.cell_id for c in self.cells]).encode()).hexdigest()[:12]


def load_plan(path: str | Path) -> Plan:
    path = Path(path)
    if not path.exists():
        raise PlanError(f"No plan file at {path}; write a TOML plan (see workbench/batch/plan.py).")
    if path.is_dir():
        raise PlanError(f"{path} is a directory; give a TOML plan file (see workbench/batch/plan.py).")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path} is not valid TOML: {' '.join(str(exc).split())}.") from None
    except OSError as exc:
        raise PlanError(f"cannot read the plan {path}: {exc.strerror or exc}.") from None
    return parse_plan(raw, source=str(path))


def parse_plan(raw: dict[str, Any], source: str = "") -> Plan:
    """Validate a plan dict and expand it to cells, checking analyses, parameters and models early."""
    unknown = sorted(set(raw) - {"name", "models", "analyses", "device", "dtype"})
    if unknown:
        raise PlanError(f"Unknown top-level keys {unknown}; a plan has name, models, device, dtype and "
                        "[[analyses]].")
    device, dtype = raw.get("device", "auto"), raw.get("dtype", "float32")
    if not isinstance(device, str) or not isinstance(dtype, str):
        raise PlanError(f"`device` and `dtype` must be strings, e.g. device = \"cuda\", dtype = \"bfloat16\"; "
                        f"got {device!r} and {dtype!r}.")
    try:
        check_device_names(device, dtype)
    except WorkbenchError as exc:
        raise PlanError(str(exc).replace("--", "")) from None
    name = raw.get("name") or Path(source).stem or "batch"
    models = raw.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise PlanError(f"`models` must be a non-empty list of model names, e.g. models = [{DEFAULT_MODEL!r}].")
    for model in models:
        resolve_spec(model)  # unknown names fail now, not mid-batch
    entries = raw.get("analyses")
    if not isinstance(entries, list) or not entries:
        raise PlanError("A plan needs at least one [[analyses]] table with a `name`.")
    cells = []
    for number, entry in enumerate(entries, 1):
        checks = _entry_checks(entry, number)
        for params in _entry_params(entry, number):
            for model in models:
                cell = Cell(entry["name"], model, params, dtype=dtype, device=device)
                cells += [cell] + [dataclasses.replace(cell, check=c, check_params=p) for c, p in checks.items()]
    unique = tuple(dict((c.cell_id, c) for c in cells).values())
    return Plan(name=str(name), cells=unique, source=source)


def _entry_params(entry: Any, number: int) -> list[dict[str, Any]]:
    """The parameter sets of one [[analyses]] table, each checked against the analysis's typed Params."""
    if not isinstance(entry, dict) or "name" not in entry:
        raise PlanError(f"Each [[analyses]] table needs a name; table {number} is {entry!r}.")
    where = f"[[analyses]] table {number} ({entry['name']!r})"
    extra = sorted(set(entry) - {"name", "params", "grid", "checks", "check_params"})
    if extra:
        raise PlanError(f"{where}: unknown keys {extra}; a table has name, params, grid, checks and check_params.")
    spec = get_analysis(entry["name"])
    base, grid = entry.get("params", {}), entry.get("grid", {})
    for key, value in (("params", base), ("grid", grid)):
        if not isinstance(value, dict):
            raise PlanError(f"{where}: {key} must be a table, e.g. {key} = {{ n_prompts = 2 }}; got {value!r}.")
    bad = [k for k, v in grid.items() if not isinstance(v, list) or not v]
    if bad:
        raise PlanError(f"{where}: grid values must be non-empty lists; fix {bad}.")
    keys = sorted(grid)
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
        params = {**base, **dict(zip(keys, combo, strict=True))}
        try:
            spec.make_params(params)  # unknown names, wrong types and out-of-range numbers fail now
        except WorkbenchError as exc:
            cell = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items())) or "defaults"
            raise PlanError(f"{where}, cell {cell}: {exc}") from None
        out.append(params)
    return out


def _entry_checks(entry: dict[str, Any], number: int) -> dict[str, dict[str, Any]]:
    """Check name -> its params, for the `checks` and `check_params` of one [[analyses]] table."""
    where = f"[[analyses]] table {number} ({entry.get('name')!r})"
    names, tables = entry.get("checks", []), entry.get("check_params", {})
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PlanError(f"{where}: checks must be a list of check names, e.g. checks = [\"ablate\"]; got {names!r}.")
    if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
        raise PlanError(f"{where}: check_params must be a table of tables, e.g. check_params = {{ ablate = "
                        f"{{ k = 3 }} }}; got {tables!r}.")
    unused = sorted(set(tables) - set(names))
    if unused:
        raise PlanError(f"{where}: check_params names {unused}, which are not in checks = {names}.")
    spec = get_analysis(entry["name"])
    for name in names:
        try:
            spec.check(name).make_params(tables.get(name, {}))
        except WorkbenchError as exc:
            raise PlanError(f"{where}, check {name!r}: {exc}") from None
    return {name: dict(tables.get(name, {})) for name in names}
