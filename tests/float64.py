"""A tiny model in float64 for tests that compare against exact arithmetic (finite differences, back ends).

Hugging Face's Llama RMSNorm computes in float32 whatever its input, so it is replaced by the same formula,
`w · x / sqrt(mean(x²) + ε)`, in the input's own dtype."""

from __future__ import annotations

import types
from contextlib import contextmanager

import torch

from workbench.models.loading import model_info


@contextmanager
def default_float64():
    """Tensors the engine creates (captured z, accumulators) follow torch's default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _rms_norm_in_input_dtype(self, x: torch.Tensor) -> torch.Tensor:
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


def tiny_in_float64():
    """A fresh tiny model (not api.load_model's, which the whole session shares), bridge and twin in float64."""
    from workbench.models.loading import load_model

    with default_float64():
        model = load_model("tiny")
    for root in (model.double(), model_info(model).stream_model.double()):
        for module in root.modules():
            if type(module).__name__.endswith("RMSNorm"):
                module.forward = types.MethodType(_rms_norm_in_input_dtype, module)
    return model
