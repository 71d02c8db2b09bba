"""The app's pure logic (app.controllers) and its figure builders (the app process and torch: test_facade)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from example_analysis import SMALL, example_registered  # noqa: F401,F811  (a fixture)

from workbench.results import runs as results
from workbench.viz import heads as viz
from workbench_app import controllers as C
from workbench_app import intervention_controllers as IC


def frame(values: np.ndarray, analysis: str = "attention_profile", model: str = "tiny", prompt_set: str = "p"):
    layers, heads = values.shape
    rows = [{"analysis": analysis, "model": model, "prompt_set": prompt_set, "layer": layer, "head": head,
             "score": float(values[layer, head]), "bos_mass": float(values[layer, head]) / 10}
            for layer in range(layers) for head in range(heads)]
    return pd.DataFrame(rows)


def save(df: pd.DataFrame, results_dir):
    return results.save_run(df, params={}, model_fingerprint="m", prompts_fingerprint="p", timings={"total": 1.0},
                            results_dir=results_dir)


def test_query_round_trip_drops_unknown_keys_and_caps_values():
    state = C.parse_query("?run=abc&head=L3H5&evil=<script>&col=" + "x" * 5000)
    assert state["run"] == "abc" and state["head"] == "L3H5" and "evil" not in state
    assert len(state["col"]) == 2000
    assert C.parse_query(C.build_query({"run": "r1", "head": "L1H2", "k": 5, "text": None})) == \
        {"run": "r1", "head": "L1H2", "k": "5"}
    assert C.build_query({}) == ""


@pytest.mark.parametrize("value", ["abc", "1.5", "-3", "100000", None, float("nan")])
def test_int_in_rejects_bad_values_with_a_message(value):
    with pytest.raises(C.AppInputError, match="whole number between 1 and 200"):
        C.int_in(value, 1, 200, "top-k")
    assert C.int_or(value, 1, 200, 7) == 7


def test_parse_head_field_validates_against_the_model_shape():
    assert C.parse_head_field("L1H2, L0H0;L1H2", 2, 4) == ("L0H0", "L1H2")
    with pytest.raises(C.AppInputError, match="do not exist.*L0..L1.*H0..H3"):
        C.parse_head_field("L5H0", 2, 4)
    with pytest.raises(C.AppInputError, match="malformed head label"):
        C.parse_head_field("L3H", 2, 4)
    with pytest.raises(C.AppInputError, match="at least one head"):
        C.parse_head_field("  ", 2, 4)
    with pytest.raises(C.AppInputError, match="one head"):
        C.parse_head_field("L0H0,L1H1", 2, 4, allow_many=False)


def test_click_and_toggle_heads():
    assert C.head_from_click({"points": [{"x": 2, "y": 1, "z": 0.3}]}) == "L1H2"
    assert C.head_from_click(None) is None and C.head_from_click({"points": []}) is None
    assert C.toggle_head("L0H0, L1H2", "L1H2") == "L0H0"
    assert C.toggle_head("L0H0", "L1H1") == "L0H0, L1H1"


def test_top_heads_sorted_with_labels():
    values = np.arange(8, dtype=float).reshape(2, 4)
    top = C.top_heads(frame(values), n=3)
    assert top["head_label"].tolist() == ["L1H3", "L1H2", "L1H1"]
    assert top["score"].tolist() == [7.0, 6.0, 5.0]
    with pytest.raises(C.AppInputError, match="no column"):
        C.top_heads(frame(values), column="nope")


def test_compare_identical_reversed_and_different_shapes():
    values = np.arange(12, dtype=float).reshape(3, 4)
    stats, diff = C.compare(frame(values), frame(values), k=4)
    assert stats["top_k_overlap"] == 4 and stats["jaccard"] == 1.0 and stats["spearman"] == pytest.approx(1.0)
    assert (diff["difference"] == 0).all()
    stats, diff = C.compare(frame(values), frame(-values), k=4)  # signed B: ranked by |score|, the same order
    assert stats["top_k_overlap"] == 4 and stats["spearman"] == pytest.approx(1.0) and (diff["difference"] == 0).all()
    stats, diff = C.compare(frame(values), frame(11 - values), k=4)
    assert stats["top_k_overlap"] == 0 and stats["spearman"] == pytest.approx(-1.0)
    # the head ranked first in A (L2H3) is last in B: percentile 100 − 100/12
    top = diff.set_index(["layer", "head"]).loc[(2, 3), "difference"]
    assert top == pytest.approx(100 - 100 / 12, abs=0.01)
    stats, diff = C.compare(frame(values), frame(np.ones((2, 4))), k=3)
    assert diff is None and stats["same_shape"] is False and stats["spearman"] is None


def test_circuits_page_logic_skips_broken_files_and_rejects_unknown_names(tmp_path):
    from workbench.analyses.circuits.report import compare_circuits
    from workbench.results.circuits import Circuit, save_circuit

    for name, heads in (("a", ["L0H1", "L1H2", "L1H3"]), ("b", ["L1H2", "L1H3"])):
        save_circuit(Circuit(name=name, model="tiny", task="ioi", heads=heads, n_layers=2, n_heads=4,
                             method="activation_patching", selection="top 3"), tmp_path)
    (tmp_path / "broken.toml").write_text("heads = [")
    saved = C.circuit_table(tmp_path)
    assert list(saved["name"]) == ["a", "b"]  # the broken file is not offered
    assert [o["value"] for o in C.circuit_options(saved)] == ["a", "b"]
    assert C.circuit_name("b", saved, "B") == "b"
    for bad in ("broken", "../a", None):
        with pytest.raises(C.AppInputError, match="pick one of: a, b"):
            C.circuit_name(bad, saved, "A")
    result = compare_circuits("a", "b", tmp_path)
    rows = dict(result.rows().itertuples(index=False))
    assert rows["shared heads"] == "2: L1H2, L1H3" and rows["Jaccard |A∩B|/|A∪B|"] == "0.667"
    assert rows["overlap coefficient |A∩B|/min(|A|,|B|)"] == "1.000"
    facts = C.circuit_facts(result.a, result.b).set_index("attribute")
    assert facts.loc["heads", "A"] == "3" and facts.loc["heads", "B"] == "2" and facts.loc["task", "B"] == "ioi"


def test_catalog_lookup_and_head_across_runs(tmp_path):
    a = save(frame(np.arange(8, dtype=float).reshape(2, 4)), tmp_path)
    b = save(frame(-np.arange(8, dtype=float).reshape(2, 4), analysis="other", prompt_set="q"), tmp_path)
    runs = C.catalog(tmp_path)
    assert set(runs["run_id"]) == {a.run_id, b.run_id}
    assert C.load_scores(a.run_id, runs)["score"].max() == 7.0
    with pytest.raises(C.AppInputError, match="No saved run"):
        C.load_scores("20990101T000000Z-deadbeef", runs)
    with pytest.raises(C.AppInputError, match="not a run id"):
        C.load_scores("../../etc/passwd", runs)
    across = C.head_across_runs(1, 3, "tiny", runs).set_index("analysis")
    assert across.loc["attention_profile", "rank"] == "1 / 8"
    assert across.loc["other", "rank"] == "1 / 8 by |score|"  # signed: −7 is the strongest
    assert across.loc["other", "score"] == -7.0
    tied = save(frame(np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]), analysis="tied", prompt_set="t"),
                tmp_path)
    across = C.head_across_runs(1, 3, "tiny", C.catalog(tmp_path)).set_index("analysis")
    assert tied.run_id in set(across["run_id"]) and across.loc["tied", "rank"] == "2.5 / 8"  # 4 heads tied at 1.0


def test_intervention_request_validates_every_field():
    base = dict(heads="L1H2", edit="scale", alpha="2", keys="0", metric="loss", source="natural", typed="",
                n_prompts=2, n_tokens=16, patch_text="", n_layers=2, n_heads=4)
    args = IC.intervention_request(**base)
    assert args == {"heads": "L1H2", "edit": "scale", "metric": "loss", "source": "natural", "alpha": 2.0,
                    "n_prompts": 2, "n_tokens": 16}
    args = IC.intervention_request(**{**base, "edit": "reweight", "keys": "0, -1", "source": "typed",
                                     "typed": "one\n\ntwo\n"})
    assert args["keys"] == "0,-1" and args["texts"] == ["one", "two"]
    bad = [({"heads": "L9H9"}, "do not exist"), ({"edit": "explode"}, "Unknown edit"),
           ({"alpha": "inf"}, "α must be a number"), ({"edit": "reweight", "keys": "0;x"}, "Key positions"),
           ({"source": "typed", "typed": "x" * 30_000}, "at most 20,000"),
           ({"source": "typed", "typed": "\n".join("p" * 3 for _ in range(40))}, "at most 16 prompts"),
           ({"n_tokens": 100_000}, "tokens each must be a whole number between 8 and 2,048"),
           ({"n_prompts": None}, "n must be a whole number between 1 and 16"),
           ({"metric": "logit_diff"}, "cannot be measured on bundled natural text; choose loss")]
    for change, message in bad:
        with pytest.raises(C.AppInputError, match=message):
            IC.intervention_request(**{**base, **change})


def test_intervention_frames_from_a_worker_result():
    result = {"rows": [{"prompt": 0, "text": "a", "metric": "loss", "before": 1.0, "after": 1.5, "delta": 0.5},
                       {"prompt": 1, "text": "b", "metric": "loss", "before": 2.0, "after": 1.0, "delta": -1.0}],
              "summary": {"metric": "loss", "n": 2, "before": 1.5, "after": 1.25, "delta": -0.25,
                          "share_increased": 0.5}, "edits": ["scale[α=0] L1H2"]}
    table, agg = IC.intervention_frames(result)
    assert table["delta"].tolist() == [0.5, -1.0]
    assert agg.loc[0, "mean delta"] == -0.25 and agg.loc[0, "edit"] == "scale[α=0] L1H2"


def test_sample_prompts_are_real_text():
    samples = C.sample_prompts()
    assert len(samples) == 4 and all(len(s) > 200 for s in samples) and len(set(samples)) == 4


def test_head_heatmap_grid_and_hover():
    values = np.arange(8, dtype=float).reshape(2, 4)
    fig = viz.head_heatmap(frame(values), highlight=[(1, 2)])
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (2, 4) and z[1, 2] == 6.0
    assert "<b>L1H2</b>" in fig.data[0].text[1][2] and "bos_mass: 0.6" in fig.data[0].text[1][2]
    assert list(fig.layout.yaxis.ticktext) == ["L0", "L1"] and list(fig.layout.xaxis.ticktext)[-1] == "H3"
    assert fig.data[1].x == (2,) and fig.data[1].y == (1,)


def test_pattern_heatmap_downsamples_long_prompts_keeping_peaks():
    t = 500
    pattern = np.tril(np.full((t, t), 1e-3))
    pattern[400, 7] = 0.9  # one sharp key
    fig = viz.pattern_heatmap([f"t{i}" for i in range(t)], pattern, head="L0H0", max_cells=100)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (100, 100)
    assert np.nanmax(z) == pytest.approx(0.9) and np.nanargmax(z) == 80 * 100 + 1
    assert "block-max" in fig.layout.title.text
    small = viz.pattern_heatmap(["a", "b"], [[1.0, 0.0], [0.4, 0.6]], head="L0H0")
    assert np.isnan(np.asarray(small.data[0].z, dtype=float)[0, 1])  # the future is hidden


def test_catalog_offers_runs_only_and_lists_each_runs_checks(tmp_path, example_registered):  # noqa: F811
    """A run and a check of it (the worked example on the tiny model): the pickers offer the run, never the check,
    its scores load, and the run's row names the check with its summary headline."""
    import workbench.api as wb

    tmp_path = tmp_path / "results"
    run = wb.run("first_token_attention", "tiny", params=SMALL, progress=False, results_dir=tmp_path)
    check = wb.check("first_token_attention", "ablate_top", "tiny", params=SMALL, run_id=run.record.run_id,
                     progress=False, results_dir=tmp_path)
    assert set(wb.find_results(results_dir=tmp_path)["kind"]) == {"run", "ablate_top"}
    runs = C.catalog(tmp_path)
    assert [o["value"] for o in C.run_options(runs)] == [run.record.run_id]
    assert C.load_scores(run.record.run_id, runs).equals(run.scores)
    with pytest.raises(C.AppInputError, match="No saved run"):
        C.load_scores(check.record.run_id, runs)
    line = runs.loc[0, "checks"]
    assert line.startswith("ablate_top: ") and f"top_delta={check.summary['top_delta']:.3g}" in line
