"""Hook-name constructors (transformer-lens 4.x bridge names); `validate` checks names against the bridge's
hooks, with a did-you-mean.
"""

from __future__ import annotations

import difflib
from typing import Iterable

from workbench.core.errors import HookError


def _block(layer: int, suffix: str) -> str:
    if not isinstance(layer, int) or layer < 0:
        raise HookError(f"Layer must be a non-negative int, got {layer!r}.")
    return f"blocks.{layer}.{suffix}"


def pattern(layer: int) -> str:
    """Post-softmax attention `[batch, head, q, k]`."""
    return _block(layer, "attn.hook_pattern")


def attn_scores(layer: int) -> str:
    """Pre-softmax, masked attention scores `[batch, head, q, k]`."""
    return _block(layer, "attn.hook_attn_scores")


def z(layer: int) -> str:
    """Per-head attention output before W_O `[batch, pos, head, d_head]`."""
    return _block(layer, "attn.hook_z")


def q(layer: int) -> str:
    return _block(layer, "attn.hook_q")


def k(layer: int) -> str:
    """Keys per KV head (grouped-query attention: fewer than query heads)."""
    return _block(layer, "attn.hook_k")


def v(layer: int) -> str:
    return _block(layer, "attn.hook_v")


def rot_q(layer: int) -> str:
    return _block(layer, "attn.hook_rot_q")


def rot_k(layer: int) -> str:
    return _block(layer, "attn.hook_rot_k")


def attn_out(layer: int) -> str:
    return _block(layer, "hook_attn_out")


def resid_pre(layer: int) -> str:
    return _block(layer, "hook_resid_pre")


def resid_post(layer: int) -> str:
    return _block(layer, "hook_resid_post")


def validate(model, names: Iterable[str]) -> list[str]:
    """Return `names` as a list if the model has every one of them; else raise with suggestions."""
    names = list(names)
    if not names:
        raise HookError("No hook names given; build them with workbench.engine.hooks (e.g. hooks.z(0)).")
    known = model.hook_dict
    bad = [n for n in names if n not in known]
    if bad:
        hints = []
        for name in bad[:5]:
            close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
            hints.append(f"{name!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
        raise HookError(f"The model has no hook {'; '.join(hints)}. `workbench hooks` lists the real names.")
    return names
