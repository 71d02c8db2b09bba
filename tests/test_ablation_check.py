"""The generic "ablate" check (workbench.analyses.ablation): top-k heads of a column vs k random heads, on tiny."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from float64 import default_float64, tiny_in_float64

from workbench.analyses import REGISTRY, get_analysis
from workbench.analyses.ablation import ablation_conditions, ranked_heads, standard_effect, tied_at_k
from workbench.analyses.base import resolve
from workbench.analyses.induction_heads import Params as InductionParams
from workbench.analyses.induction_heads.prompts import repeated_tokens
from workbench.analyses.induction_heads.score import run as induction_run
from workbench.analyses.runner import run_analysis, run_check
from workbench.atlas.causal import causal_verdict
from workbench.core.errors import WorkbenchError
from workbench.core.prompts import PromptSet, tokenize
from workbench.edits.apply import forward, run_metric
from workbench.engine.metrics import LOSS
from workbench.models.loading import model_info

STANDARD = {"k", "mode", "metric", "higher_is", "before", "top_delta", "random_delta_mean", "random_delta_sd",
            "random_delta_max", "n_random", "n_prompts"}


def test_every_analysis_names_a_causal_check_it_has():
    for spec in REGISTRY:
        assert spec.causal and spec.check(spec.causal).name == spec.causal, spec.name
        assert not any(c.name == "ablate" for c in spec.checks) or spec.check("ablate").tables == ("conditions",)


def test_signed_columns_rank_by_magnitude_and_nan_last():
    scores = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "score": [0.1, -0.9, float("nan"), 0.5],
                           "rate": [0.1, 0.2, 0.3, 0.0]})
    assert [str(h) for h in ranked_heads(scores)] == ["L0H1", "L1H1", "L0H0", "L1H0"]
    assert [str(h) for h in ranked_heads(scores, "rate")] == ["L1H0", "L0H1", "L0H0", "L1H1"]
    assert tied_at_k(scores.assign(rate=[0.5, 0.5, 0.5, 0.1]), "rate", 2) == 3 and tied_at_k(scores, "rate", 1) == 1
    with pytest.raises(WorkbenchError, match="rank by one of score, rate"):
        ranked_heads(scores, "nope")


def test_generic_check_conditions_and_standard_summary(tiny, tmp_path):
    tmp_path = tmp_path / "results"
    params = {"n_prompts": 2, "n_tokens": 24}
    run = run_analysis("attention_profile", tiny, params=params, progress=False, results_dir=tmp_path)
    check = run_check("attention_profile", "ablate", tiny, {"k": 2, "seeds": 3}, progress=False,
                      results_dir=tmp_path)
    table, summary = check.tables["conditions"], check.summary
    assert check.record.parent_run == run.record.run_id and check.record.kind == "ablate"
    assert list(table.columns) == ["condition", "seed", "heads", "before", "after", "delta", "n_prompts"]
    assert table["condition"].tolist() == ["top-k", "random", "random", "random"]
    assert table["seed"].tolist()[1:] == [0, 1, 2]
    top = set(table["heads"][0].split(","))
    assert top == {str(h) for h in ranked_heads(run.scores)[:2]}
    assert all(not top & set(h.split(",")) and len(h.split(",")) == 2 for h in table["heads"][1:])
    assert STANDARD <= set(summary) and summary["metric"] == "loss" and summary["higher_is"] == "worse"
    spec = get_analysis("attention_profile")
    prompts = resolve(spec.default_prompts)(tiny, spec.make_params(params))
    before = run_metric(tiny, prompts, LOSS)  # the run's own prompts, rebuilt from its params
    assert summary["before"] == pytest.approx(sum(before) / len(before), abs=1e-6)
    assert summary["n_prompts"] == 2 and summary["random_delta_sd"] == pytest.approx(table["delta"][1:].std())
    assert summary["top_delta"] == pytest.approx((table["after"] - table["before"])[0], abs=1e-9)
    assert standard_effect(check)["effect"] == summary["top_delta"]


def test_induction_ablate_keeps_the_numbers_of_its_own_check():
    """Numbers of the former induction_ablation_check (commit a168f05) on tiny: 3 prompts, half_len 8, k=2."""
    from workbench.models.loading import load_model

    old = {"mean": [0.0701446533203125, 0.11614386240641277, -0.040318806966145836, 0.009273846944173178],
           "zero": [-0.12918758392333984, -0.05633672078450521, -0.03092368443806966, -0.1444997787475586]}
    model = load_model("tiny")
    check = get_analysis("induction_heads").check("ablate")
    scores = induction_run(model, repeated_tokens(model, 3, 8, 0), InductionParams(), progress=False).scores
    for mode, deltas in old.items():
        params = check.make_params({"n_prompts": 3, "half_len": 8, "k": 2, "seeds": 3, "mode": mode})
        result = resolve(check.run)(model, params, scores=scores, progress=False)
        table = result.tables["conditions"]
        assert table["heads"].tolist() == ["L0H1,L1H0", "L1H1,L1H3", "L0H2,L1H2", "L0H0,L1H3"]
        assert table["delta"].tolist() == pytest.approx(deltas, abs=1e-6)
        assert result.summary["before"] == pytest.approx(5.862349510192871, abs=1e-6)


def _planted(model, layer: int, head: int, factor: float) -> None:
    """Scale one head's write W_O[h] by `factor`, in the bridge and in the twin (float64 copies of their own)."""
    info = model_info(model)
    weights = {p.data_ptr(): p for root in (model, info.stream_model) for name, p in root.named_parameters()
               if f"layers.{layer}." in name and "o_proj" in name}
    with torch.no_grad():
        for w in weights.values():
            w[:, head * info.d_head:(head + 1) * info.d_head] *= factor


