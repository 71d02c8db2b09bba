"""Attention sinks: metrics on hand-built patterns, reducers vs full patterns, negative control, SmolLM2."""

from __future__ import annotations

import pytest
import torch

from workbench.analyses.attention_sinks.report import (
    ReportParams,
    bos_layer_range,
    massive_dims,
    massive_entries,
    secondary_sinks,
    sink_report,
)
from workbench.analyses.attention_sinks.score import (
    Params,
    column_importance,
    head_summary,
    hidden_sinks,
    prompt_alphas,
    sink_rate,
    uniform_alpha,
)
from workbench.core.prompts import PromptSet, tokenize
from workbench.engine import hooks as H
from workbench.engine.reducers import ReducerRequest, stats_from_patterns
from workbench.engine.residual import sink_forward, stats_from_hidden
from workbench.models.loading import model_info

# A hand-built 4-token causal pattern: rows sum to one.
PATTERN = torch.tensor([[1.0, 0.0, 0.0, 0.0],
                        [0.5, 0.5, 0.0, 0.0],
                        [0.5, 0.25, 0.25, 0.0],
                        [0.4, 0.2, 0.2, 0.2]])
ALPHA = torch.tensor([2.4 / 4, 0.95 / 3, 0.45 / 2, 0.2 / 1])


def test_column_importance_from_reducer_column_sums():
    stats = stats_from_patterns({0: PATTERN[None, None]}, ReducerRequest(column_sums=True))
    torch.testing.assert_close(column_importance(stats.col_sum[0, 0, 0]), ALPHA)


def test_sink_rate_counts_prompt_layer_head_triples_above_epsilon():
    a = torch.zeros(2, 3, 5)  # [L, H, T]
    a[0, 0, 0], a[1, 2, 0], a[0, 1, 0] = 0.9, 0.31, 0.3  # exactly ε is not a sink
    b = torch.zeros(2, 3, 5)
    b[..., 0] = 0.5  # every head
    assert sink_rate([a], 0.3) == pytest.approx(2 / 6)
    assert sink_rate([a, b], 0.3) == pytest.approx(8 / 12)


def test_hidden_sinks_exclude_the_first_sink_and_rarely_seen_keys():
    alpha = torch.tensor([[0.6, 0.05, 0.2, 0.15, 0.5],   # BOS sink, then keys 2, 3 (and 4: seen by one query)
                          [0.05, 0.3, 0.2, 0.0, 0.0],    # no BOS sink: the first sink is key 1
                          [0.05, 0.05, 0.05, 0.05, 0.05]])
    assert hidden_sinks(alpha, 0.1, 1).nonzero().tolist() == [[0, 2], [0, 3], [0, 4], [1, 2]]
    assert hidden_sinks(alpha, 0.1, 2).nonzero().tolist() == [[0, 2], [0, 3], [1, 2]]
    summary = head_summary([alpha[None]], Params(epsilon=0.3, hidden_threshold=0.1, min_queries=2, uniform_ratio=0.0))
    assert summary["sink_rate"][0].tolist() == [1.0, 0.0, 0.0]
    assert summary["n_hidden_sinks"][0].tolist() == [2.0, 1.0, 0.0]
    assert summary["max_hidden_alpha"][0].tolist() == pytest.approx([0.2, 0.2, 0.0])


def test_uniform_baseline_keeps_early_keys_of_uniform_heads_out():
    t = 16
    uniform = torch.tril(torch.ones(t, t)) / torch.arange(1, t + 1)[:, None]
    alpha = column_importance(uniform.sum(0))
    torch.testing.assert_close(alpha, uniform_alpha(t))
    assert uniform_alpha(2).tolist() == pytest.approx([0.75, 0.5])
    assert hidden_sinks(alpha, 0.1, 4).any()  # early keys pass the bare 0.1 threshold ...
    assert not hidden_sinks(alpha, 0.1, 4, uniform_ratio=3.0).any()  # ... but not 3 × uniform
    spiked = alpha.clone()
    spiked[5] = 0.5
    assert hidden_sinks(spiked, 0.1, 4, uniform_ratio=3.0).nonzero().flatten().tolist() == [5]


