"""The `workbench sinks` command, the shipped letter-answer sets and the ACT search on SmolLM2."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from typer.testing import CliRunner

from workbench.analyses.attention_sinks.prompts import LETTERS, load_items, mc_prompts
from workbench.cli.main import app
from workbench.core.heads import parse_heads
from workbench.core.prompts import pad_batch, tokenize
from workbench.engine import hooks as H
from workbench.models.loading import model_info


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_shipped_letter_sets_are_balanced_and_split_deterministically():
    for dataset in ("first_letter", "simple_mc"):
        cal, held, everything = (mc_prompts(s, dataset=dataset) for s in ("calibration", "heldout", "all"))
        assert len(cal) + len(held) == len(everything) and len(held) == len(everything) // 3
        assert not {m["id"] for m in cal.metadata} & {m["id"] for m in held.metadata}
        assert mc_prompts("heldout", dataset=dataset).fingerprint == held.fingerprint
        answers = [it["answer"] for it in load_items(f"data/sinks/{dataset}.json")]
        assert set(answers) == set(LETTERS) and max(answers.count(x) for x in LETTERS) <= len(answers) / 4 + 2
    assert everything.texts[0].startswith("<|im_start|>user\n") and everything.texts[0].endswith("Answer:")


def test_report_command_on_tiny_shows_no_sinks(tmp_path):
    result = invoke("sinks", "report", "-m", "tiny", "--n-prompts", "2", "--n-tokens", "32", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "sink rate" in result.output and "0.0% of 8 heads" in result.output
    assert (tmp_path / "first_token_share.html").exists() and (tmp_path / "layer_norms.html").exists()


def test_edit_command_rejects_unknown_kind_and_missing_heads():
    result = invoke("sinks", "edit", "--kind", "nonsense", "-m", "tiny")
    assert result.exit_code == 2 and "Unknown --kind" in result.output
    result = invoke("sinks", "edit", "--kind", "gamma", "-m", "tiny")
    assert result.exit_code == 2 and "needs --heads" in result.output


def _margins_by_hand(model, prompts, heads=(), keys=(), beta=0.4) -> torch.Tensor:
    """Letter margins at the last position with log β added to the attention scores of each calibrated head's
    hidden-sink keys of that prompt (bridge hooks written here, not the library's SinkCalibration)."""
    tok = model_info(model).tokenizer
    ids_of = {x: next(i[0] for i in (tok(w, add_special_tokens=False)["input_ids"] for w in (f" {x}", x))
                      if len(i) == 1) for x in LETTERS}

    def bias(scores, hook=None, layer=0, rows=()):
        scores = scores.clone()
        for b, row in enumerate(rows):
            for lay, h in heads:
                if lay == layer:
                    for k in keys[row].get((lay, h), []):
                        scores[b, h, :, k] += math.log(beta)
        return scores
    seqs, margins = tokenize(model, prompts), []
    for start in range(0, len(seqs), 16):  # right-padded batches: a causal model's real positions are unchanged
        rows = range(start, min(start + 16, len(seqs)))
        ids, _ = pad_batch([seqs[r] for r in rows], tok.pad_token_id)
        fwd = [(H.attn_scores(x), partial(bias, layer=x, rows=rows)) for x in sorted({lay for lay, _ in heads})]
        with torch.no_grad():
            logits = model.run_with_hooks(ids, fwd_hooks=fwd).double()
        for b, row in enumerate(rows):
            last, right = logits[b, len(seqs[row]) - 1], prompts.metadata[row]["answer_letter"]
            margins.append(float(last[ids_of[right]] - max(last[ids_of[x]] for x in LETTERS if x != right)))
    return torch.tensor(margins)


def _accuracy(margins: torch.Tensor) -> float:
    return float((margins > 0).double().mean())


def _heads(labels) -> list[tuple[int, int]]:
    return [(h.layer, h.head) for h in parse_heads(",".join(labels))] if labels else []


def test_act_search_check_on_tiny_scores_the_kept_heads_like_hand_written_hooks(tiny):
    from workbench.analyses import get_analysis
    from workbench.analyses.attention_sinks import SearchParams
    from workbench.analyses.attention_sinks.act_search import sink_keys
    from workbench.analyses.attention_sinks.score import prompt_alphas
    from workbench.analyses.base import resolve

    check = get_analysis("attention_sinks").check("act_search")
    assert not check.needs_scores
    overrides = {"max_candidates": "1", "threshold": "0.02", "uniform_ratio": "0.5", "min_queries": "2",
                 "holdout_every": "5"}  # a random model has weak hidden sinks: a looser rule finds some
    params = check.make_params(overrides)
    result = resolve(check.run)(tiny, params, scores=None, progress=False)
    assert result.kind == "act_search" and result.scores is None
    trace, s = result.tables["trace"], result.summary
    assert 0 < len(trace) == len(s["candidates"]) <= 1 and trace["head"].tolist() == s["candidates"]
    assert s["selected"] == trace.loc[trace["kept"], "head"].tolist()
    held, cal = mc_prompts("heldout", holdout_every=5), mc_prompts("calibration", holdout_every=5)
    assert (s["heldout_n"], s["calibration_n"]) == (len(held), len(cal)) == (20, 80)
    assert s["heldout_baseline_accuracy"] == _accuracy(_margins_by_hand(tiny, held))
    search = SearchParams(**{k: float(v) if k in ("threshold", "uniform_ratio") else int(v)
                             for k, v in overrides.items() if k != "holdout_every"})
    keys = sink_keys(prompt_alphas(tiny, cal, progress=False), search)
    first = _margins_by_hand(tiny, cal, _heads(s["candidates"][:1]), keys, params.beta)  # the first greedy step
    assert trace["calibration_margin"][0] == pytest.approx(float(first.mean()), abs=1e-5)
    assert trace["calibration_accuracy"][0] == _accuracy(first)
    assert abs(float(first.mean()) - s["calibration_baseline_margin"]) > 1e-3  # the calibration does act


@pytest.mark.real_model
def test_act_search_on_smollm2_chooses_the_heads_hand_written_hooks_choose(smol):
    """The greedy search replayed with margins from hand-written hooks keeps the same heads, with the same
    calibration accuracies, and gives the same held-out accuracy."""
    from workbench.analyses.attention_sinks.act_search import SearchParams, act_search, sink_keys
    from workbench.analyses.attention_sinks.score import prompt_alphas
    from workbench.core.prompts import PromptSet

    cal, held = mc_prompts("calibration"), mc_prompts("heldout")
    cal = PromptSet(name="fl-cal-8", texts=cal.texts[:8], metadata=cal.metadata[:8], prepend_bos=False)
    held = PromptSet(name="fl-held-8", texts=held.texts[:8], metadata=held.metadata[:8], prepend_bos=False)
    params = SearchParams(max_candidates=2)
    result = act_search(smol, cal, held, params, progress=False)
    assert len(result.trace) == len(result.candidates) == 2
    cal_keys = sink_keys(prompt_alphas(smol, cal, progress=False), params)
    best, selected = _accuracy(_margins_by_hand(smol, cal)), []
    for row in result.trace.itertuples():
        head = _heads([row.head])[0]
        accuracy = _accuracy(_margins_by_hand(smol, cal, [*selected, head], cal_keys, params.beta))
        assert row.calibration_accuracy == accuracy, row
        if accuracy > best:
            best, selected = accuracy, [*selected, head]
    assert _heads(result.selected) == selected
    held_keys = sink_keys(prompt_alphas(smol, held, progress=False), params)
    summary = result.summary.set_index("split")
    assert summary.loc["heldout", "calibrated_accuracy"] == _accuracy(
        _margins_by_hand(smol, held, selected, held_keys, params.beta))
    assert summary.loc["heldout", "baseline_accuracy"] > 0.25  # SmolLM2 is above chance on first letters