def test_a_planted_head_matters_and_random_heads_do_not():
    """L1H2's output ×30 dominates the last logits; the answer is its argmax. Zeroing it (top-1 of a column
    that ranks it first) destroys the logit difference; zeroing any one random other head barely moves it."""
    from workbench.core.natural_text import text_chunks

    with default_float64():
        model = tiny_in_float64()
        _planted(model, 1, 2, 30.0)
        base = text_chunks(model, 4, 16)
        ids = tuple(tuple(x) for x in tokenize(model, base))
        logits = forward(model, ids, last=True)
        meta = [{"answer_id": int(x.argmax()), "wrong_ids": [int(x.argmin())]} for x in logits]
        prompts = PromptSet("planted", base.texts, metadata=meta, token_ids=ids)
        info = model_info(model)
        scores = pd.DataFrame([{"layer": x, "head": h, "score": float((x, h) == (1, 2))}
                               for x in range(info.n_layers) for h in range(info.n_heads)])
        table = ablation_conditions(model, prompts, scores, "logit_diff", k=1, seeds=range(5), mode="zero")
    top, rand = table.iloc[0], table.iloc[1:]
    assert top["heads"] == "L1H2" and top["before"] > 3
    assert top["delta"] < -0.5 * top["before"] and rand["delta"].abs().max() < 0.25 * abs(top["delta"])
    effect = {"effect": top["delta"], "random_mean": rand["delta"].mean(), "random_sd": rand["delta"].std(),
              "n_random": 5, "higher_is": "better"}
    assert causal_verdict(effect) == "matters"
    one = rand.iloc[0]  # a random head judged against the other random heads is no larger than random
    others = rand["delta"].iloc[1:]
    assert causal_verdict({**effect, "effect": one["delta"], "random_mean": others.mean(),
                           "random_sd": others.std(), "n_random": 4}) == "no larger than random"


def test_bad_inputs_fail_clearly(tiny):
    scores = induction_run(tiny, repeated_tokens(tiny, 1, 4, 0), InductionParams(), progress=False).scores
    prompts = repeated_tokens(tiny, 1, 4, 0)
    with pytest.raises(WorkbenchError, match="Ablation mode must be 'mean', 'zero' or 'uniform'"):
        ablation_conditions(tiny, prompts, scores, LOSS, k=1, mode="half")
    with pytest.raises(WorkbenchError, match="need 10 heads; the model has 8"):
        ablation_conditions(tiny, prompts, scores, LOSS, k=5)
    check = get_analysis("attention_profile").check("ablate")
    with pytest.raises(WorkbenchError, match="seeds must be an integer >= 1"):
        check.make_params({"seeds": 0})
    assert math.isfinite(ablation_conditions(tiny, prompts, scores, LOSS, k=1, seeds=(0,), mode="uniform")
                         ["delta"][0])
