"""Interventions on task prompt sets (workbench.edits.sources): typed answers, clean ← corrupted-twin patching
through the worker's op matching workbench.api.intervene run directly, and the saved "intervention" run."""

from __future__ import annotations

import math

import pytest

from workbench.core.errors import PromptError
from workbench.edits import sources
from workbench.worker import Worker
from workbench_app import intervention_controllers as IC
from workbench_app.controllers import parse_query

TOP_IOI = "L23H3,L20H0,L17H4"  # the largest |score| heads of circuits/smollm2-135m_ioi.toml's score map


def run_op(model_name: str, **args) -> dict:
    events: list[dict] = []
    Worker(model_name, events.append).handle({"id": "t", "op": "intervene", "args": args})
    return events[-1]


def test_typed_lines_carry_answers_after_tabs():
    texts, meta = sources.parse_typed(["Mary and John met. John thanked\tMary\tJohn", "The sky is\\t blue",
                                       "  plain prompt  "])
    assert texts == ["Mary and John met. John thanked", "The sky is", "plain prompt"]
    assert meta == [{"answer": " Mary", "wrong": " John"}, {"answer": " blue"}, {}]
    for lines, message in [(["a\tb\tc\td"], "3 tabs"), (["\tMary"], "no prompt"), (["a\t  "], "empty answer")]:
        with pytest.raises(PromptError, match=message):
            sources.parse_typed(lines)
    with pytest.raises(PromptError, match=r"answer ⇥ wrong' on every line .* lines 2, 3 lack answer or wrong"):
        sources.check_metric("typed", "logit_diff", meta)
    with pytest.raises(PromptError, match=r"needs 'prompt ⇥ answer' on every line .* line 3 lacks answer"):
        sources.check_metric("typed", "answer_logprob", meta)
    with pytest.raises(PromptError, match="cannot be measured on greater-than.*choose prob_diff or loss"):
        sources.check_metric("greater_than", "logit_diff")
    sources.check_metric("ioi", "logit_diff")
    sources.check_metric("niah", "answer_logprob")


def test_the_app_request_names_fields_and_ranges():
    base = dict(heads="L23H3", edit="patch", alpha="0", keys="0", metric="logit_diff", source="ioi", typed="",
                n_prompts=8, n_tokens=None, patch_text="", n_layers=30, n_heads=9)
    assert IC.intervention_request(**base) == {"heads": "L23H3", "edit": "patch", "metric": "logit_diff",
                                               "source": "ioi", "n_prompts": 8}
    bad = [({"n_prompts": 99}, "n must be a whole number between 1 and 16; got 99"),
           ({"n_prompts": None}, "n must be a whole number between 1 and 16; the field is empty"),
           ({"source": "niah", "metric": "answer_logprob", "n_tokens": 20}, "between 96 and 2,048; got 20"),
           ({"source": "typed", "typed": "a\tb"}, "needs 'prompt ⇥ answer ⇥ wrong'"),
           ({"source": "typed", "typed": "a\tb\tc"}, "Patching typed prompts needs source prompts"),
           ({"source": "niah", "metric": "loss", "n_tokens": 128}, "Patching NIAH prompts needs source prompts"),
           ({"source": "moon"}, "Choose a prompt set")]
    for change, message in bad:
        with pytest.raises(IC.AppInputError, match=message):
            IC.intervention_request(**{**base, **change})


def test_the_url_holds_the_request_and_says_when_text_was_too_long():
    args = IC.intervention_request(heads="L1H2", edit="ablate", alpha="", keys="", metric="logit_diff",
                                   source="typed", typed="A B A\tB\tA", n_prompts=None, n_tokens=None,
                                   patch_text="", n_layers=2, n_heads=4)
    query, note = IC.request_query({"typed": "A B A\tB\tA"}, args)
    assert note is None and IC.form_state(parse_query(query)) == {
        "heads": "L1H2", "edit": "ablate", "metric": "logit_diff", "source": "typed", "alpha": "0.0", "keys": "0",
        "n": 4, "tokens": 64, "typed": "A B A\tB\tA", "patch": ""}
    query, note = IC.request_query({"typed": "word " * 2000}, {**args, "source": "typed"})
    assert "typed" not in parse_query(query) and "too long to keep in the URL" in note


