"""SAECircuitFinder: scikit-learn-style SAE circuit discovery (O'Neill & Bui, 2024).

fit(X_pos [Np, L, H, d], X_neg [Nn, L, H, d]): one discretiser (shared SAE or k-means) codes every (prompt,
head) vector; node and edge scores as in scores.py; circuit = top_k (or top ceil(top_fraction · L · H)) heads.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator

from workbench.analyses.circuits.sae.discretise import KMeansCodebook, SAECodebook
from workbench.analyses.circuits.sae.scores import best_f1, edge_scores, node_scores, roc_auc
from workbench.core.errors import WorkbenchError


def _head_vectors(x, name: str) -> torch.Tensor:
    try:
        x = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError, RuntimeError) as err:
        raise WorkbenchError(f"{name} must be a numeric array of shape [N, L, H, d]: {err}") from err
    if x.dtype == torch.bool or x.dtype.is_complex:
        raise WorkbenchError(f"{name} must hold real numbers (got dtype {x.dtype})")
    if x.ndim != 4:
        raise WorkbenchError(f"{name} must be 4-D [N prompts, L layers, H heads, d] (got shape {tuple(x.shape)})")
    if x.shape[0] < 1:
        raise WorkbenchError(f"{name} is empty: need at least one prompt")
    if min(x.shape[1:]) < 1:
        raise WorkbenchError(f"{name} has an empty layer, head or feature axis (shape {tuple(x.shape)})")
    x = x.float()
    if not torch.isfinite(x).all():
        raise WorkbenchError(f"{name} contains NaN or infinite values")
    return x


class SAECircuitFinder(BaseEstimator):
    """Find the heads whose discretised outputs separate positive from negative prompts."""

    def __init__(self, n_latents: int = 300, l1: float = 0.02, lr: float = 1e-3, epochs: int = 500, seed: int = 0,
                 discretiser: str = "sae", n_codes: int | None = None, normalise: bool = False,
                 top_k: int | None = None, top_fraction: float = 0.1):
        self.n_latents = n_latents
        self.l1 = l1
        self.lr = lr
        self.epochs = epochs
        self.seed = seed
        self.discretiser = discretiser
        self.n_codes = n_codes
        self.normalise = normalise
        self.top_k = top_k
        self.top_fraction = top_fraction

    def _make_discretiser(self):
        if self.discretiser == "sae":
            return SAECodebook(self.n_latents, l1=self.l1, lr=self.lr, epochs=self.epochs, seed=self.seed)
        if self.discretiser == "kmeans":
            n_codes = self.n_latents if self.n_codes is None else self.n_codes
            return KMeansCodebook(n_codes, seed=self.seed)
        raise WorkbenchError(f"discretiser must be 'sae' or 'kmeans' (got {self.discretiser!r})")

    def _circuit_size(self, n_total: int) -> int:
        if self.top_k is not None:
            if int(self.top_k) < 1:
                raise WorkbenchError(f"top_k must be >= 1 (got {self.top_k})")
            return min(int(self.top_k), n_total)
        if not 0 < self.top_fraction <= 1:
            raise WorkbenchError(f"top_fraction must be in (0, 1] (got {self.top_fraction})")
        return min(n_total, max(1, math.ceil(self.top_fraction * n_total)))

    def fit(self, X_pos, X_neg) -> "SAECircuitFinder":
        """Fit on head outputs X_pos [Np, L, H, d] and X_neg [Nn, L, H, d]; returns self."""
        start = time.perf_counter()
        pos, neg = _head_vectors(X_pos, "X_pos"), _head_vectors(X_neg, "X_neg")
        if pos.shape[1:] != neg.shape[1:]:
            raise WorkbenchError(f"X_pos and X_neg disagree on [L, H, d]: {tuple(pos.shape[1:])} vs "
                                 f"{tuple(neg.shape[1:])}")
        n_pos, n_layers, n_heads, d = pos.shape
        n_total = n_layers * n_heads
        k = self._circuit_size(n_total)
        disc = self._make_discretiser()
        stacked = torch.cat([pos.reshape(-1, d), neg.reshape(-1, d)])
        codes = disc.fit(stacked).codes(stacked)
        self.discretiser_ = disc
        self.codes_pos_ = codes[:n_pos * n_total].reshape(n_pos, n_layers, n_heads)
        self.codes_neg_ = codes[n_pos * n_total:].reshape(-1, n_layers, n_heads)
        raw, soft = node_scores(self.codes_pos_, self.codes_neg_, normalise=self.normalise)
        self.raw_node_scores_ = raw.numpy()
        self.node_scores_ = soft.numpy()
        self.edge_scores_ = edge_scores(self.codes_pos_, self.codes_neg_).numpy()
        order = np.argsort(-self.raw_node_scores_.reshape(-1), kind="stable")[:k]  # raw: softmax may underflow
        self.circuit_ = [(int(i) // n_heads, int(i) % n_heads) for i in order]
        self.n_layers_, self.n_heads_ = n_layers, n_heads
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def score(self, reference_mask) -> dict[str, float]:
        """{'roc_auc', 'best_f1'} of the raw node scores (no softmax underflow ties) vs a reference [L, H]."""
        if not hasattr(self, "raw_node_scores_"):
            raise WorkbenchError("SAECircuitFinder is not fitted: call fit(X_pos, X_neg) first")
        return {"roc_auc": roc_auc(self.raw_node_scores_, reference_mask),
                "best_f1": best_f1(self.raw_node_scores_, reference_mask)[0]}
