"""Discretisers (O'Neill & Bui, 2024): `fit(x [N, d]) -> self`, `codes(x [N, d]) -> LongTensor[N]`.

SAECodebook: argmax_k z_k of a shared SAE; silent vectors (all z = 0) get code `n_latents`.
KMeansCodebook: nearest k-means centroid (the paper's clustering baseline).
"""

from __future__ import annotations

import numpy as np
import torch

from workbench.analyses.circuits.sae.autoencoder import SparseAutoencoder, one_thread, train_sae
from workbench.core.errors import WorkbenchError


def _as_matrix(x) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim != 2 or x.shape[0] < 1:
        raise WorkbenchError(f"expected a non-empty [N, d] matrix (got shape {tuple(x.shape)})")
    return x


class SAECodebook:
    """Code = index of the largest latent of a sparse autoencoder trained on all vectors."""

    def __init__(self, n_latents: int = 300, l1: float = 0.02, lr: float = 1e-3, epochs: int = 500, seed: int = 0,
                 batch_size: int | None = None):
        self.n_latents, self.l1, self.lr, self.epochs, self.seed = n_latents, l1, lr, epochs, seed
        self.batch_size = batch_size
        self.model_: SparseAutoencoder | None = None
        self.losses_: list[float] = []

    def fit(self, x) -> "SAECodebook":
        self.model_, self.losses_ = train_sae(_as_matrix(x), n_latents=self.n_latents, l1=self.l1, lr=self.lr,
                                              epochs=self.epochs, seed=self.seed, batch_size=self.batch_size)
        return self

    def codes(self, x) -> torch.Tensor:
        if self.model_ is None:
            raise RuntimeError("SAECodebook is not fitted: call fit(x) first")
        with torch.no_grad(), one_thread():
            z = self.model_.encode(_as_matrix(x))
        code = z.argmax(dim=1)
        return torch.where(z.amax(dim=1) > 0, code, torch.full_like(code, self.n_latents)).long()


class KMeansCodebook:
    """Code = k-means cluster (n_init=10, random_state=seed); n_codes is clipped to the distinct samples."""

    def __init__(self, n_codes: int = 300, seed: int = 0):
        self.n_codes, self.seed = n_codes, seed
        self.kmeans_ = None

    def fit(self, x) -> "KMeansCodebook":
        from sklearn.cluster import KMeans

        if self.n_codes < 1:
            raise WorkbenchError(f"n_codes must be >= 1 (got {self.n_codes})")
        data = _as_matrix(x).numpy()
        k = min(int(self.n_codes), len(np.unique(data, axis=0)))
        self.kmeans_ = KMeans(n_clusters=k, n_init=10, random_state=self.seed).fit(data)
        return self

    def codes(self, x) -> torch.Tensor:
        if self.kmeans_ is None:
            raise RuntimeError("KMeansCodebook is not fitted: call fit(x) first")
        return torch.from_numpy(self.kmeans_.predict(_as_matrix(x).numpy())).long()
