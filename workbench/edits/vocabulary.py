"""The edit vocabulary of the CLI, the app and its worker: kind name → label, constructor, parameter names.
Torch-free (the app imports it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from workbench.core.errors import WorkbenchError
from workbench.edits.kinds import AblateHead, AttentionEdit, PatchHead, ScaleHead, UniformAttention


@dataclass(frozen=True)
class Kind:
    label: str  # as the app shows it
    make: Callable  # (heads, *params) -> edit
    params: tuple[str, ...] = ()  # names of the values `make` takes after the heads


KINDS: dict[str, Kind] = {
    "ablate": Kind("ablate (zero)", lambda heads: AblateHead(heads, "zero")),
    "mean-ablate": Kind("ablate (mean)", lambda heads: AblateHead(heads, "mean")),
    "scale": Kind("scale output by α", ScaleHead, ("alpha",)),
    "uniform": Kind("mask (uniform attention)", UniformAttention),
    "reweight": Kind("re-weight keys by α", lambda heads, alpha, keys: AttentionEdit(heads, keys, scale=alpha),
                     ("alpha", "keys")),
    "patch": Kind("patch from source", PatchHead, ("source",)),
}


def kind(name: str) -> Kind:
    if name not in KINDS:
        raise WorkbenchError(f"Unknown edit {name!r}; choose one of {', '.join(KINDS)}.")
    return KINDS[name]


def make_edit(name: str, heads, **values):
    """The edit `name` on `heads`, taking the parameters it names from `values` (others are ignored)."""
    k = kind(name)
    missing = [p for p in k.params if values.get(p) is None]
    if missing:
        raise WorkbenchError(f"Edit {name!r} needs {', '.join(missing)}.")
    return k.make(heads, *(values[p] for p in k.params))