def test_streaming_alpha_matches_full_patterns(tiny):
    prompts = PromptSet.from_texts("sink-ref", ["The cat sat on the mat, and then it slept for a while."])
    alpha = prompt_alphas(tiny, prompts, progress=False)[0]
    ids = torch.tensor(tokenize(tiny, prompts))
    info = model_info(tiny)
    _, cache = tiny.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_pattern"))
    patterns = {layer: cache[H.pattern(layer)] for layer in range(info.n_layers)}
    ref = stats_from_patterns(patterns, ReducerRequest(column_sums=True))
    torch.testing.assert_close(alpha, column_importance(ref.col_sum[0].float()), atol=1e-5, rtol=1e-4)


def test_residual_reductions_match_full_hidden_states(tiny):
    info = model_info(tiny)
    ids = tokenize(tiny, PromptSet.from_texts("res-ref", ["Hidden states, norms and cosines."]))[0]
    _, res = sink_forward(tiny, ids, ReducerRequest(row_argmax=False, column_sums=True, distance=False))
    with torch.inference_mode():
        out = info.stream_model.model(torch.tensor([ids]), output_hidden_states=True)
    # hidden_states[l + 1] is the output of layer l, except the last one, which is after the final norm
    full = [*out.hidden_states[1:-1]]
    ref = stats_from_hidden(full)
    n = len(full)
    for name in ("norm", "cos_bos", "dim_max", "median_abs", "top_value"):
        torch.testing.assert_close(getattr(res, name)[:n], getattr(ref, name), atol=1e-4, rtol=1e-4)
    assert torch.equal(res.top_dim[:n], ref.top_dim) and torch.equal(res.top_pos[:n], ref.top_pos)
    assert torch.allclose(res.cos_bos[:, 0], torch.ones(info.n_layers), atol=1e-5)


def test_secondary_sinks_on_hand_built_cosines():
    n_layers, t = 30, 7
    cos = torch.zeros(n_layers, t)
    cos[:, 0] = 1.0
    cos[5:12, 4] = 0.95   # 7 layers inside the range → secondary (4 < 7 < 15)
    cos[5:9, 5] = -0.97   # 4 layers: too short-lived
    cos[:, 1] = 0.99      # position 1 is never a secondary sink
    cos[2:4, 6] = 0.99    # outside the BOS-norm range
    norm = torch.ones(n_layers, t)
    norm[5:25, 0] = 10.0
    assert bos_layer_range(norm, 3.0) == (5, 24)
    life, classes = secondary_sinks(cos, bos_layer_range(norm, 3.0))
    assert life.tolist() == [0, 0, 0, 0, 7, 4, 0]
    assert classes == ["BOS", "none", "none", "none", "secondary", "none", "none"]
    assert bos_layer_range(torch.ones(n_layers, t)) is None


def test_massive_entries_find_injected_dimension():
    torch.manual_seed(0)
    hidden = [torch.randn(1, 6, 32) for _ in range(3)]
    hidden[1][0, 0, 7] = -500.0   # token 0, dim 7 from layer 1 on
    hidden[2][0, 0, 7] = -480.0
    hidden[2][0, 3, 7] = 300.0
    table = massive_entries(stats_from_hidden(hidden), ratio=100)
    assert set(table["dim"]) == {7} and set(table["layer"]) == {1, 2}
    assert sorted(table["pos"].tolist()) == [0, 0, 3]
    assert (table["ratio"] > 100).all()
    table["token"] = "x"
    dims = massive_dims(table)
    assert dims["first_layer"].tolist() == [1] and dims["mean_value_first_layer"].tolist() == [-500.0]


