"""Induction and previous-token scores, the non-sink attention distance and the ablation check, against full
attention patterns from the bridge (tiny model) and on SmolLM2 (real_model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench import api
from workbench.analyses.ablation import ablation_conditions
from workbench.analyses.attention_profile.score import MIN_NON_SINK
from workbench.analyses.base import PER_PROMPT_COLUMNS, resolve
from workbench.analyses.induction_heads import Params as InductionParams
from workbench.analyses.induction_heads.checks import REPEATED_HALF_LOSS
from workbench.analyses.induction_heads.prompts import repeated_tokens
from workbench.analyses.induction_heads.score import run as induction_run
from workbench.core.errors import InputError, PromptError
from workbench.core.prompts import tokenize
from workbench.engine import hooks
from workbench.models.loading import model_info


def _patterns(model, ids: list[int]) -> torch.Tensor:
    """Full post-softmax patterns `[L, H, T, T]` of one sequence, from run_with_cache."""
    n_layers = model_info(model).n_layers
    names = [hooks.pattern(x) for x in range(n_layers)]
    _, cache = model.run_with_cache(torch.tensor([ids]), names_filter=lambda n: n in names)
    return torch.stack([cache[hooks.pattern(x)][0].double() for x in range(n_layers)])


def test_repeated_tokens_are_seeded_repeated_and_never_special(tiny):
    a, b, c = (repeated_tokens(tiny, 3, 16, seed) for seed in (0, 0, 1))
    assert a.token_ids == b.token_ids and a.fingerprint == b.fingerprint
    assert a.token_ids != c.token_ids
    tok = model_info(tiny).tokenizer
    special = set(tok.all_special_ids)
    for ids in a.token_ids:
        assert len(ids) == 33 and ids[0] == tok.bos_token_id
        assert ids[1:17] == ids[17:]
        assert not special & set(ids[1:])
    with pytest.raises(PromptError, match="half_len >= 2"):
        repeated_tokens(tiny, 2, 1)


def test_induction_scores_equal_full_pattern_computation(tiny):
    half = 12
    prompts = repeated_tokens(tiny, 3, half, seed=4)
    result = induction_run(tiny, prompts, InductionParams(n_prompts=3, half_len=half, seed=4), progress=False)
    scores = result.scores
    pats = torch.stack([_patterns(tiny, list(ids)) for ids in prompts.token_ids])  # [P, L, H, T, T]
    t = torch.arange(half + 1, 2 * half + 1)
    per_induction, per_prev = pats[..., t, t - half + 1].mean(-1), pats[..., t, t - 1].mean(-1)  # [P, L, H]
    induction, prev = per_induction.mean(0), per_prev.mean(0)
    got = scores.set_index(["layer", "head"])
    for (layer, head), row in got.iterrows():
        assert row["induction"] == pytest.approx(float(induction[layer, head]), abs=1e-5)
        assert row["prev_token_random"] == pytest.approx(float(prev[layer, head]), abs=1e-5)
        assert row["score"] == row["induction"]
    assert (got["induction"] > 0).all()
    # per_prompt: each prompt's own means (against its full patterns), and their mean is the score
    pp = result.per_prompt.set_index(["metric", "prompt", "layer", "head"])["value"]
    assert list(result.per_prompt.columns) == list(PER_PROMPT_COLUMNS) and len(pp) == 2 * 3 * len(scores)
    for metric, ref in (("score", per_induction), ("prev_token_random", per_prev)):
        np.testing.assert_allclose(pp[metric].to_numpy().reshape(ref.shape), ref.numpy(), atol=1e-5)
        mean = pp[metric].groupby(["layer", "head"]).mean()
        column = "score" if metric == "score" else metric  # float32 sums of R terms in [0, 1]: ~R·2^-24
        np.testing.assert_allclose(mean.to_numpy(), got[column].to_numpy(), rtol=0, atol=half * 2 ** -24)


def test_non_sink_distance_equals_full_pattern_computation(tiny):
    from workbench.analyses.attention_profile import Params as ProfileParams
    from workbench.analyses.attention_profile.score import run as profile_run

    prompts = api.text_prompts(tiny, n_prompts=2, n_tokens=40)
    result = profile_run(tiny, prompts, ProfileParams(n_prompts=2, n_tokens=40), progress=False)
    scores = result.scores
    num, den = 0.0, 0.0
    raw, raw_n = 0.0, 0
    per_score, per_distance = [], []
    for ids in tokenize(tiny, prompts):
        pat = _patterns(tiny, ids)  # [L, H, T, T]
        n = pat.shape[-1]
        dist = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).clamp(min=0).double()
        rest = pat[..., 1:].sum(-1)  # [L, H, T]
        ratio = (pat[..., 1:] * dist[:, 1:]).sum(-1) / rest
        keep = (rest >= MIN_NON_SINK) & (torch.arange(n) >= 2)
        num = num + torch.where(keep, ratio, 0).sum(-1)
        den = den + keep.sum(-1)
        raw = raw + (pat * dist).sum(-1)[..., 1:].sum(-1)
        raw_n += n - 1
        per_score.append(torch.where(keep, ratio, 0).sum(-1) / keep.sum(-1))
        per_distance.append((pat * dist).sum(-1)[..., 1:].mean(-1))
    want, want_raw = num / den, raw / raw_n
    for row in scores.itertuples():
        assert row.distance_non_sink == pytest.approx(float(want[row.layer, row.head]), abs=1e-4)
        assert row.distance == pytest.approx(float(want_raw[row.layer, row.head]), abs=1e-4)
        assert row.score == row.distance_non_sink
        assert row.non_sink_queries == pytest.approx(float(den[row.layer, row.head]) / (raw_n - len(prompts)))
    median = scores["distance"].median()
    assert ((scores["kind"] == "global") == (scores["distance"] > median)).all()
    # per_prompt: each prompt's own values; the score is their mean weighted by the valid queries
    pp = result.per_prompt.pivot_table(index=["prompt", "layer", "head"], columns="metric", values="value",
                                       dropna=False)
    shape = (len(prompts), *want.shape)
    np.testing.assert_allclose(pp["score"].to_numpy().reshape(shape), torch.stack(per_score).numpy(), atol=1e-4)
    np.testing.assert_allclose(pp["distance"].to_numpy().reshape(shape), torch.stack(per_distance).numpy(),
                               atol=1e-4)
    weight = pp["non_sink_queries"] * (40 - 2)
    agg = (pp["score"].fillna(0) * weight).groupby(["layer", "head"]).sum() / weight.groupby(["layer", "head"]).sum()
    ordered = scores.set_index(["layer", "head"]).loc[agg.index]
    np.testing.assert_allclose(agg.to_numpy(), ordered["score"].to_numpy(), rtol=1e-6)  # float32 sums
    mean = pp["bos_mass"].groupby(["layer", "head"]).mean()
    np.testing.assert_allclose(mean.to_numpy(), ordered["bos_mass"].to_numpy(), rtol=1e-6, atol=1e-7)


def test_non_sink_distance_removes_a_pure_sink():
    from workbench.analyses.attention_profile.score import non_sink_distance

    # query t = 4: 0.5 on key 0, 0.5 on key 3 → D = 0.5·4 + 0.5·1 = 2.5; without the sink: 1.
    q = torch.tensor([4, 5, 1])
    d = torch.tensor([2.5, 5.0, 1.0])
    a0 = torch.tensor([0.5, 1.0, 0.5])
    value, valid = non_sink_distance(d, a0, q)
    assert valid.tolist() == [True, False, False]
    assert value[0].item() == pytest.approx(1.0) and value[1].item() == 0.0


def test_ablation_check_returns_one_row_per_condition(tiny):
    prompts = repeated_tokens(tiny, 2, 8, seed=0)
    scores = induction_run(tiny, prompts, InductionParams(), progress=False).scores
    table = ablation_conditions(tiny, prompts, scores, REPEATED_HALF_LOSS, k=2, seeds=(0, 1), mode="zero")
    assert table["condition"].tolist() == ["top-k", "random", "random"]
    assert table["seed"].tolist()[1:] == [0, 1]
    assert len(set(table["before"].round(6))) == 1 and all(math.isfinite(x) for x in table["after"])
    assert not set(table["heads"][0].split(",")) & set(table["heads"][1].split(","))
    with pytest.raises(InputError, match="k must be"):
        ablation_conditions(tiny, prompts, scores, REPEATED_HALF_LOSS, k=0)


def _repeated_half_loss(model, prompts, heads=()) -> float:
    """Mean loss on the second copy with the outputs z of `heads` zeroed by a bridge hook (written here)."""
    def zero(z, hook=None, layer=0):
        z = z.clone()
        for h in heads:
            if h.layer == layer:
                z[:, :, h.head] = 0.0
        return z
    fwd = [(hooks.z(x), lambda z, hook=None, x=x: zero(z, layer=x)) for x in {h.layer for h in heads}]
    losses = []
    for ids, meta in zip(prompts.token_ids, prompts.metadata, strict=True):
        with torch.no_grad():
            logits = model.run_with_hooks(torch.tensor([ids]), fwd_hooks=fwd)[0].double()
        start = len(ids) - meta["half_len"]
        losses.append(float(torch.nn.functional.cross_entropy(logits[start - 1: -1], torch.tensor(ids[start:]))))
    return sum(losses) / len(losses)


def test_ablate_check_result_equals_zeroing_the_top_heads_by_hand(tiny):
    from workbench.analyses import get_analysis
    from workbench.core.heads import parse_heads

    check = get_analysis("induction_heads").check("ablate")
    params = check.make_params({"n_prompts": "2", "half_len": "8", "k": "2", "seeds": "2", "mode": "zero"})
    prompts = repeated_tokens(tiny, 2, 8, seed=0)
    scores = induction_run(tiny, prompts, InductionParams(n_prompts=2, half_len=8), progress=False).scores
    result = resolve(check.run)(tiny, params, scores=scores, progress=False)
    assert result.kind == "ablate" and result.analysis == "induction_heads" and result.scores is None
    table, summary = result.tables["conditions"], result.summary
    assert table["condition"].tolist() == ["top-k", "random", "random"]
    top = scores.sort_values("score", ascending=False).head(2)["label"]
    assert set(table["heads"][0].split(",")) == set(top)
    before = _repeated_half_loss(tiny, prompts)
    after = _repeated_half_loss(tiny, prompts, parse_heads(table["heads"][0]))
    assert summary["before"] == pytest.approx(before, abs=1e-4)
    assert summary["top_delta"] == pytest.approx(after - before, abs=1e-4) and abs(after - before) > 1e-3
    assert summary["random_delta_max"] == pytest.approx(table["delta"][1:].max())


def test_induction_cli_runs_the_check_and_validates_numbers():
    from typer.testing import CliRunner

    from workbench.cli.main import app

    result = CliRunner().invoke(app, ["induction", "check", "-m", "tiny", "--device", "cpu", "--n-prompts", "2",
                                      "--half-len", "8", "--k", "2", "--seeds", "1", "--mode", "zero"])
    assert result.exit_code == 0, result.output
    assert "induction_heads · ablate: conditions" in result.stdout and "top-k" in result.stdout
    assert "top_delta=" in result.stdout and "checks run " in result.stdout  # the run it checked (made first)
    result = CliRunner().invoke(app, ["induction", "check", "-m", "tiny", "--half-len", "1"])
    assert result.exit_code == 2 and "--half-len must be an integer >= 2" in result.stderr
    result = CliRunner().invoke(app, ["induction", "check", "-m", "tiny", "--mode", "half"])
    assert result.exit_code == 2 and "Ablation mode must be 'mean', 'zero' or 'uniform'" in result.stderr


@pytest.mark.real_model
def test_smollm2_top_induction_heads_matter_more_than_random_heads(smol):
    prompts = repeated_tokens(smol, 4, 32, seed=0)
    tok = model_info(smol).tokenizer
    special = {i for i, t in tok.added_tokens_decoder.items() if t.special}  # SmolLM2: ids 0–16
    assert len(special) > 3 and not special & {i for ids in prompts.token_ids for i in ids[1:]}
    scores, _ = api.run_analysis("induction_heads", smol, prompts, params={"half_len": 32}, progress=False,
                                 save=False)
    assert scores["induction"].max() > 0.3
    table = ablation_conditions(smol, prompts, scores, REPEATED_HALF_LOSS, k=5, seeds=(0, 1, 2), mode="mean")
    top, rand = table.iloc[0], table.iloc[1:]
    assert top["delta"] > 0.5 and top["delta"] > 3 * rand["delta"].max()
