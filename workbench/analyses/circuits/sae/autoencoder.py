"""A one-layer sparse autoencoder over head output vectors (O'Neill & Bui, 2024).

x̂ = (x - μ) / σ (μ per feature, one global σ), z = ReLU(x̂ W_enc + b_enc), r = z W_dec + b_dec,
loss = MSE(r, x̂) + l1 · mean_batch Σ_k |z_k|. Deterministic under `seed` (a local torch.Generator; the global
RNG is untouched) and on one thread, so the codes do not depend on torch's thread count.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from workbench.core.errors import WorkbenchError


def standardisation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-feature mean [d], one global std scalar) of x [N, d]; a constant input gets std 1."""
    mean = x.mean(dim=0)
    std = (x - mean).pow(2).mean().sqrt()
    if not torch.isfinite(std) or std <= 0:
        std = torch.ones((), dtype=x.dtype)
    return mean, std


@contextmanager
def one_thread():
    """Run the block with torch on one intra-op thread (fixed summation order), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> nn.Parameter:
    return nn.Parameter((torch.rand(shape, generator=generator) * 2 - 1) * bound)


class SparseAutoencoder(nn.Module):
    """ReLU encoder with bias, linear decoder with bias; inputs are standardised by stored (mean, std)."""

    def __init__(self, d_in: int, n_latents: int, generator: torch.Generator | None = None):
        super().__init__()
        if d_in < 1 or n_latents < 1:
            raise WorkbenchError(f"d_in and n_latents must be >= 1 (got {d_in}, {n_latents})")
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.d_in, self.n_latents = d_in, n_latents
        self.W_enc = _uniform((d_in, n_latents), 1 / math.sqrt(d_in), g)
        self.b_enc = _uniform((n_latents,), 1 / math.sqrt(d_in), g)
        self.W_dec = _uniform((n_latents, d_in), 1 / math.sqrt(n_latents), g)
        self.b_dec = _uniform((d_in,), 1 / math.sqrt(n_latents), g)
        self.register_buffer("mean", torch.zeros(d_in))
        self.register_buffer("std", torch.ones(()))

    def set_normalisation(self, x: torch.Tensor) -> None:
        """Store the standardisation of x [N, d] on the module."""
        mean, std = standardisation(x)
        self.mean.copy_(mean)
        self.std.copy_(std)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents z [N, n_latents] of raw (unstandardised) inputs x [N, d]."""
        return torch.relu(self.normalise(x) @ self.W_enc + self.b_enc)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction in standardised space, latents)."""
        z = self.encode(x)
        return z @ self.W_dec + self.b_dec, z

    def loss(self, x: torch.Tensor, l1: float) -> torch.Tensor:
        recon, z = self(x)
        return nn.functional.mse_loss(recon, self.normalise(x)) + l1 * z.abs().sum(dim=1).mean()


def train_sae(x: torch.Tensor, n_latents: int = 300, l1: float = 0.02, lr: float = 1e-3, epochs: int = 500,
              seed: int = 0, batch_size: int | None = None, progress: bool = False
              ) -> tuple[SparseAutoencoder, list[float]]:
    """Train a SparseAutoencoder on x [N, d] with Adam; returns (model in eval mode, mean loss per epoch)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim != 2 or x.shape[0] < 1:
        raise WorkbenchError(f"x must be a non-empty [N, d] matrix (got shape {tuple(x.shape)})")
    if epochs < 0 or l1 < 0 or lr <= 0:
        raise WorkbenchError(f"need epochs >= 0, l1 >= 0, lr > 0 (got {epochs}, {l1}, {lr})")
    with one_thread():
        return _train(x, n_latents, l1, lr, epochs, seed, batch_size, progress)


def _train(x, n_latents, l1, lr, epochs, seed, batch_size, progress) -> tuple[SparseAutoencoder, list[float]]:
    g = torch.Generator().manual_seed(int(seed))
    model = SparseAutoencoder(x.shape[1], n_latents, generator=g)
    model.set_normalisation(x)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    n = x.shape[0]
    batch = n if batch_size is None else max(1, min(int(batch_size), n))
    epoch_iter = range(epochs)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="SAE", unit="epoch")
    losses: list[float] = []
    model.train()
    for _ in epoch_iter:
        order = torch.randperm(n, generator=g) if batch < n else torch.arange(n)
        total = 0.0
        for start in range(0, n, batch):
            rows = x[order[start:start + batch]]
            loss = model.loss(rows, l1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * rows.shape[0]
        losses.append(total / n)
    return model.eval(), losses