def test_a_multi_token_answer_is_refused_clearly(tiny):
    with pytest.raises(PromptError, match=r"Line 1: the answer ' cardamom' is 9 tokens .* must be one token"):
        sources.build(tiny, "typed", n=1, n_tokens=8, texts=["The spice is\tcardamom"])


def test_ioi_patching_through_the_worker_matches_the_api_and_is_saved(smol, isolated_dirs):
    from workbench import api
    from workbench.analyses.circuits.tasks import make_task
    from workbench.results.runs import load_result

    out = run_op("smollm2-135m", heads=TOP_IOI, edit="patch", metric="logit_diff", source="ioi", n_prompts=4)
    assert out["event"] == "done", out
    res = out["result"]
    task = make_task(smol, "ioi", n=4)
    direct = api.intervene(smol, task.clean, api.PatchHead(api.parse_heads(TOP_IOI), source=task.corrupt),
                           "logit_diff")
    for row, (_, ref) in zip(res["rows"], direct.iterrows(), strict=True):
        assert math.isclose(row["before"], ref["before"], abs_tol=1e-4)
        assert math.isclose(row["after"], ref["after"], abs_tol=1e-4)
    assert res["summary"]["before"] > 0  # SmolLM2 prefers the indirect object on clean IOI
    assert api.task_texts("ioi", 4) == list(task.clean.texts)  # the Head map's IOI prompts, drawn without a model
    assert res["prompt_set"] == "ioi-4-s0" and res["edits"] == direct.attrs["edits"]
    saved = load_result(res["run_id"])
    assert saved.kind == "intervention" and saved.record.analysis == "interventions"
    assert saved.record.params == {"heads": "L17H4,L20H0,L23H3", "edit": "patch", "metric": "logit_diff",
                                   "source": "ioi", "n": 4, "patched_from": "corrupted twins"}
    assert saved.tables["per_prompt"]["after"].tolist() == pytest.approx([r["after"] for r in res["rows"]])
    assert saved.summary["delta"] == pytest.approx(res["summary"]["delta"])
    listed = IC.saved_interventions(None, "smollm2-135m")
    assert listed["run_id"].tolist() == [res["run_id"]] and "heads=L17H4,L20H0,L23H3" in listed["params"].iloc[0]


def test_typed_answers_niah_and_greater_than_on_smollm2(smol):
    typed = run_op("smollm2-135m", heads="L0H0", edit="ablate", metric="logit_diff", source="typed",
                   texts=["When Mary and John went to the store, John gave a drink to\tMary\tJohn"])
    assert typed["event"] == "done" and typed["result"]["rows"][0]["before"] > 0
    bad = run_op("smollm2-135m", heads="L0H0", edit="ablate", metric="answer_logprob", source="typed",
                 texts=["The secret is\tcardamom pods"])
    assert bad["event"] == "error" and "is 3 tokens" in bad["message"] and "must be one token" in bad["message"]
    niah = run_op("smollm2-135m", heads="L0H0", edit="ablate", metric="answer_logprob", source="niah",
                  n_prompts=2, n_tokens=128)
    assert niah["event"] == "done" and all(r["before"] < 0 for r in niah["result"]["rows"])
    gt = run_op("smollm2-135m", heads="L0H0", edit="patch", metric="prob_diff", source="greater_than", n_prompts=2)
    assert gt["event"] == "done" and gt["result"]["params"]["patched_from"] == "corrupted twins"


def test_the_head_map_prompt_picker_offers_task_prompts():
    from workbench_app import controllers as C
    from workbench_app.pages.heads import prompt_options

    values = {o["value"] for o in prompt_options()}
    assert {"0", "ioi:0", "colored_objects:3", "greater_than:1", "docstring:2", "custom"} <= values
    assert C.prompt_text("greater_than:1", "").startswith("The ") and C.prompt_text("ioi:0", "").endswith(" to")
    for bad, message in [("moon:1", "Unknown task 'moon'"), ("ioi:9", "ioi prompt must be a whole number between 0 "
                                                                       "and 3; got '9'")]:
        with pytest.raises(C.AppInputError, match=message):
            C.prompt_text(bad, "")
