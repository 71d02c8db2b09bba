"""Where things live: default directories (each with its variable) and shipped data.

`WORKBENCH_CACHE_DIR` (activations), `WORKBENCH_RESULTS_DIR`, `WORKBENCH_MODEL_CACHE`, `WORKBENCH_CIRCUITS_DIR`
(a checkout's `circuits/`, else the user data dir); `workbench --home DIR` sets all four under DIR.
Shipped read-only data (`data/`, `circuits/`) is packaged as `workbench._data` and `workbench._circuits`.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

APP_NAME = "attention-workbench"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # workbench/ (this file is workbench/core/paths.py)
_ROOT = PACKAGE_DIR.parent
# A source checkout (editable install or PYTHONPATH): the package sits next to pyproject.toml and data/.
SOURCE_ROOT: Path | None = _ROOT if (_ROOT / "pyproject.toml").is_file() and (_ROOT / "data").is_dir() else None
_SHIPPED = {"data": "workbench._data", "circuits": "workbench._circuits"}
_HOME_DIRS = {"WORKBENCH_CACHE_DIR": "cache", "WORKBENCH_RESULTS_DIR": "results", "WORKBENCH_MODEL_CACHE": "models",
              "WORKBENCH_CIRCUITS_DIR": "circuits"}


def shipped(kind: str, *parts: str) -> Path:
    """A shipped file or folder: `shipped("data", "sinks", "first_letter.json")`; kind is "data" or "circuits"."""
    if kind not in _SHIPPED:
        raise ValueError(f"shipped data kind must be one of {sorted(_SHIPPED)}, got {kind!r}")
    if SOURCE_ROOT is not None:
        return SOURCE_ROOT.joinpath(kind, *parts)
    return Path(importlib.resources.files(_SHIPPED[kind]).joinpath("/".join(parts) or "."))


def _user_dir(kind: str) -> Path:
    from platformdirs import user_cache_dir, user_data_dir

    return Path(user_cache_dir(APP_NAME) if kind == "cache" else user_data_dir(APP_NAME))


def _env(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The activation cache: `$WORKBENCH_CACHE_DIR`, else the user's cache dir."""
    return _env("WORKBENCH_CACHE_DIR") or _user_dir("cache") / "activations"


def results_dir() -> Path:
    """The results catalog: `$WORKBENCH_RESULTS_DIR`, else the user's data dir."""
    return _env("WORKBENCH_RESULTS_DIR") or _user_dir("data") / "results"


def model_cache_dir() -> Path:
    """Converted model checkpoints: `$WORKBENCH_MODEL_CACHE`, else the user's cache dir."""
    return _env("WORKBENCH_MODEL_CACHE") or _user_dir("cache") / "models"


def circuits_dir() -> Path:
    """Where circuits are saved: `$WORKBENCH_CIRCUITS_DIR`, the checkout's circuits/, else the user's data dir."""
    env = _env("WORKBENCH_CIRCUITS_DIR")
    if env is not None:
        return env
    return SOURCE_ROOT / "circuits" if SOURCE_ROOT is not None else _user_dir("data") / "circuits"


def set_home(home: Path | str) -> Path:
    """Point every writable directory under `home` (what `--home` does); child processes inherit it."""
    root = Path(home).expanduser().resolve()
    for name, sub in _HOME_DIRS.items():
        os.environ[name] = str(root / sub)
    return root
