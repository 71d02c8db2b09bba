"""head_attribution and sae_circuits as Results: per-prompt values that aggregate to the scores, typed Params,
and the faithfulness and repair checks on the tiny model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench import api
from workbench.analyses import get_analysis
from workbench.analyses.base import PER_PROMPT_COLUMNS, Result
from workbench.core.contrast import ContrastSet
from workbench.core.errors import WorkbenchError
from workbench.models.loading import model_info
from workbench.results.circuits import Circuit, save_circuit

SPEC = get_analysis("head_attribution")


def _attribution(tiny, tiny_ioi, **params) -> Result:
    from workbench.analyses.circuits.head_attribution import run

    return run(tiny, tiny_ioi.as_prompts(), SPEC.make_params(params), progress=False)


def test_per_prompt_shares_average_to_the_scores(tiny, tiny_ioi):
    result = _attribution(tiny, tiny_ioi, method="both")
    pp = result.per_prompt
    assert tuple(pp.columns) == PER_PROMPT_COLUMNS
    assert set(pp["metric"]) == {"activation", "attribution", "activation_effect", "attribution_effect", "gap"}
    assert set(pp["prompt"]) == set(range(len(tiny_ioi)))
    sums = pp.groupby(["metric", "layer", "head"])["value"].sum()
    for method in ("activation", "attribution"):
        mean = pp[pp["metric"] == method].groupby(["layer", "head"])["value"].mean()
        got = result.scores.set_index(["layer", "head"])[f"{method}_score"].loc[mean.index]
        np.testing.assert_allclose(mean.to_numpy(), got.to_numpy(), rtol=1e-12, atol=1e-12)
        ratio = sums[f"{method}_effect"] / sums["gap"]  # the same score as a ratio of sums (the atlas resamples it)
        np.testing.assert_allclose(ratio.loc[mean.index].to_numpy(), got.to_numpy(), rtol=1e-9, atol=1e-12)
    # a prompt's share is (M_patched[n] − M_clean)/(M_corrupt − M_clean): they differ across prompts
    assert pp[pp["metric"] == "activation"].groupby(["layer", "head"])["value"].std().max() > 1e-3


def test_typed_params_from_strings_and_lists(tiny, tiny_ioi):
    params = SPEC.make_params({"method": "path", "receivers": "L1H0, L1H2", "layers": ""})
    assert params.receivers == ("L1H0", "L1H2") and params.layers == ()
    assert SPEC.make_params({"layers": "0-1"}).layers == (0, 1) == SPEC.make_params({"layers": [0, 1]}).layers
    with pytest.raises(WorkbenchError, match="parameter layers='x' is not a valid int"):
        SPEC.make_params({"layers": "0,x"})
    path = _attribution(tiny, tiny_ioi, method="path", receivers=["L1H0", "L1H2"])
    assert set(path.per_prompt["layer"]) == {0}  # senders sit before the receivers' layer; others are not scored
    one_layer = _attribution(tiny, tiny_ioi, method="activation", layers=(1,))
    assert one_layer.scores.loc[one_layer.scores["layer"] == 0, "score"].isna().all()
    assert set(one_layer.per_prompt["layer"]) == {1}
    with pytest.raises(WorkbenchError, match=r"Layers \[7\] do not exist"):
        _attribution(tiny, tiny_ioi, method="activation", layers=(7,))


def test_faithfulness_check_of_the_top_heads(tiny, tiny_ioi):
    from workbench.analyses.circuits.checks import run_faithfulness

    scores = _attribution(tiny, tiny_ioi, method="attribution").scores
    check = SPEC.check("faithfulness")
    result = run_faithfulness(tiny, check.make_params({"top_fraction": "0.25", "n_random": "3"}), scores=scores,
                              progress=False, prompts=tiny_ioi)
    assert result.kind == "faithfulness" and result.scores is None and result.analysis == "head_attribution"
    best = scores.assign(key=scores["score"].abs()).sort_values("key", ascending=False).head(2)  # by |score|
    assert result.summary["heads"] == sorted(best["label"], key=lambda s: tuple(map(int, s[1:].split("H"))))
    table = result.tables["faithfulness"].set_index("key")["value"]
    assert table["circuit"] == pytest.approx(result.summary["circuit"]) and table["random_kept_sd"] >= 0
    # the whole model as the circuit ablates nothing: it keeps all of the clean metric
    everything = run_faithfulness(tiny, check.make_params({"top_fraction": 1.0, "n_random": 1}), scores=scores,
                                  progress=False, prompts=tiny_ioi).summary
    assert everything["circuit"] == pytest.approx(everything["clean"], abs=1e-5)
    assert everything["normalised"] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(WorkbenchError, match="task="):
        run_faithfulness(tiny, check.make_params(), scores=scores, progress=False)  # 'tiny-ioi' names no task


def _colored_tiny(model, n: int = 4) -> ContrastSet:
    """Colored Objects in single bytes: the question asks for x's color; its twin asks for y's."""
    tok = model_info(model).tokenizer
    one = lambda ch: tok(ch, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    colors = ["rb", "gp", "yk", "wm", "bg", "pr"][:n]
    clean = [f"Q: a r x, a b y. x?\nA: R\nQ: a {c} x, a {d} y. x?\nA:" for c, d in colors]
    corrupt = [f"Q: a r x, a b y. x?\nA: R\nQ: a {c} x, a {d} y. y?\nA:" for c, d in colors]
    meta = [{"answer_id": one(c.upper()), "wrong_ids": [one(d.upper())]} for c, d in colors]
    return ContrastSet("co-tiny", api.PromptSet.from_texts("co", clean, metadata=meta),
                       api.PromptSet.from_texts("co-c", corrupt, metadata=meta))


def test_repair_check_uses_ioi_heads_outside_the_colored_circuit(tiny, tiny_ioi, tmp_path):
    from workbench.analyses.circuits.checks import run_repair

    scores = _attribution(tiny, tiny_ioi, method="attribution").scores
    top = scores.assign(key=scores["score"].abs()).sort_values("key", ascending=False).head(3)  # by |score|
    colored = Circuit(name="co-tiny", model="tiny", task="colored_objects", heads=(top["label"].iloc[0],),
                      n_layers=2, n_heads=4, method="hand-picked", selection="one head")
    path = save_circuit(colored, tmp_path)
    params = SPEC.check("repair").make_params({"colored": str(path), "top_fraction": 0.375, "max_heads": 1,
                                               "n_prompts": 4})
    result = run_repair(tiny, params, scores=scores, progress=False, prompts=_colored_tiny(tiny))
    s = result.summary
    assert result.kind == "repair" and s["candidates"] == sorted(top["label"].iloc[1:],
                                                                 key=lambda x: tuple(map(int, x[1:].split("H"))))
    assert set(result.tables["trials"]["head"]) == set(s["candidates"])  # round 1 tries every candidate
    assert len(s["heads"]) <= 1 and set(s["heads"]) <= set(s["candidates"])
    assert 0 <= s["accuracy_before"] <= 1 and 0 <= s["accuracy_after"] <= 1 and s["n_fit"] + s["n_held_out"] == 4
    assert list(result.tables["held_out"]["accuracy"]) == [s["accuracy_before"], s["accuracy_after"]]
    with pytest.raises(WorkbenchError, match="IOI run"):
        run_repair(tiny, params, scores=scores.assign(prompt_set="docstring-8-s0"), progress=False)


def test_sae_per_prompt_codes_and_norms_give_the_scores(tiny, tiny_ioi):
    from workbench.analyses.circuits.sae.analysis import run

    params = get_analysis("sae_circuits").make_params({"n_latents": 16, "epochs": 20})
    result = run(tiny, tiny_ioi.as_prompts(), params, progress=False)
    pp = result.per_prompt.pivot_table(index=["layer", "head", "prompt"], columns="metric", values="value")
    scores = result.scores.set_index(["layer", "head"])
    for (layer, head), rows in pp.groupby(level=["layer", "head"]):
        only_clean = set(rows["code_clean"]) - set(rows["code_corrupt"])
        assert scores.loc[(layer, head), "raw_score"] == len(only_clean)
        baseline = abs(rows["norm_clean"].mean() - rows["norm_corrupt"].mean())
        assert scores.loc[(layer, head), "baseline_score"] == pytest.approx(baseline, rel=1e-5, abs=1e-6)
    assert isinstance(result.per_prompt, pd.DataFrame)
    assert [c.name for c in get_analysis("sae_circuits").checks] == ["ablate"]  # the generic top-k ablation
