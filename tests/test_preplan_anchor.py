"""Preplan/anchor metrics: hand-built patterns with known answers, reducers vs full patterns, real traces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench import api
from workbench.analyses.preplan_anchor.score import (
    REQUEST_GLOBAL,
    anchor_tokens,
    coupling_rate,
    coupling_vs_chance,
    fai_trace,
    head_split,
    preplan_tokens,
    request_windowed,
    waad_trace,
)
from workbench.engine.reducers import stats_from_patterns
from workbench.engine.run import stream_forward
from workbench.models.loading import model_info
from workbench.results import runs as results

# One layer, two heads, four tokens. Head 0 looks back a lot, head 1 stays on the diagonal.
PATTERN = torch.tensor([[[[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0.5, 0.5, 0, 0], [0.7, 0.1, 0.1, 0.1]],
                         [[1.0, 0, 0, 0], [0.0, 1.0, 0, 0], [0.0, 0.2, 0.8, 0], [0.0, 0.0, 0.0, 1.0]]]])


def test_waad_on_a_hand_built_pattern():
    stats = stats_from_patterns({0: PATTERN}, request_windowed(2))
    local = torch.tensor([[False, True]])
    # Head 1, W = 2: t0 0; t1 0; t2 0.2·1 = 0.2; t3 0.
    torch.testing.assert_close(waad_trace(stats.distance[0], local), torch.tensor([0.0, 0.0, 0.2, 0.0]))
    both = torch.tensor([[True, True]])
    # Head 0 clipped at 2: t1 1·1 = 1; t2 0.5·2 + 0.5·1 = 1.5; t3 0.7·2 + 0.1·2 + 0.1·1 = 1.7.
    torch.testing.assert_close(waad_trace(stats.distance[0], both), torch.tensor([0.0, 0.5, 0.85, 0.85]))


def test_fai_on_a_hand_built_pattern():
    stats = stats_from_patterns({0: PATTERN}, REQUEST_GLOBAL)
    fai = fai_trace(stats.col_sum[0], stats.offset_mass[0][0], torch.tensor([[True, False]]))
    # Head 0: key 0 gets (1 + 0.5 + 0.7)/3 from later queries, key 1 (0.5 + 0.1)/2, key 2 0.1/1, key 3 none.
    torch.testing.assert_close(fai[:3], torch.tensor([2.2 / 3, 0.3, 0.1]))
    assert torch.isnan(fai[3])


def test_head_split_marks_far_looking_heads_global():
    distance = torch.tensor([[1.0, 5.0], [2.0, 9.0]])
    assert head_split(distance, 0.5).tolist() == [[False, True], [False, True]]


def test_peaks_anchors_and_coupling_known_answers():
    waad = np.array([0, 5, 1, 1, 6, 2, 0, 7, 7, 1.0])
    assert preplan_tokens(waad, 0.6).tolist() == [1, 4, 7]  # threshold 3.2
    assert preplan_tokens(waad, 0.7).tolist() == [4, 7]  # threshold 5.3
    fai = np.array([0.1, 0.2, 0.9, 0.1, 0.1, 0.8, np.nan])
    assert anchor_tokens(fai, 0.7).tolist() == [2, 5]  # threshold 0.5 over the 6 valid values
    assert coupling_rate(np.array([1, 4, 7]), np.array([2, 5]), k=1) == pytest.approx(2 / 3)
    assert coupling_rate(np.array([1, 4, 7]), np.array([2, 5]), k=0) == 0.0
    assert np.isnan(coupling_rate(np.array([], dtype=int), np.array([2]), k=1))


def test_planted_coupling_beats_chance():
    rng = np.random.default_rng(1)
    traces = []
    for _ in range(5):
        pre = np.sort(rng.choice(np.arange(0, 190, 10), size=8, replace=False))
        traces.append((pre, pre + 1, 200))
    result = coupling_vs_chance(traces, k=1, n_shuffles=300, seed=0)
    assert result["coupling"] == 1.0 and result["chance_mean"] < 0.2 and result["p_value"] < 0.01


def test_streaming_waad_and_fai_equal_full_patterns(tiny):
    info = model_info(tiny)
    ids = torch.tensor([[info.tokenizer.bos_token_id, *info.tokenizer("step one, then step two.")["input_ids"]]])
    _, cache = tiny.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_pattern"))
    full = {x: cache[f"blocks.{x}.attn.hook_pattern"] for x in range(info.n_layers)}
    local = torch.tensor([[True, False, True, False], [False, True, False, True]])
    for request in (request_windowed(4), REQUEST_GLOBAL):
        streamed, direct = stream_forward(tiny, ids, request).stats, stats_from_patterns(full, request)
        if request.column_sums:
            got = fai_trace(streamed.col_sum[0], streamed.offset_mass[0][0], ~local)
            t = ids.shape[1]
            nan = torch.tensor(float("nan"))
            want = torch.stack([torch.stack([full[x][0, h, s + 1:, s].mean() if s < t - 1 else nan for s in range(t)])
                                for x in range(2) for h in range(4) if not local[x, h]]).mean(0)
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5, equal_nan=True)
        else:
            torch.testing.assert_close(waad_trace(streamed.distance[0], local), waad_trace(direct.distance[0], local),
                                       atol=1e-5, rtol=1e-5)


def test_analysis_runs_end_to_end_on_tiny(tiny):
    scores, record = api.run_analysis("preplan_anchor", tiny, params={"n_problems": 2, "max_new_tokens": 24,
                                                                     "n_shuffles": 50}, progress=False)
    assert len(scores) == 8 and set(scores["kind"]) == {"local", "global"}
    tokens = results.load_table(record.run_id, "tokens")
    assert set(tokens["trace"]) == {0, 1} and tokens["step"].max() <= 23
    summary = results.load_summary(record.run_id)
    assert {"coupling", "chance_mean", "p_value", "accuracy"} <= set(summary)


@pytest.mark.real_model
def test_smollm2_traces_marks_and_anchor_intervention(smol):
    from workbench.analyses.preplan_anchor.checks import anchor_intervention
    from workbench.analyses.preplan_anchor.prompts import generate_traces, problem_prompts

    params = {"n_problems": 2, "max_new_tokens": 40, "n_shuffles": 100}
    scores, record = api.run_analysis("preplan_anchor", smol, params=params, progress=False)
    assert (scores["kind"] == "global").sum() == 135
    assert scores.loc[scores["kind"] == "global", "score"].min() >= scores.loc[scores["kind"] == "local", "score"].max()
    tokens = results.load_table(record.run_id, "tokens")
    assert tokens["preplan"].any() and tokens["anchor"].any()
    traces = generate_traces(smol, problem_prompts(smol, 2), 40, progress=False)
    table = anchor_intervention(smol, traces, tokens, scores, scale=0.0, n_random=1, progress=False)
    assert set(table["condition"]) == {"anchors", "random-0"}
    assert table["delta_logprob"].abs().max() > 0 and np.isfinite(table["delta_logprob"]).all()


SMALL = {"n_problems": 2, "max_new_tokens": 24, "n_shuffles": 50}


def test_per_trace_distances_weight_to_the_score(tiny):
    from workbench.analyses import get_analysis
    from workbench.analyses.preplan_anchor.score import default_prompts, run

    params = get_analysis("preplan_anchor").make_params(SMALL)
    result = run(tiny, default_prompts(tiny, params), params, progress=False)
    pp = result.per_prompt.pivot_table(index=["layer", "head", "prompt"], columns="metric", values="value")
    assert set(pp.index.get_level_values("prompt")) == {0, 1} and (pp["n_tokens"] > 0).all()
    weighted = (pp["mean_distance"] * pp["n_tokens"]).groupby(level=["layer", "head"]).sum() / \
        pp["n_tokens"].groupby(level=["layer", "head"]).sum()
    got = result.scores.set_index(["layer", "head"])["score"].loc[weighted.index]
    np.testing.assert_allclose(weighted.to_numpy(), got.to_numpy(), rtol=1e-12)


def test_anchor_intervention_check_on_tiny(tiny):
    from workbench.analyses import get_analysis
    from workbench.analyses.preplan_anchor.checks import run_anchor_intervention

    scores, _ = api.run_analysis("preplan_anchor", tiny, params=SMALL, progress=False)
    check = get_analysis("preplan_anchor").check("anchor_intervention")
    small = {"n_problems": 2, "max_new_tokens": 24, "n_random": 2}
    result = run_anchor_intervention(tiny, check.make_params({**small, "scale": "0"}), scores=scores, progress=False)
    table = result.tables["intervention"]
    assert result.kind == "anchor_intervention" and result.scores is None
    assert set(table["condition"]) == {"anchors", "random-0", "random-1"} and result.summary["n_traces"] >= 1
    assert result.summary["anchors_delta_logprob"] == pytest.approx(
        table.loc[table["condition"] == "anchors", "delta_logprob"].mean())
    assert table["delta_logprob"].abs().max() > 1e-4  # removing attention to the keys changes the trace
    unchanged = run_anchor_intervention(tiny, check.make_params({**small, "scale": 1.0}), scores=scores,
                                        progress=False).tables["intervention"]
    np.testing.assert_allclose(unchanged["delta_logprob"], 0, atol=1e-5)  # scale 1 edits nothing


def test_preplan_cli_takes_model_device_dtype():
    from typer.testing import CliRunner

    from workbench.cli.main import app

    args = ["--model", "tiny", "--device", "cpu", "--dtype", "float32", "--n-problems", "1", "--max-new-tokens", "16"]
    result = CliRunner().invoke(app, ["preplan", "report", *args, "--examples", "1"])
    assert result.exit_code == 0, result.output
    assert "head split" in result.output and "coupling" in result.output
    result = CliRunner().invoke(app, ["preplan", "intervene", *args, "--n-random", "1"])
    assert result.exit_code in (0, 2), result.output
    assert "anchors" in result.output or "No trace has an anchor" in result.output
