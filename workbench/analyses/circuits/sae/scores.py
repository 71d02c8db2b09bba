"""Node and edge scores from discrete head codes, and their evaluation (O'Neill & Bui, 2024).

C±_h = codes of head h on positive / negative prompts: node(h) = |C+_h \\ C-_h| (optionally / |C+_h ∪ C-_h|),
softmax over heads at temperature T; edge(i, j) = #code pairs seen together in a positive prompt, never in a
negative, layer(i) < layer(j). Head index = layer * H + head.
"""

from __future__ import annotations

import numpy as np
import torch

from workbench.core.errors import WorkbenchError


def _codes(codes, name: str) -> torch.Tensor:
    codes = torch.as_tensor(codes)
    if codes.ndim != 3 or codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise WorkbenchError(f"{name} must be an integer tensor [N, L, H] (got {codes.dtype} {tuple(codes.shape)})")
    return codes.long()


def _pair(codes_pos, codes_neg) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Validate both code tensors and remap their values to dense ids 0..K-1; returns (pos, neg, K)."""
    pos, neg = _codes(codes_pos, "codes_pos"), _codes(codes_neg, "codes_neg")
    if pos.shape[1:] != neg.shape[1:]:
        raise WorkbenchError(f"codes_pos and codes_neg disagree on [L, H]: {tuple(pos.shape[1:])} vs "
                             f"{tuple(neg.shape[1:])}")
    values, dense = torch.unique(torch.cat([pos.reshape(-1), neg.reshape(-1)]), return_inverse=True)
    return dense[:pos.numel()].reshape(pos.shape), dense[pos.numel():].reshape(neg.shape), values.numel()


def _presence(codes: torch.Tensor, n_codes: int) -> torch.Tensor:
    """[L*H, K] bool: which codes each head takes at least once."""
    flat = codes.reshape(codes.shape[0], codes.shape[1] * codes.shape[2]).T  # [M, N]
    present = torch.zeros(flat.shape[0], n_codes, dtype=torch.bool)
    if flat.numel():
        present.scatter_(1, flat, True)
    return present


def node_scores(codes_pos, codes_neg, normalise: bool = False, temperature: float = 1.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(raw [L, H], softmax over all heads [L, H]), both float64, from codes [Np, L, H] and [Nn, L, H]."""
    if not temperature > 0:
        raise WorkbenchError(f"temperature must be > 0 (got {temperature})")
    pos, neg, n_codes = _pair(codes_pos, codes_neg)
    n_layers, n_heads = pos.shape[1:]
    in_pos, in_neg = _presence(pos, n_codes), _presence(neg, n_codes)
    raw = (in_pos & ~in_neg).sum(dim=1).double()
    if normalise:
        raw = raw / (in_pos | in_neg).sum(dim=1).clamp(min=1)
    soft = torch.softmax(raw / temperature, dim=0)
    return raw.reshape(n_layers, n_heads), soft.reshape(n_layers, n_heads)


def edge_scores(codes_pos, codes_neg) -> torch.Tensor:
    """[L*H, L*H] float: code pairs co-occurring in positives but never in negatives, for layer(i) < layer(j)."""
    pos, neg, n_codes = _pair(codes_pos, codes_neg)
    n_layers, n_heads = pos.shape[1:]
    m = n_layers * n_heads
    out = torch.zeros(m, m)
    layer = torch.arange(m) // n_heads
    src, dst = torch.nonzero(layer[:, None] < layer[None, :], as_tuple=True)
    if src.numel() == 0 or pos.shape[0] == 0:
        return out
    pair_ids = torch.arange(src.numel())

    def keys(codes: torch.Tensor) -> torch.Tensor:  # one int64 per (prompt, head pair): pair id + code pair
        flat = codes.reshape(codes.shape[0], m)
        return (pair_ids * n_codes * n_codes + flat[:, src] * n_codes + flat[:, dst]).reshape(-1).unique()

    seen_pos = keys(pos)
    only_pos = seen_pos[~torch.isin(seen_pos, keys(neg))] if neg.shape[0] else seen_pos
    counts = torch.bincount(only_pos // (n_codes * n_codes), minlength=src.numel())
    out[src, dst] = counts.float()
    return out


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _flat_scores_and_mask(scores, reference_mask) -> tuple[np.ndarray, np.ndarray]:
    s, ref = _numpy(scores).astype(np.float64), _numpy(reference_mask)
    if s.shape != ref.shape:
        raise WorkbenchError(f"scores {s.shape} and reference_mask {ref.shape} differ in shape")
    if not np.all(np.isfinite(s)):
        raise WorkbenchError("scores contain NaN or infinite values")
    return s.reshape(-1), ref.reshape(-1).astype(bool)


def roc_auc(scores, reference_mask) -> float:
    """ROC AUC of scores [L, H] against a boolean reference circuit [L, H] (needs both in- and out-heads)."""
    from sklearn.metrics import roc_auc_score

    s, ref = _flat_scores_and_mask(scores, reference_mask)
    if ref.all() or not ref.any():
        raise WorkbenchError("roc_auc needs a reference with at least one head in and one head out of the circuit "
                             f"(got {int(ref.sum())} of {ref.size} heads in)")
    return float(roc_auc_score(ref, s))


def best_f1(scores, reference_mask) -> tuple[float, float, int]:
    """(best F1, threshold, k) over top-k cut-offs between distinct scores [L, H] vs a reference; ties: smallest k."""
    s, ref = _flat_scores_and_mask(scores, reference_mask)
    if not ref.any():
        raise WorkbenchError("best_f1 needs a reference with at least one head in the circuit")
    order = np.argsort(-s, kind="stable")
    ranked, hits = s[order], np.cumsum(ref[order])
    k = np.arange(1, s.size + 1)
    f1 = 2 * hits / (k + ref.sum())
    valid = np.append(ranked[:-1] > ranked[1:], True)  # cut after position k-1 only at a strict drop
    best = int(np.argmax(np.where(valid, f1, -1.0)))
    return float(f1[best]), float(ranked[best]), best + 1


def norm_difference_baseline(vec_pos, vec_neg) -> torch.Tensor:
    """[L, H]: |mean_pos ||o|| - mean_neg ||o|||, from head outputs [Np, L, H, d] and [Nn, L, H, d]."""
    pos, neg = torch.as_tensor(vec_pos, dtype=torch.float32), torch.as_tensor(vec_neg, dtype=torch.float32)
    if pos.ndim != 4 or neg.ndim != 4 or pos.shape[1:] != neg.shape[1:] or not pos.shape[0] or not neg.shape[0]:
        raise WorkbenchError(f"need non-empty [N, L, H, d] tensors with equal [L, H, d] "
                             f"(got {tuple(pos.shape)} and {tuple(neg.shape)})")
    return (pos.norm(dim=-1).mean(dim=0) - neg.norm(dim=-1).mean(dim=0)).abs()
