"""The provenance of a saved run (run.json, a :class:`RunRecord`) and the checks that a run's files are intact."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.core.integrity import sha256_file
from workbench.core.scores import ResultsError


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
    # relative path -> {"bytes", "sha256"} of each file saved with the run; {} for runs saved before checksums
    checksums: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    kind: str = "run"  # "run", or the name of the check this Result is
    parent_run: str | None = None  # the run a check checked (None for runs)
    label: str = ""  # a short free-text label a person gave the run (workbench.results.runs.label_run)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """Build a record from a dict as written by :meth:`to_json`, checking fields and types."""
        if not isinstance(data, Mapping):
            raise ResultsError(f"run record must be a JSON object, got {type(data).__name__}.")
        fields = {f.name for f in dataclasses.fields(cls)}
        data = {"checksums": {}, "kind": "run", "parent_run": None, "label": "", **data}  # what older runs lack
        missing = sorted(fields - set(data))
        if missing:
            raise ResultsError(f"run record is missing field(s) {missing}.")
        kinds = {"params": dict, "package_versions": dict, "timings": dict, "n_rows": int, "checksums": dict}
        for name in fields:
            value, kind = data[name], kinds.get(name, str)
            ok = isinstance(value, kind) and not isinstance(value, bool)
            if not ok and not (name in ("git_commit", "parent_run") and value is None):
                raise ResultsError(f"run record field {name!r} should be {kind.__name__}, got {value!r}.")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data["timings"].values()):
            raise ResultsError("run record field 'timings' must map names to seconds (numbers).")
        for name, entry in data["checksums"].items():
            if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                    and isinstance(entry.get("bytes"), int) and not isinstance(entry.get("bytes"), bool)):
                raise ResultsError(f"run record field 'checksums' has a malformed entry for {name!r}.")
        try:
            datetime.fromisoformat(data["created"])
        except ValueError:
            raise ResultsError(f"run record field 'created' is not ISO-8601: {data['created']!r}.") from None
        return cls(**{name: data[name] for name in fields})


def _read_record(path: Path) -> RunRecord:
    hint = "delete the run directory or re-run the analysis"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path} is missing; the run is incomplete — {hint}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path} is not valid JSON ({exc}); {hint}.") from None
    try:
        return RunRecord.from_json(data)
    except ResultsError as exc:
        raise ResultsError(f"{path} is malformed: {exc} To fix: {hint}.") from None


def _run_files(run_dir: Path) -> list[str]:
    """Relative paths of the data files of a run (everything but run.json)."""
    names = ["scores.parquet", "per_prompt.parquet", "summary.json"]
    names += [f"tables/{p.name}" for p in sorted(run_dir.glob("tables/*.parquet"))]
    return [n for n in names if (run_dir / n).is_file()]


def verify_file(run_dir: Path, record: RunRecord, rel: str, *, full: bool = True) -> None:
    """Raise a ResultsError unless `rel` matches the size (and, if `full`, the sha256) in run.json."""
    if not record.checksums:  # saved before checksums were recorded
        return
    path, expected = run_dir / rel, record.checksums.get(rel)
    fix = f"re-run the analysis ({record.analysis}) and delete {run_dir}"
    if expected is None:
        raise ResultsError(f"run {record.run_id}: {rel} was not saved with the run (no checksum in run.json); "
                           f"{fix}.")
    if not path.is_file():
        raise ResultsError(f"run {record.run_id}: {rel} is missing; {fix}.")
    if path.stat().st_size != expected["bytes"] or (full and sha256_file(path) != expected["sha256"]):
        raise ResultsError(f"run {record.run_id}: {rel} does not match the checksum in its run.json (the file is "
                           f"damaged); {fix}.")


