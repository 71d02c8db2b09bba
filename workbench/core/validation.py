"""Numbers and output paths checked at the edges (CLI options, analysis parameters, batch plan cells).

One table of rules keyed by parameter name serves every edge, so `--n-tokens`, `-p n_tokens=…` and a plan's
`n_tokens = …` obey the same range. A number must be finite, of the declared type (an int given 16.5 is
refused, not truncated) and inside its range; names without a rule get: ints ≥ 0, floats finite. A rule
scoped to one command or analysis (`"repair.n_prompts"`) wins over the plain name. Torch-free, so the app
can reuse it.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.errors import InputError


@dataclass(frozen=True)
class Range:
    """An interval; `None` means unbounded, `*_open` excludes the bound."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, x: float) -> bool:
        lo_ok = self.lo is None or (x > self.lo if self.lo_open else x >= self.lo)
        hi_ok = self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)
        return lo_ok and hi_ok

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return ""


ANY = Range()
COUNT = Range(1)
NON_NEGATIVE = Range(0)
SHARE = Range(0, 1)
POSITIVE = Range(0, lo_open=True)

RULES: dict[str, Range] = {
    # prompts, tokens, traces
    "n_prompts": COUNT, "n_tokens": Range(2), "ppl_prompts": NON_NEGATIVE, "ppl_tokens": Range(2),
    "n_problems": COUNT, "n_examples": COUNT, "max_new_tokens": COUNT, "window": COUNT, "examples": NON_NEGATIVE,
    "depths": COUNT, "n_depths": COUNT, "half_len": Range(2), "n_positions": COUNT, "holdout_every": Range(2),
    # how many heads, rows, candidates
    "top": COUNT, "top_k": COUNT, "k": COUNT, "max_candidates": COUNT, "max_heads": COUNT, "coupling_k": COUNT,
    "top_fraction": Range(0, 1, lo_open=True), "full_share": Range(0, 1, hi_open=True),
    "min_queries": COUNT, "min_future": NON_NEGATIVE,
    # randomness
    "seed": NON_NEGATIVE, "seeds": COUNT, "n_random": COUNT, "n_shuffles": COUNT, "boot": COUNT, "bins": COUNT,
    # thresholds and quantiles
    "epsilon": SHARE, "hidden_threshold": SHARE, "threshold": SHARE, "span_overlap": SHARE,
    "split_quantile": SHARE, "peak_quantile": SHARE, "anchor_quantile": SHARE,
    "held_out": Range(0, 1, lo_open=True, hi_open=True), "uniform_ratio": POSITIVE,
    # edits: scale factors may be negative (a flipped head), attention scales may not
    "alpha": ANY, "bias": ANY, "scale": NON_NEGATIVE, "gamma": POSITIVE, "beta": POSITIVE,
    # KV budget
    "sink": NON_NEGATIVE, "recent": COUNT, "sink_tokens": NON_NEGATIVE, "recent_tokens": COUNT,
    # training
    "epochs": NON_NEGATIVE, "n_latents": COUNT, "l1": NON_NEGATIVE,
    # processes
    "workers": COUNT, "port": Range(1, 65535), "width": Range(800, 3000),
    # scoped: one command or analysis
    "repair.n_prompts": Range(4), "mask.k": NON_NEGATIVE,  # mask: k = 0 means 5 % of the heads
}


def rule_for(name: str, scope: str | None = None, kind: type = float) -> Range:
    """The range for parameter `name` (in command or analysis `scope`): scoped rule, plain rule, default."""
    if scope and f"{scope}.{name}" in RULES:
        return RULES[f"{scope}.{name}"]
    return RULES.get(name, NON_NEGATIVE if kind is int else ANY)


def describe(name: str, kind: type, scope: str | None = None) -> str:
    """'an integer >= 1', 'a finite number in [0, 1]' …"""
    what = "an integer" if kind is int else "a finite number"
    bounds = rule_for(name, scope, kind).describe()
    return f"{what} {bounds}" if bounds else what


def check_number(name: str, value: Any, kind: type, *, scope: str | None = None, label: str | None = None):
    """`value` as `kind` (int or float) if it is one, finite and in range; else an InputError naming `label`."""
    label = label or name
    ok_type = not isinstance(value, bool) and isinstance(value, int if kind is int else (int, float))
    if not (ok_type and math.isfinite(value) and rule_for(name, scope, kind).contains(value)):
        raise InputError(f"{label} must be {describe(name, kind, scope)}; got {value!r}.")
    return float(value) if kind is float else value


