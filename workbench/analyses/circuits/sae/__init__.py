"""SAE-based circuit discovery (O'Neill & Bui, 2024) on given per-prompt, per-head output vectors: no model, no
prompts. One shared discretiser codes each vector; heads whose codes separate the classes score high.
"""

from workbench.analyses.circuits.sae.autoencoder import SparseAutoencoder, train_sae
from workbench.analyses.circuits.sae.discretise import KMeansCodebook, SAECodebook
from workbench.analyses.circuits.sae.estimator import SAECircuitFinder
from workbench.analyses.circuits.sae.scores import best_f1, edge_scores, node_scores, norm_difference_baseline, roc_auc

__all__ = [
    "KMeansCodebook",
    "SAECircuitFinder",
    "SAECodebook",
    "SparseAutoencoder",
    "best_f1",
    "edge_scores",
    "node_scores",
    "norm_difference_baseline",
    "roc_auc",
    "train_sae",
]
