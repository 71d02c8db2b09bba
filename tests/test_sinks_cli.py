"""The `workbench sinks` command, the shipped letter-answer sets and the ACT search on SmolLM2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from workbench.analyses.attention_sinks.prompts import LETTERS, load_items, mc_prompts
from workbench.cli.main import app


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


@pytest.mark.real_model
def test_act_search_runs_on_smollm2(smol):
    from workbench.analyses.attention_sinks.act_search import SearchParams, act_search

    cal = mc_prompts("calibration")
    held = mc_prompts("heldout")
    from workbench.core.prompts import PromptSet

    cal = PromptSet(name="fl-cal-8", texts=cal.texts[:8], metadata=cal.metadata[:8], prepend_bos=False)
    held = PromptSet(name="fl-held-8", texts=held.texts[:8], metadata=held.metadata[:8], prepend_bos=False)
    result = act_search(smol, cal, held, SearchParams(max_candidates=2), progress=False)
    assert len(result.trace) == len(result.candidates) <= 2
    summary = result.summary.set_index("split")
    cal = summary.loc["calibration"]
    best = cal["baseline_accuracy"]  # a head is kept exactly when it beats the best accuracy so far
    for row in result.trace.itertuples():
        assert row.kept == (row.calibration_accuracy > best), row
        best = max(best, row.calibration_accuracy)
    kept = result.trace[result.trace["kept"]]
    assert result.selected == kept["head"].tolist()
    if len(kept):  # the summary re-scores the kept heads: it must reproduce the search's last kept step
        assert cal["calibrated_accuracy"] == kept["calibration_accuracy"].iloc[-1]
        assert cal["calibrated_margin"] == pytest.approx(kept["calibration_margin"].iloc[-1], abs=1e-5)
    else:
        assert (cal["calibrated_accuracy"], cal["calibrated_margin"]) == (cal["baseline_accuracy"],
                                                                         cal["baseline_margin"])
    assert summary.loc["heldout", "baseline_accuracy"] > 0.25  # SmolLM2 is above chance on first letters