def test_negative_control_tiny_random_model_has_no_sinks(tiny):
    from workbench.core.natural_text import text_chunks

    prompts = text_chunks(tiny, 4, 64)
    rep = sink_report(tiny, prompts, ReportParams(n_prompts=4, n_tokens=64), progress=False)
    assert rep["heads"]["sink_rate"].max() == 0.0
    assert rep["heads"]["first_token_share"].max() < 0.3
    assert rep["hidden_examples"].empty
    assert (rep["secondary"]["class"] != "secondary").all()
    assert rep["massive_dims"].empty


def test_analysis_returns_valid_head_scores(tiny):
    from workbench import api

    scores, record = api.run_analysis("attention_sinks", tiny, params={"n_prompts": 2, "n_tokens": 32},
                                      progress=False)
    assert len(scores) == 2 * 4 and record is not None
    assert {"first_token_share", "hidden_sink_rate", "n_hidden_sinks"} <= set(scores.columns)
    assert scores["score"].between(0, 1).all()


def test_per_prompt_values_are_each_prompts_own_and_average_to_the_scores(tiny):
    import numpy as np

    from workbench.analyses.attention_sinks.score import run
    from workbench.core.natural_text import text_chunks

    prompts = text_chunks(tiny, 3, 32)
    result = run(tiny, prompts, Params(n_prompts=3, n_tokens=32, epsilon=0.12), progress=False)
    pp = result.per_prompt.pivot_table(index=["prompt", "layer", "head"], columns="metric", values="value")
    assert set(pp.columns) == {"score", "first_token_share", "hidden_sink_rate", "n_hidden_sinks", "max_hidden_alpha"}
    first, names = [], [H.pattern(x) for x in range(2)]  # α[0] = mean over queries of A[q, 0], full patterns
    for ids in tokenize(tiny, prompts):
        _, cache = tiny.run_with_cache(torch.tensor([ids]), names_filter=lambda n: n in names)
        first.append(torch.stack([cache[n][0, :, :, 0].mean(-1) for n in names]))
    first = torch.stack(first).numpy()  # [P, L, H]
    np.testing.assert_allclose(pp["first_token_share"].to_numpy().reshape(first.shape), first, atol=1e-5)
    np.testing.assert_array_equal(pp["score"].to_numpy().reshape(first.shape), first > 0.12)
    mean = pp.groupby(["layer", "head"]).mean()
    ordered = result.scores.set_index(["layer", "head"]).loc[mean.index]
    for metric in pp.columns:  # float32 means of 3 values
        np.testing.assert_allclose(mean[metric], ordered[metric if metric != "score" else "sink_rate"], atol=1e-6)
    assert 0 < ordered["score"].mean() < 1  # ε = 0.12: some prompt × head flags, not all


@pytest.mark.real_model
def test_smollm2_has_bos_sinks_and_massive_activations(smol):
    from workbench.core.natural_text import text_chunks

    prompts = text_chunks(smol, 2, 48)
    rep = sink_report(smol, prompts, ReportParams(n_prompts=2, n_tokens=48), progress=False)
    heads = rep["heads"]
    assert heads["sink_rate"].mean() > 0.3  # the BOS sink holds in many heads
    assert not rep["massive_dims"].empty and rep["massive_dims"]["max_ratio"].max() > 100
    assert 0 in set(rep["massive"]["pos"])  # on the first token
    layers = rep["layers"]
    assert (layers["bos_norm"] > layers["median_token_norm"]).any()


@pytest.mark.real_model
def test_smollm2_massive_dims_to_their_mean_keep_perplexity_zero_does_not(smol):
    from workbench.analyses.attention_sinks.report import massive_perplexity
    from workbench.core.natural_text import text_chunks

    rep = sink_report(smol, text_chunks(smol, 4, 64), ReportParams(n_prompts=4, n_tokens=64), progress=False)
    held_out = text_chunks(smol, 2, 96, offset=4 * 64, name="held-out")
    ppl = massive_perplexity(smol, rep["massive_dims"], held_out).set_index("edit")["perplexity"]
    assert ppl["zero"] > 1.5 * ppl["clean"]  # Sun et al. (2024): zeroing massive activations breaks the model
    assert ppl["mean"] < 1.15 * ppl["clean"]  # … setting them to their (per-token) mean does not
