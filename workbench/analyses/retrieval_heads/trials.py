"""Retrieval trials kept as they finish, so an interrupted scoring run resumes where it stopped.

`<cache dir>/<model fp>/<prompt-set fp>/retrieval_trials/<params fp>/`: `inputs.json` (the key's parts) and
one atomically written `trial-00007.json` per trial (table row, answer span, event counts and streaming-mass
sums `[L, H]`). The params fingerprint covers only what changes a trial (`max_new_tokens`, `span_overlap`,
`sink_tokens`, `recent_tokens`). An unreadable trial file, or one not fitting its prompt, is redone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from workbench.core.integrity import atomic_write_text, remove_temps
from workbench.core.paths import cache_dir

FORMAT_VERSION = 1
TRIAL_PARAMS = ("max_new_tokens", "span_overlap", "sink_tokens", "recent_tokens")


def params_fingerprint(params: Any) -> str:
    payload = {"v": FORMAT_VERSION, **{name: getattr(params, name) for name in TRIAL_PARAMS}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _model_dir(model_fingerprint: str, root: Path | None) -> Path:
    return Path(cache_dir() if root is None else root) / model_fingerprint


def log_dir(model_fingerprint: str, prompts_fingerprint: str, params: Any, root: Path | None = None) -> Path:
    """Where the trials of (model, prompt set, trial parameters) are kept."""
    return _model_dir(model_fingerprint, root) / prompts_fingerprint / "retrieval_trials" / params_fingerprint(params)


class TrialLog:
    """Finished trials of one scoring run on disk: `load()` what is there, `save()` each trial as it ends."""

    def __init__(self, directory: Path, inputs: Mapping[str, Any]):
        self.directory = Path(directory)
        self.inputs = dict(inputs)

    @classmethod
    def for_run(cls, info, prompts, params, root: Path | None = None) -> "TrialLog":
        inputs = {"model": info.spec.name, "model_fingerprint": info.fingerprint, "prompt_set": prompts.name,
                  "prompts_fingerprint": prompts.fingerprint, "n_trials": len(prompts),
                  "params": {name: getattr(params, name) for name in TRIAL_PARAMS}, "format_version": FORMAT_VERSION}
        return cls(log_dir(info.fingerprint, prompts.fingerprint, params, root), inputs)

    def path(self, trial: int) -> Path:
        return self.directory / f"trial-{trial:05d}.json"

    def load(self, n_tokens: Sequence[int], shape: tuple[int, int]) -> dict[int, dict]:
        """Finished trials whose file is whole and fits its prompt (`n_tokens[i]` tokens, `[L, H]` heads)."""
        remove_temps(self.directory, only_stale=True)  # temp files of killed writers
        done = {}
        for i, n in enumerate(n_tokens):
            path = self.path(i)
            if not path.is_file():
                continue
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue  # damaged: redone and overwritten
            if _fits(record, i, int(n), shape):
                done[i] = record
        return done

    def save(self, record: Mapping[str, Any]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        inputs = self.directory / "inputs.json"
        if not inputs.exists():
            atomic_write_text(inputs, json.dumps(self.inputs, indent=1, sort_keys=True))
        path = self.path(int(record["trial"]))
        atomic_write_text(path, json.dumps(record))  # key order kept: it is the table's column order
        return path


def earlier_trial(model_fingerprint: str, root: Path | None = None) -> dict | None:
    """The newest decoded trial of any earlier retrieval run of this model (for a time estimate), or None."""
    files = _model_dir(model_fingerprint, root).glob("*/retrieval_trials/*/trial-*.json")
    files = sorted(files, key=_mtime, reverse=True)
    for path in files[:20]:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        row = record.get("row") if isinstance(record, dict) else None
        if record.get("events") is not None and isinstance(row, dict) and isinstance(row.get("n_tokens"), int):
            return record
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _fits(record: Any, trial: int, n_tokens: int, shape: tuple[int, int]) -> bool:
    if not isinstance(record, dict) or record.get("trial") != trial or not isinstance(record.get("row"), dict):
        return False
    if record["row"].get("n_tokens") != n_tokens:
        return False
    if record.get("events") is None:  # a skipped trial: nothing was scored
        return bool(record["row"].get("skipped"))
    grids = (record.get("events"), record.get("stream_sum"))
    rows_ok = all(isinstance(g, list) and len(g) == shape[0] and all(isinstance(r, list) and len(r) == shape[1]
                                                                     for r in g) for g in grids)
    span = record.get("span")
    return rows_ok and isinstance(span, list) and len(span) == 2 and isinstance(record.get("stream_n"), int)


def estimate_seconds(first: Mapping[str, Any], remaining_tokens: Sequence[int]) -> float:
    """Time left from one finished trial: prefill scaled linearly by prompt tokens, decoding as is."""
    row = first["row"]
    prefill, decode, n = float(row.get("prefill_s", 0.0)), float(row.get("decode_s", 0.0)), int(row["n_tokens"])
    return sum(prefill * t / max(n, 1) + decode for t in remaining_tokens)