def parse_number(name: str, text: str, kind: type, *, scope: str | None = None, label: str | None = None):
    """Parse `text` as `kind` ('16.5' is not an int) and check it like check_number."""
    label = label or name
    try:
        value = kind(text.strip())
    except ValueError:
        raise InputError(f"{label}={text!r} is not a valid {kind.__name__}; it must be "
                         f"{describe(name, kind, scope)}.") from None
    return check_number(name, value, kind, scope=scope, label=label)


def parse_int_list(text: str, label: str, *, lo: int = 0) -> tuple[int, ...]:
    """'0,1' → (0, 1); each an integer >= lo."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"{label} must be comma-separated integers, e.g. '0,1'; got {text!r}.") from None
    if any(v < lo for v in values):
        raise InputError(f"{label} must be comma-separated integers >= {lo}; got {text!r}.")
    return values


def check_output_path(path: str | Path, label: str, kind: str = "file") -> Path:
    """Fail now, before any work, if `path` (a file, or a directory when kind='dir') cannot be written."""
    path = Path(path).expanduser()
    if path.exists():
        if kind == "dir" and not path.is_dir():
            raise InputError(f"{label} {path} is a file; give a directory.")
        if kind == "file" and path.is_dir():
            raise InputError(f"{label} {path} is a directory; give a file name, e.g. {path / 'out.html'}.")
        if path.is_file() and not os.access(path, os.W_OK):
            raise InputError(f"{label} {path} is not writable; choose another path.")
        folder = path if path.is_dir() else path.parent
    else:
        folder = next(p for p in [path.parent, *path.parent.parents] if p.exists() or p == Path(p.anchor))
        if not folder.is_dir():
            raise InputError(f"{label} {path} cannot be created: {folder} is not a directory.")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".workbench-write-check-"):
            pass
    except OSError as exc:
        raise InputError(f"{label} {path} cannot be written ({exc.strerror or exc}); choose a writable "
                         "location.") from None
    return path


_BOOLS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


_RANGE = re.compile(r"\s*(\d+)\s*-\s*(\d+)\s*")


def _tuple_items(label: str, value: Any, item: type) -> list:
    """'500,2000', '20-22,25' (int ranges, low-high) or a list/tuple → a list of raw items ('' → none)."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if not isinstance(value, str):
        return [value]  # one item
    parts = [part.strip() for part in value.split(",")] if value.strip() else []
    if item is not int:
        return parts
    out = []
    for part in parts:
        match = _RANGE.fullmatch(part)
        lo, hi = (int(match[1]), int(match[2])) if match else (None, None)
        if match and hi < lo:
            raise InputError(f"{label} range {part!r} runs backwards; write low-high, e.g. '20-29'.")
        out.extend(range(lo, hi + 1) if match else [part])
    return out


def coerce_param(scope: str, name: str, value: Any, kind: Any):
    """One analysis parameter from a string (CLI, app) or a typed value (plan, API) to `kind`, checked.
    `tuple[int, ...]` / `tuple[float, ...]` / `tuple[str, ...]` take '500,2000' (ints also '20-29') or a list;
    each item is checked like a single parameter of that name."""
    label = f"{scope}: parameter {name}"
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{label}: only tuple[X, ...] parameters are supported, not {kind}.")
        return tuple(coerce_param(scope, name, item, args[0]) for item in _tuple_items(label, value, args[0]))
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
        raise InputError(f"{label}={value!r} is not a valid bool; use true or false.")
    if kind is int or kind is float:
        if isinstance(value, str):
            return parse_number(name, value, kind, scope=scope, label=label)
        return check_number(name, value, kind, scope=scope, label=label)
    if kind is str and not isinstance(value, str):
        raise InputError(f"{label} must be a string; got {value!r}.")
    return value


DTYPE_NAMES = ("float32", "bfloat16", "float16")


def check_device_names(device: str, dtype: str) -> None:
    """Refuse a misspelt --device / --dtype without importing torch (whether the device exists is checked
    where the model loads)."""
    if dtype not in DTYPE_NAMES:
        raise InputError(f"Unknown --dtype {dtype!r}; choose one of {', '.join(DTYPE_NAMES)}.")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps|map", str(device).strip().lower()):
        raise InputError(f"Unknown --device {device!r}; choose one of auto, cpu, cuda, cuda:N, mps, map.")
