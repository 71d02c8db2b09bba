"""Circuit overlap, as an analysis-package entry point; the code lives in the torch-free :mod:`workbench.overlap`.

    jaccard = |A ∩ B| / |A ∪ B|        overlap_coefficient = |A ∩ B| / min(|A|, |B|)
    shared_of_a = |A ∩ B| / |A|        spearman = Spearman's ρ of two same-shape score maps over all heads
    layer_profile_spearman = ρ of per-layer max scores on 10 relative-depth bins (maps of any shape)
    difference_map score = pct_A − pct_B (percentile ranks, 0–100)
    chance: |A ∩ B| ~ Hypergeometric(N, |A|, |B|), mean |A|·|B| / N

Importing this module runs ``workbench/analyses/__init__.py`` (which imports torch); torch-free code such
as the app imports :mod:`workbench.overlap` directly.
"""

from __future__ import annotations

from workbench.overlap import chance_p_value, difference_map, layer_profile, overlap, random_overlap_baseline

__all__ = ["overlap", "difference_map", "random_overlap_baseline", "chance_p_value", "layer_profile"]
