"""Spearman agreement between atlas metrics with permutation p-values (workbench.atlas.agreement)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import kstest, spearmanr

from workbench.atlas.agreement import agreement, matrix, spearman_permutation


def test_identical_metrics_agree_with_the_smallest_p_value():
    x = np.random.default_rng(0).normal(size=30)
    rho, p, n = spearman_permutation(x, x.copy(), n_perm=1000, rng=np.random.default_rng(0))
    assert rho == 1.0 and p == 1 / 1001 and n == 30


def test_rho_is_spearman_with_ties_and_nan_heads_dropped():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, size=40).astype(float), rng.normal(size=40)
    a[3] = np.nan
    rho, _, n = spearman_permutation(a, b, n_perm=10)
    ok = ~np.isnan(a)
    assert n == 39 and np.isclose(rho, spearmanr(a[ok], b[ok]).statistic, rtol=1e-12)


def test_independent_metrics_give_uniform_p_values():
    rng = np.random.default_rng(2)
    ps = [spearman_permutation(rng.normal(size=25), rng.normal(size=25), n_perm=1000, rng=rng)[1]
          for _ in range(200)]
    assert kstest(ps, "uniform").pvalue > 0.01
    assert 0.0 <= np.mean(np.array(ps) < 0.05) <= 0.11


def test_constant_metric_has_no_correlation_and_table_is_seeded():
    rng = np.random.default_rng(3)
    keys = pd.DataFrame({"a": rng.normal(size=12), "b": rng.normal(size=12), "c": np.ones(12)})
    table = agreement(keys, n_perm=200, seed=5)
    assert list(zip(table["metric_a"], table["metric_b"], strict=True)) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert table.loc[1, ["spearman", "p_value"]].isna().all()
    pd.testing.assert_frame_equal(table, agreement(keys, n_perm=200, seed=5))
    square = matrix(table)
    assert square.loc["a", "a"] == 1.0 and square.loc["a", "b"] == square.loc["b", "a"] == table.loc[0, "spearman"]
