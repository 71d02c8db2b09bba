"""The Atlas and head-profile pages' logic (app.atlas_controllers, the page layouts) on a real tiny-model atlas in a
temporary catalog, and the worker side of a head profile (workbench.atlas.probe) on the tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from workbench import api
from workbench_app import atlas_controllers as ac
from workbench_app.controllers import AppInputError


@pytest.fixture(scope="module")
def atlas_dir(tmp_path_factory, tiny):
    """A results catalog with two tiny runs and their atlas; the previous-token role at the median value, so about
    half of the 8 heads hold it."""
    root = tmp_path_factory.mktemp("atlas-app")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_CACHE_DIR", str(root.parent / f"{root.name}-cache"))
        api.run("attention_profile", tiny, params={"n_prompts": 3, "n_tokens": 32}, results_dir=root, progress=False)
        induction = api.run("induction_heads", tiny, params={"n_prompts": 3, "half_len": 16}, results_dir=root,
                            progress=False)
        median = float(induction.scores["prev_token_random"].median())
        api.build_atlas("tiny", n_boot=50, thresholds={"previous_token": median}, results_dir=root)
    return root


@pytest.fixture()
def ctx(atlas_dir):
    from workbench_app.main import create_app

    return create_app("tiny", results_dir=atlas_dir, start_worker=False).workbench_context


def test_rank_matrix_has_every_head_and_metric_and_filters_by_role(ctx):
    atlas = ctx.atlas("tiny")
    matrix = ac.rank_matrix(atlas)
    metrics = list(atlas.metrics["metric"])
    assert len(matrix) == 8 and list(matrix.columns) == ["head", "layer", "roles", "best rank", *metrics]
    values = atlas.values.set_index(["label", "metric"])["rank"]
    for row in matrix.to_dict("records"):
        assert all(row[m] == values[(row["head"], m)] for m in metrics)
        assert row["best rank"] == min(row[m] for m in metrics)
    holders = set(atlas.roles.loc[atlas.roles["role"] == "previous_token", "label"])
    assert 0 < len(holders) < 8
    assert set(ac.rank_matrix(atlas, ["previous_token"])["head"]) == holders
    with pytest.raises(AppInputError, match="No role bogus in this atlas; roles held: previous_token"):
        ac.rank_matrix(atlas, ["bogus"])


def test_metric_table_shows_stability_and_the_causal_verdict(ctx):
    atlas = ctx.atlas("tiny")
    table = ac.metrics_table(atlas)
    assert list(table["metric"]) == list(atlas.metrics["metric"])
    assert table["top-10 stability"].astype(float).between(0, 1).all() and (table["prompts"] == 3).all()
    assert set(table["causal check"]) == {"not run"}


def test_head_profile_lists_each_metric_with_interval_and_rank_and_refuses_missing_heads(ctx):
    atlas = ctx.atlas("tiny")
    found = ac.profile(atlas, " L1H2 ")
    rows = atlas.values[atlas.values["label"] == "L1H2"].set_index("metric")
    assert found["label"] == "L1H2" and list(found["metrics"]["metric"]) == list(rows.index)
    first = found["metrics"].iloc[0]
    value = rows.loc[first["metric"]]
    assert first["rank"] == f"{value['rank']:g} / 8"
    assert first["interval"] == f"[{value['lo']:.3g}, {value['hi']:.3g}]" and value["lo"] <= value["hi"]
    assert set(found["roles"]["role"]) <= {"previous_token"}
    best = atlas.stability.iloc[0]  # a top-k head: its own share of resamples keeping it in the top-k
    top = ac.profile(atlas, best["label"])["metrics"].set_index("metric")
    assert top.loc[best["metric"], "kept in the top-10 (share of resamples)"] == f"{best['share_in_topk']:.3g}"
    assert (found["metrics"]["causal check"] == "not run").all()
    with pytest.raises(AppInputError, match="tiny has no head L9H0: it has layers 0..1 and heads 0..3"):
        ac.profile(atlas, "L9H0")
    with pytest.raises(AppInputError, match="malformed head label"):
        ac.profile(atlas, "head nine")


def _text(component) -> str:
    """Every string inside a Dash component tree."""
    if isinstance(component, str):
        return component
    if isinstance(component, (list, tuple)):
        return " ".join(_text(c) for c in component)
    children = getattr(component, "children", None)
    return _text(children) if children is not None else ""


def test_pages_render_an_atlas_a_profile_and_clear_messages(ctx):
    from workbench_app.pages import atlas as atlas_page
    from workbench_app.pages import head_profile

    page = _text(atlas_page.layout({"model": "tiny", "role": "previous_token"}, ctx))
    assert "Heads × metrics (ranks)" in page and "induction_heads.prev_token_random" in page
    assert "Not in this atlas yet" in page and "workbench retrieval_heads run -m tiny" in page
    ctx.model = "smollm2-135m"  # a model without an atlas in this catalog
    empty = _text(atlas_page.layout({"model": "smollm2-135m"}, ctx))
    assert "no saved atlas of smollm2-135m" in empty and "workbench atlas build -m smollm2-135m --fill" in empty
    ctx.model = "tiny"
    profile = _text(head_profile.layout({"model": "tiny", "head": "L1H2"}, ctx))
    assert "L1H2 · tiny" in profile and "Every metric (7)" in profile
    assert "Live views are off: the app was started without a model worker" in profile
    outside = _text(head_profile.layout({"model": "tiny", "head": "L9H0"}, ctx))
    assert "tiny has no head L9H0" in outside and "Every metric" not in outside
    nowhere = _text(head_profile.layout({"model": "gemma3-270m", "head": "L1H2"}, ctx))
    assert "no saved atlas of gemma3-270m" in nowhere


def test_heatmap_rows_are_the_best_ranked_heads_and_clicks_name_them(ctx):
    atlas = ctx.atlas("tiny")
    matrix = ac.rank_matrix(atlas)
    shown = ac.heatmap_frame(matrix, list(atlas.metrics["metric"]), limit=3)
    assert len(shown) == 3 and shown.min(axis=1).max() <= matrix["best rank"].nsmallest(4).max()
    assert ac.head_from_heatmap({"points": [{"x": "m", "y": "L1H3"}]}) == "L1H3"
    assert ac.head_from_heatmap({"points": [{"y": "nonsense"}]}) is None and ac.head_from_heatmap(None) is None


def test_attention_tokens_shade_by_weight_over_the_largest_non_bos_key():
    task = {"task": "t", "tokens": ["<bos>", "a", "b", "c"], "query": 2, "bos": True, "offset": 0, "n_tokens": 4,
            "rows": [[1.0], [0.5, 0.5], [0.8, 0.05, 0.15], [0.25, 0.25, 0.25, 0.25]]}
    tokens, caption = ac.attention_tokens(task)
    assert [t["kind"] for t in tokens] == ["key", "key", "query", "future"]
    assert [t["alpha"] for t in tokens] == [1.0, pytest.approx(1 / 3), 1.0, 0.0]
    assert "BOS gets 0.80" in caption and "token 2 'b'" in caption
    assert [t["alpha"] for t in ac.attention_tokens(task, 3)[0]] == [1.0, 1.0, 1.0, 1.0]
    with pytest.raises(AppInputError, match="outside this prompt of 4 tokens"):
        ac.attention_tokens(task, 4)


def test_head_probe_rows_are_the_heads_attention_on_each_task(tiny):
    from workbench.atlas.probe import TEXT_TOKENS, head_probe
    from workbench.core.natural_text import text_chunks

    out = head_probe(tiny, "L1H2")
    tasks = {t["task"]: t for t in out["tasks"]}
    assert set(tasks) == {"greater_than", "repeated_tokens", "natural_text", "niah"}
    assert {s["task"] for s in out["skipped"]} == {"ioi", "colored_objects", "docstring"}  # names: many bytes
    assert "not single tokens" in out["skipped"][0]["reason"]
    for task in tasks.values():
        assert len(task["rows"]) == len(task["tokens"]) and task["bos"]
        # softmax rows, each entry rounded to 4 decimals: |Σ − 1| ≤ (q + 1) · 5e-5 (+ float32 slack)
        assert all(len(r) == q + 1 and abs(sum(r) - 1) <= (q + 1) * 5e-5 + 1e-5 for q, r in enumerate(task["rows"]))
    text = text_chunks(tiny, 1, TEXT_TOKENS).texts[0]
    ref = api.head_pattern(tiny, text, 1, 2, max_tokens=512)
    assert ref["tokens"] == tasks["natural_text"]["tokens"]
    last = len(ref["tokens"]) - 1
    torch.testing.assert_close(torch.tensor(tasks["natural_text"]["rows"][last]),
                               torch.tensor(ref["pattern"][last]), atol=1e-4, rtol=0)
    niah = tasks["niah"]
    assert niah["query"] < len(niah["tokens"]) - 1  # the question's last token, before the appended answer
    with pytest.raises(api.WorkbenchError, match="do not exist"):
        head_probe(tiny, "L2H0")


def test_ablate_everywhere_measures_each_task_before_and_after(tiny):
    from workbench.analyses.induction_heads.checks import REPEATED_HALF_LOSS
    from workbench.analyses.induction_heads.prompts import repeated_tokens
    from workbench.atlas.probe import HALF_LEN, N_PROMPTS, ablate_everywhere
    from workbench.edits.apply import run_metric

    messages = []
    zero = ablate_everywhere(tiny, "L0H1", "zero", progress=messages.append)
    mean = ablate_everywhere(tiny, "L0H1", "mean")
    rows = {r["task"]: r for r in zero["rows"]}
    assert set(rows) == {"greater_than", "repeated_tokens", "natural_text", "niah"} and len(messages) == 4
    clean = run_metric(tiny, repeated_tokens(tiny, N_PROMPTS, HALF_LEN, seed=0), REPEATED_HALF_LOSS)
    assert rows["repeated_tokens"]["before"] == pytest.approx(sum(clean) / len(clean), rel=1e-6)
    for r in zero["rows"]:
        assert r["n_prompts"] == N_PROMPTS and math.isclose(r["delta"], r["after"] - r["before"], rel_tol=1e-9)
        assert r["worse_by"] == (r["delta"] if r["higher_is"] == "worse" else -r["delta"])
        assert r["delta"] != 0.0
    assert [r["before"] for r in mean["rows"]] == pytest.approx([r["before"] for r in zero["rows"]])
    assert [r["after"] for r in mean["rows"]] != pytest.approx([r["after"] for r in zero["rows"]])
    frame = ac.ablation_frame(zero)
    assert list(frame["task"]) == [r["label"] for r in zero["rows"]] and "worse by" in frame.columns
    with pytest.raises(api.WorkbenchError, match="'mean' or 'zero'"):
        ablate_everywhere(tiny, "L0H1", "half")
