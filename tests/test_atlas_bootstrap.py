"""Bootstrap intervals, ranks and top-k stability of the atlas (workbench.atlas.bootstrap), on planted heads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from atlas_data import N_HEADS, N_LAYERS, planted

from workbench.analyses.base import per_prompt_table
from workbench.atlas import bootstrap as bs


def mats_of(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return bs.prompt_matrices(per_prompt_table(values), N_LAYERS, N_HEADS)[1]


def test_planted_head_is_inside_its_interval_and_top_in_95_percent_of_resamples():
    values = planted(n_prompts=40, planted_at=(1, 2))
    mats = mats_of({"score": values})
    stored = values.mean(0).reshape(-1)
    stat = bs.find_statistic("score", stored, mats)
    assert stat == bs.Statistic("score", "mean")
    result = bs.bootstrap(stat, mats, stored, signed=False, n_boot=500, seed=0, top_k=1)
    head = 1 * N_HEADS + 2
    assert result.lo[head] <= stored[head] <= result.hi[head]
    assert result.hi[head] - result.lo[head] < 0.15  # ≈ 4 · 0.1 / √40 = 0.063: the interval is informative
    top_share = (bs.ranks(result.boot, signed=False)[:, head] == 1).mean()
    assert top_share >= 0.95 and result.share_in_topk[head] >= 0.95 and result.topk[head]
    # the interval covers the true mean (1.0) of the planted head: percentile interval of a mean of N(1, 0.1)
    assert result.lo[head] <= 1.0 <= result.hi[head]


def test_a_constant_metric_gives_a_zero_width_interval():
    values = np.full((12, N_LAYERS, N_HEADS), 0.5)
    values[:, 0, 0] = 2.0
    mats = mats_of({"score": values})
    result = bs.bootstrap(bs.Statistic("score", "mean"), mats, values.mean(0).reshape(-1), signed=False, n_boot=200)
    assert np.array_equal(result.lo, result.hi) and np.allclose(result.lo, values[0].reshape(-1))
    assert result.jaccard == 1.0


def test_the_statistic_found_reproduces_the_stored_column_mean_ratio_of_sums_and_sum():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, N_LAYERS, N_HEADS))
    tokens = rng.integers(5, 50, size=(9, N_LAYERS, N_HEADS)).astype(float)
    mats = mats_of({"mean_distance": x, "n_tokens": tokens})
    ratio = ((tokens * x).sum(0) / tokens.sum(0)).reshape(-1)
    stat = bs.find_statistic("score", ratio, mats)
    assert stat == bs.Statistic("mean_distance", "weighted", "n_tokens")
    np.testing.assert_allclose(bs.evaluate(stat, mats, np.ones((1, 9)))[0], ratio, rtol=1e-12)
    assert bs.find_statistic("n_events", x.sum(0).reshape(-1), mats) == bs.Statistic("mean_distance", "sum")
    assert bs.find_statistic("score", np.exp(x[0]).reshape(-1), mats) is None  # a softmax-like column: no interval


def test_nan_prompts_are_left_out_of_a_mean():
    x = np.arange(3 * N_LAYERS * N_HEADS, dtype=float).reshape(3, N_LAYERS, N_HEADS)
    x[0, 0, 0] = np.nan
    mats = mats_of({"score": x})
    full = bs.evaluate(bs.Statistic("score", "mean"), mats, np.ones((1, 3)))[0]
    assert full[0] == np.nanmean(x[:, 0, 0]) and full[1] == x[:, 0, 1].mean()


def test_resampled_statistic_is_the_weighted_mean_of_the_resampled_prompts():
    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(5, N_LAYERS, N_HEADS)), rng.uniform(1, 3, size=(5, N_LAYERS, N_HEADS))
    mats = mats_of({"x": x, "w": w})
    counts = bs.resample_counts(5, 3, seed=4)
    assert counts.shape == (3, 5) and (counts.sum(1) == 5).all()
    got = bs.evaluate(bs.Statistic("x", "weighted", "w"), mats, counts)
    for b in range(3):
        draw = np.repeat(np.arange(5), counts[b].astype(int))
        want = (w[draw] * x[draw]).sum(0) / w[draw].sum(0)
        np.testing.assert_allclose(got[b], want.reshape(-1), rtol=1e-12)


def test_ties_get_average_ranks_and_signed_metrics_rank_by_absolute_value():
    assert bs.ranks(np.array([3.0, 1.0, 3.0, 2.0]), signed=False).tolist() == [1.5, 4.0, 1.5, 3.0]
    assert bs.ranks(np.array([-5.0, 1.0, 3.0, -3.0]), signed=True).tolist() == [1.0, 4.0, 2.5, 2.5]
    assert bs.ranks(np.array([np.nan, 1.0, 2.0]), signed=False).tolist() == [3.0, 2.0, 1.0]  # NaN last
    assert bs.top_mask(np.array([-5.0, 1.0, 3.0]), signed=True, k=2).tolist() == [True, False, True]
    assert bs.top_mask(np.array([1.0, 0.0, 1.0, 1.0]), signed=False, k=2).tolist() == [True, False, True, True]


def test_a_noisy_ranking_is_unstable():
    values = np.random.default_rng(3).normal(0.0, 1.0, size=(6, N_LAYERS, N_HEADS))  # no real differences
    mats = mats_of({"score": values})
    stored = values.mean(0).reshape(-1)
    result = bs.bootstrap(bs.Statistic("score", "mean"), mats, stored, signed=True, n_boot=300, top_k=2)
    assert result.jaccard < 0.8 and result.share_in_topk[result.topk].mean() < 0.9
    assert pd.Series(result.share_in_topk).between(0, 1).all()


@pytest.mark.parametrize("n_boot", [1, 200])
def test_bootstrap_is_seeded(n_boot):
    values = planted(n_prompts=10)
    mats = mats_of({"score": values})
    stored = values.mean(0).reshape(-1)
    a = bs.bootstrap(bs.Statistic("score", "mean"), mats, stored, signed=False, n_boot=n_boot, seed=7)
    b = bs.bootstrap(bs.Statistic("score", "mean"), mats, stored, signed=False, n_boot=n_boot, seed=7)
    assert np.array_equal(a.boot, b.boot)


def test_a_ratio_to_a_per_prompt_normaliser_is_preferred_and_resamples_the_normaliser():
    """Shares normalised by the full-sample gap (head_attribution): their mean reproduces the score, but the ratio
    Σ effect / Σ gap is the statistic whose normaliser moves with the resampled prompts."""
    rng = np.random.default_rng(5)
    effect = rng.normal(0.3, 0.2, size=(20, N_LAYERS, N_HEADS))
    gap = np.broadcast_to(rng.uniform(0.5, 1.5, size=(20, 1, 1)), effect.shape)
    share = effect / gap.mean()
    mats = mats_of({"activation": share, "activation_effect": effect, "gap": gap})
    stored = share.mean(0).reshape(-1)
    stat = bs.find_statistic("activation_score", stored, mats)
    assert stat == bs.Statistic("activation_effect", "ratio", "gap")
    counts = bs.resample_counts(20, 4, seed=1)
    want = (counts @ effect.reshape(20, -1)) / (counts @ gap.reshape(20, -1))
    np.testing.assert_allclose(bs.evaluate(stat, mats, counts), want, rtol=1e-12)


def test_percentiles_match_numpy_with_nan_resamples():
    boot = np.random.default_rng(6).normal(size=(37, 9))
    boot[::3, 2] = np.nan
    boot[:, 4] = np.nan
    boot[:, 5] = 1.5
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        want = np.nanpercentile(boot, [2.5, 97.5], axis=0)
    np.testing.assert_allclose(bs.percentiles(boot, (2.5, 97.5)), want, rtol=1e-12, equal_nan=True)
