"""Devices and dtypes: parse `--device` / `--dtype`, say clearly what is not available.

`device`: auto (CUDA, else MPS, else CPU) | cpu | cuda | cuda:N | mps | map (accelerate's `device_map="auto"`).
`dtype`: float32 | bfloat16 | float16 (reducers and softmax accumulate in float32 regardless).
"""

from __future__ import annotations

import functools
import inspect
import re

import torch

from workbench.core.errors import DeviceError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps, map"
ACCUMULATE = torch.float32  # reductions that decide a ranking


def resolve_dtype(name: str) -> torch.dtype:
    """`"bfloat16"` -> `torch.bfloat16`; anything else named is refused with the choices."""
    if name not in DTYPES:
        raise DeviceError(f"Unknown dtype {name!r}; choose one of {', '.join(DTYPES)}.")
    return DTYPES[name]


def available_devices() -> list[str]:
    """What this machine offers, e.g. `['cpu', 'cuda:0', 'cuda:1']`."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def resolve_device(name: str) -> str:
    """A concrete torch device string ("cpu", "cuda:0", "mps") or "map"; one clear error otherwise."""
    text = str(name).strip().lower()
    have = available_devices()
    if text == "auto":
        return next((d for d in have if d != "cpu"), "cpu")
    if text == "cpu":
        return "cpu"
    if text == "map":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device map spreads a model over GPUs, but CUDA is not available here "
                              f"(torch {torch.__version__}); available: {', '.join(have)}.")
        return "map"
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match:
        if not torch.cuda.is_available():
            raise DeviceError(f"CUDA is not available on this machine (torch {torch.__version__}); "
                              f"available: {', '.join(have)}.")
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"No GPU cuda:{index}; available: {', '.join(have)}.")
        return f"cuda:{index}"
    if text == "mps":
        if "mps" not in have:
            raise DeviceError(f"Apple MPS is not available on this machine; available: {', '.join(have)}.")
        return "mps"
    raise DeviceError(f"Unknown device {name!r}; choose one of {DEVICE_CHOICES}.")


def cache_kwargs(cache) -> dict:
    """The KV-cache keyword of the installed transformers (`cache`; `past_key_values` before it)."""
    return {_cache_keyword(): cache}


@functools.cache
def _cache_keyword() -> str:
    from transformers import LlamaModel

    return "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


def output_cache(output):
    """The KV cache an HF model output returned, without the deprecated attribute when avoidable."""
    return output.cache if _cache_keyword() == "cache" else output.past_key_values
