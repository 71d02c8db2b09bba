"""Head divergence: zero for identical inputs, equal to a direct computation, real counterfactual QA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench import api
from workbench.analyses.head_divergence.prompts import load_facts, prompt_set, qa_text, split
from workbench.analyses.head_divergence.score import aggregate, divergence, divergence_between, head_outputs
from workbench.core.errors import WorkbenchError
from workbench.core.prompts import PromptSet
from workbench.engine import hooks
from workbench.models.loading import model_info
from workbench.results import runs as results

TEXTS = ("the cat sat on the mat", "a dog ran in the park")


def test_identical_inputs_have_zero_divergence(tiny):
    ps = PromptSet.from_texts("same", TEXTS)
    d = divergence_between(tiny, ps, tiny, ps, n_positions=2, progress=False)
    assert d.shape == (2, 2, 4) and d.abs().max() == 0


def test_divergence_matches_a_direct_computation(tiny):
    with_ctx = PromptSet.from_texts("ctx", [f"context first. {t}" for t in TEXTS])
    without = PromptSet.from_texts("plain", TEXTS)
    got = divergence_between(tiny, with_ctx, tiny, without, n_positions=1, progress=False)
    info = model_info(tiny)
    w_o = [info.stream_model.model.layers[x].self_attn.o_proj.weight.view(info.d_model, info.n_heads, info.d_head)
           for x in range(info.n_layers)]

    def last_writes(text: str) -> torch.Tensor:
        ids = tiny.to_tokens(text)
        _, cache = tiny.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_z"))
        return torch.stack([torch.einsum("hd,mhd->hm", cache[hooks.z(x)][0, -1], w_o[x]) for x in range(2)])

    for n, text in enumerate(TEXTS):
        want = (last_writes(f"context first. {text}") - last_writes(text)).norm(dim=-1)
        torch.testing.assert_close(got[n], want, atol=1e-4, rtol=1e-4)
    assert got.abs().max() > 0


def test_cosine_metric_and_aggregate():
    a = torch.tensor([[[[[1.0, 0.0]]]]])  # [N=1, L=1, P=1, H=1, d=2]
    b = torch.tensor([[[[[0.0, 2.0]]]]])
    assert divergence(a, b, "l2").item() == pytest.approx(5 ** 0.5)
    assert divergence(a, b, "cosine").item() == pytest.approx(1.0)
    per_prompt = torch.tensor([[[1.0, 3.0]], [[2.0, 6.0]]])  # [N=2, L=1, H=2]
    assert aggregate(per_prompt, torch.tensor([[False, True]])).tolist() == [3.0, 6.0]
    with pytest.raises(WorkbenchError, match="l2"):
        divergence(a, b, "manhattan")
    with pytest.raises(WorkbenchError, match="shape"):
        divergence(a, torch.zeros(1, 1, 1, 2, 2))


def test_bad_pairings_fail_clearly(tiny):
    with pytest.raises(WorkbenchError, match="differ in size"):
        divergence_between(tiny, PromptSet.from_texts("a", TEXTS), tiny, PromptSet.from_texts("b", TEXTS[:1]))
    with pytest.raises(WorkbenchError, match="at least 1"):
        head_outputs(tiny, PromptSet.from_texts("a", TEXTS), 0)


def test_counterfactual_prompts_share_their_ending():
    facts, neutral = load_facts()
    cf, closed = prompt_set(facts[:3], "counterfactual", "cf"), prompt_set(facts[:3], "none", "cb")
    for a, b, fact in zip(cf.texts, closed.texts, facts, strict=False):
        assert a.endswith(b.split("\n\n", 1)[1]) and fact["passage"] in a and fact["passage"] not in b
        assert b == qa_text(fact["question"])
    assert cf.metadata[0]["answer"] == " " + facts[0]["counterfactual"]
    scoring, held = split(facts, 0.5, 0)
    assert len(scoring) + len(held) == len(facts)
    assert not {f["question"] for f in scoring} & {f["question"] for f in held}
    assert prompt_set(facts[:2], "neutral", "n", neutral).texts[0].count(neutral[0]) == 1


@pytest.mark.real_model
def test_smollm2_divergence_map_and_reinforcement(smol):
    from workbench.analyses.head_divergence.checks import reinforce

    scores, record = api.run_analysis("head_divergence", smol, params={"top_k": 5}, progress=False)
    summary = results.load_summary(record.run_id)
    assert len(scores) == 270 and scores["score"].min() >= 0 and scores["score"].max() > 1.0
    assert len(summary["top_heads"]) == 5 and summary["n_prompts"] >= 5
    table = reinforce(smol, scores, k=5, alpha=2.0, n_random=1)
    assert table["condition"].tolist() == ["baseline", "top-k", "random-0"]
    assert table["follow_rate"].between(0, 1).all()


def test_per_prompt_divergence_averages_to_the_score(tiny, tiny_ioi):
    from test_analyses import _tiny_prompts

    from workbench.analyses import get_analysis
    from workbench.analyses.head_divergence.score import run

    result = run(tiny, _tiny_prompts("head_divergence", tiny, tiny_ioi), get_analysis("head_divergence").make_params(),
                 progress=False)
    pp = result.per_prompt
    assert set(pp["metric"]) == {"divergence"} and set(pp["prompt"]) == {0, 1, 2}
    mean = pp.groupby(["layer", "head"])["value"].mean()
    sd = pp.groupby(["layer", "head"])["value"].std()  # ddof 1, as torch.std
    scores = result.scores.set_index(["layer", "head"]).loc[mean.index]
    np.testing.assert_allclose(mean.to_numpy(), scores["score"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(sd.to_numpy(), scores["sd"].to_numpy(), rtol=1e-9, atol=1e-12)


def test_divergence_cli_takes_model_and_fails_clearly_on_a_byte_tokenizer():
    from typer.testing import CliRunner

    from workbench.cli.main import app

    for command in ("report", "reinforce"):
        result = CliRunner().invoke(app, ["divergence", command, "--model", "tiny", "--device", "cpu",
                                          "--dtype", "float32"])
        assert result.exit_code == 2 and "No such option" not in result.output, result.output
        assert "single-token answers" in result.output


@pytest.mark.real_model
def test_smollm2_reinforce_check_and_cli(smol):
    from typer.testing import CliRunner

    from workbench.analyses import get_analysis
    from workbench.analyses.head_divergence.checks import run_reinforce
    from workbench.cli.main import app

    scores, _ = api.run_analysis("head_divergence", smol, params={"top_k": 5}, progress=False)
    check = get_analysis("head_divergence").check("reinforce")
    result = run_reinforce(smol, check.make_params({"k": "5", "n_random": "2"}), scores=scores, progress=False)
    table, s = result.tables["reinforce"], result.summary
    assert result.kind == "reinforce" and table["condition"].tolist() == ["baseline", "top-k", "random-0", "random-1"]
    assert s["heads"] == api.top_heads(scores, 5) and 0 <= s["top_k_follow_rate"] <= 1
    assert s["random_follow_rate"] == pytest.approx(table["follow_rate"].iloc[2:].mean())
    result = CliRunner().invoke(app, ["divergence", "report", "--model", "smollm2-135m", "--top-k", "3"])
    assert result.exit_code == 0, result.output
    assert "head_divergence: top 3 heads by score" in " ".join(result.output.split()), result.output
