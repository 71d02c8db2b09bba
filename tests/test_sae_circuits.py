"""SAE circuit discovery (analyses/circuits/sae): a planted-head case, determinism, hand-built scores, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.analyses.circuits.sae import (
    KMeansCodebook,
    SAECircuitFinder,
    SAECodebook,
    best_f1,
    edge_scores,
    node_scores,
    norm_difference_baseline,
    roc_auc,
    train_sae,
)
from workbench.core.errors import WorkbenchError

L, H, D, N = 4, 3, 8, 10
PLANTED = (2, 1)
FAST = dict(n_latents=32, epochs=200)


def planted_data(seed: int = 3, sigma: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Every head = its own mean + small noise in both classes; L2H1's positives sit on 5 far-off clusters."""
    g = torch.Generator().manual_seed(seed)
    means = 3 * torch.randn(L, H, D, generator=g)
    pos = means + sigma * torch.randn(N, L, H, D, generator=g)
    neg = means + sigma * torch.randn(N, L, H, D, generator=g)
    pos[:, PLANTED[0], PLANTED[1]] += 8 * torch.eye(D)[torch.arange(N) % 5]
    return pos, neg


def planted_mask() -> np.ndarray:
    mask = np.zeros((L, H), dtype=bool)
    mask[PLANTED] = True
    return mask


@pytest.mark.parametrize("discretiser", ["sae", "kmeans"])
def test_planted_head_is_found(discretiser):
    pos, neg = planted_data()
    finder = SAECircuitFinder(discretiser=discretiser, top_k=1, **FAST).fit(pos, neg)
    assert finder.node_scores_.shape == (L, H) and finder.edge_scores_.shape == (L * H, L * H)
    assert np.unravel_index(np.argmax(finder.node_scores_), (L, H)) == PLANTED
    assert finder.circuit_ == [PLANTED]
    assert finder.codes_pos_.shape == (N, L, H) and finder.codes_neg_.shape == (N, L, H)
    assert (finder.n_layers_, finder.n_heads_) == (L, H) and finder.fit_seconds_ > 0
    assert np.isclose(finder.node_scores_.sum(), 1.0)
    scores = finder.score(planted_mask())
    assert scores["roc_auc"] == 1.0 and scores["best_f1"] == 1.0


def test_fit_is_deterministic_and_leaves_global_rng_alone():
    pos, neg = planted_data()
    state = torch.get_rng_state()
    a = SAECircuitFinder(seed=7, **FAST).fit(pos, neg)
    b = SAECircuitFinder(seed=7, **FAST).fit(pos.numpy(), neg.numpy())
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(a.node_scores_, b.node_scores_) and np.array_equal(a.edge_scores_, b.edge_scores_)
    assert torch.equal(a.codes_pos_, b.codes_pos_) and torch.equal(a.codes_neg_, b.codes_neg_)
    SAECircuitFinder(seed=8, **FAST).fit(pos, neg)  # another seed runs; it may or may not agree


def test_training_does_not_depend_on_the_thread_count():
    """1 thread (a Ray worker) and 2 threads (a notebook) train bit-identical SAEs; the count is restored."""
    x = torch.randn(1000, 128, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.1, 10, 128)
    before = torch.get_num_threads()
    weights = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model, _ = train_sae(x, n_latents=64, epochs=10, seed=0)
            weights.append(model.W_enc.detach().clone())
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert torch.equal(weights[0], weights[1])


def test_sae_standardises_inputs_and_losses_fall():
    x = planted_data()[0].reshape(-1, D)
    model, losses = train_sae(x, n_latents=16, epochs=150, seed=1)
    scaled, _ = train_sae(1000 * x + 5, n_latents=16, epochs=150, seed=1)
    assert len(losses) == 150 and losses[-1] < losses[0]
    assert torch.allclose(model.normalise(x), scaled.normalise(1000 * x + 5), atol=1e-4)
    same = (model.encode(x).argmax(1) == scaled.encode(1000 * x + 5).argmax(1)).float().mean()
    assert same > 0.95


def test_codebooks_share_the_interface():
    x = planted_data()[0].reshape(-1, D)
    for book in (SAECodebook(n_latents=16, epochs=50), KMeansCodebook(n_codes=500)):
        codes = book.fit(x).codes(x)
        assert codes.dtype == torch.long and codes.shape == (x.shape[0],)
    assert book.kmeans_.n_clusters == len(np.unique(x.numpy(), axis=0))  # clipped to distinct samples
    with pytest.raises(RuntimeError, match="not fitted"):
        KMeansCodebook(4).codes(x)


def test_node_scores_by_hand():
    pos = torch.tensor([[[1, 7]], [[2, 7]]])  # [Np=2, L=1, H=2]: head 0 takes {1, 2}, head 1 takes {7}
    neg = torch.tensor([[[2, 7]], [[2, 8]]])  # head 0 takes {2}, head 1 takes {7, 8}
    raw, soft = node_scores(pos, neg)
    assert raw.tolist() == [[1.0, 0.0]]
    assert torch.allclose(soft, torch.softmax(raw.reshape(-1), 0).reshape(1, 2))
    raw_n, _ = node_scores(pos, neg, normalise=True)
    assert raw_n.tolist() == [[0.5, 0.0]]
    _, hot = node_scores(pos, neg, temperature=0.01)
    assert hot[0, 0] > 0.999


def test_edge_scores_by_hand():
    # heads: 0=L0H0, 1=L0H1, 2=L1H0, 3=L1H1; only (L0H0 -> L1H0) has a positive-only pair, (2, 5)
    pos = torch.tensor([[[1, 0], [5, 0]], [[2, 0], [5, 0]]])
    neg = torch.tensor([[[1, 0], [5, 0]], [[2, 0], [6, 0]]])
    edges = edge_scores(pos, neg)
    expected = torch.zeros(4, 4)
    expected[0, 2] = 1.0
    assert torch.equal(edges, expected)


def test_edge_scores_cover_each_pair_of_a_full_size_model_once():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randint(0, 300, (50, 30, 9), generator=g), torch.randint(0, 300, (50, 30, 9), generator=g)
    edges = edge_scores(pos, neg)
    assert edges.shape == (270, 270) and torch.all(edges.tril() == 0)


def test_best_f1_and_roc_auc_by_hand():
    scores = torch.tensor([[0.9, 0.8], [0.1, 0.5]])
    ref = np.array([[True, False], [False, True]])
    assert roc_auc(scores, ref) == pytest.approx(0.75)
    f1, threshold, k = best_f1(scores, ref)
    assert (f1, threshold, k) == (pytest.approx(0.8), pytest.approx(0.5), 3)
    assert best_f1([1.0, 1.0, 0.0], [True, False, False]) == (pytest.approx(2 / 3), 1.0, 2)  # ties are not split
    with pytest.raises(ValueError, match="at least one head in and one head out"):
        roc_auc(scores, np.ones((2, 2), dtype=bool))
    with pytest.raises(WorkbenchError, match="differ in shape"):
        roc_auc(scores, np.ones(3, dtype=bool))


def test_norm_difference_baseline():
    pos, neg = torch.zeros(2, 1, 2, 3), torch.zeros(3, 1, 2, 3)
    pos[:, 0, 1, 0] = 4.0
    neg[:, 0, 0, 1] = 1.0
    assert norm_difference_baseline(pos, neg).tolist() == [[1.0, 4.0]]


def test_params_and_circuit_size():
    finder = SAECircuitFinder(top_fraction=0.25, **FAST)
    assert finder.get_params()["n_latents"] == 32
    assert finder.set_params(discretiser="kmeans", n_codes=8).get_params()["discretiser"] == "kmeans"
    assert len(finder.fit(*planted_data()).circuit_) == 3  # ceil(0.25 * 12)


@pytest.mark.parametrize(
    ("pos", "neg", "message"),
    [
        (torch.zeros(2, L, H, D), torch.zeros(2, L, H + 1, D), "disagree"),
        (torch.zeros(2, L, H, D), torch.zeros(0, L, H, D), "X_neg is empty"),
        (torch.full((2, L, H, D), float("nan")), torch.zeros(2, L, H, D), "NaN"),
        (torch.zeros(2, L, H), torch.zeros(2, L, H), "4-D"),
    ],
)
def test_bad_input(pos, neg, message):
    with pytest.raises(WorkbenchError, match=message):
        SAECircuitFinder(**FAST).fit(pos, neg)


def test_bad_settings():
    pos, neg = planted_data()
    with pytest.raises(WorkbenchError, match="discretiser"):
        SAECircuitFinder(discretiser="pca").fit(pos, neg)
    with pytest.raises(WorkbenchError, match="top_k"):
        SAECircuitFinder(top_k=0).fit(pos, neg)
    with pytest.raises(WorkbenchError, match="not fitted"):
        SAECircuitFinder().score(planted_mask())
