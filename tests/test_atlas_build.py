"""The atlas built from synthetic saved runs (tiny shape): planted heads, metric names, fingerprints, missing runs,
roles and thresholds, head errors, save/load/export and the comparison of two models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from atlas_data import planted, save_synthetic
from typer.testing import CliRunner

from workbench import api
from workbench.atlas.build import build_atlas
from workbench.atlas.compare import compare_atlases
from workbench.atlas.roles import multi_role
from workbench.atlas.store import export_atlas, load_atlas
from workbench.core.errors import WorkbenchError


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


@pytest.fixture
def no_circuits(tmp_path):
    (tmp_path / "circuits").mkdir()
    return tmp_path / "circuits"


def induction_run(results, fingerprint="fp-a", model="tiny", seed=0):
    score = planted(n_prompts=40, planted_at=(1, 2), high=0.9, seed=seed)
    prev = planted(n_prompts=40, planted_at=(0, 1), high=0.8, low=0.1, seed=seed + 1)
    return save_synthetic(results, "induction_heads", {"score": score, "prev_token_random": prev},
                          {"score": "score", "induction": "score", "prev_token_random": "prev_token_random"},
                          fingerprint=fingerprint, model=model)


def attribution_run(results, fingerprint="fp-a"):
    values = -planted(n_prompts=30, planted_at=(1, 2), high=0.6, low=0.0, noise=0.05)  # planted head: −0.6
    return save_synthetic(results, "head_attribution", {"activation": values},
                          {"score": "activation", "activation_score": "activation"}, fingerprint=fingerprint,
                          params={"task": "ioi"})


def test_planted_head_leads_its_metric_with_an_interval_and_stable_rank(results, no_circuits):
    induction_run(results)
    attribution_run(results)
    atlas = build_atlas("tiny", results_dir=results, top_k=1, circuit_dir=no_circuits, n_boot=300)
    assert list(atlas.metrics["metric"]) == ["head_attribution.activation_score@ioi", "induction_heads.induction",
                                             "induction_heads.prev_token_random"]
    row = atlas.values.set_index(["metric", "label"]).loc[("induction_heads.induction", "L1H2")]
    assert row["lo"] <= row["value"] <= row["hi"] and row["rank"] == 1
    stable = atlas.stability.set_index("metric")
    assert stable.loc["induction_heads.induction", "label"] == "L1H2"
    assert stable.loc["induction_heads.induction", "share_in_topk"] >= 0.95
    signed = atlas.values[atlas.values["metric"] == "head_attribution.activation_score@ioi"].set_index("label")
    assert signed["signed"].all() and signed.loc["L1H2", "value"] < -0.5 and signed.loc["L1H2", "rank"] == 1
    info = atlas.metrics.set_index("metric")
    assert info.loc["induction_heads.induction", "description"].startswith("bootstrap over prompts: mean of")
    assert (info["n_boot"] == 300).all() and (info["causal_verdict"] == "not run").all()
    assert set(atlas.roles.loc[atlas.roles["label"] == "L1H2", "role"]) == {"induction", "attribution@ioi"}
    assert set(multi_role(atlas.roles, atlas.values)["label"]) == {"L1H2"}
    assert set(atlas.roles.loc[atlas.roles["role"] == "previous_token", "label"]) == {"L0H1"}


def test_missing_analyses_are_listed_with_the_command_and_no_runs_names_them(results, no_circuits):
    with pytest.raises(WorkbenchError, match=r"no saved runs of tiny.*workbench attention_profile run -m tiny.*"
                                             r"workbench head_attribution run -m tiny --task ioi"):
        build_atlas("tiny", results_dir=results, circuit_dir=no_circuits)
    induction_run(results)
    atlas = build_atlas("tiny", results_dir=results, save=False, circuit_dir=no_circuits)
    missing = atlas.missing.set_index("analysis")
    assert "induction_heads" not in missing.index
    assert missing.loc["head_attribution", "command"] == "workbench head_attribution run -m tiny --task ioi"
    assert missing.loc["attention_profile", "command"] == "workbench attention_profile run -m tiny"


def test_a_misspelt_model_lists_the_known_models(results, no_circuits):
    from workbench.atlas.store import load_atlas

    for attempt in (lambda: build_atlas("smolm2-135m", results_dir=results, circuit_dir=no_circuits),
                    lambda: load_atlas("smolm2-135m", results)):
        with pytest.raises(WorkbenchError, match="Unknown model 'smolm2-135m'. Known models: smollm2-135m"):
            attempt()


def test_runs_of_two_fingerprints_are_never_mixed(results, no_circuits):
    old = attribution_run(results, fingerprint="fp-old")
    new = induction_run(results, fingerprint="fp-new")
    atlas = build_atlas("tiny", results_dir=results, save=False, circuit_dir=no_circuits)
    assert atlas.fingerprint == "fp-new" and atlas.params["other_fingerprints"] == ["fp-old"]
    assert not atlas.metrics["analysis"].eq("head_attribution").any()
    older = build_atlas("tiny", results_dir=results, save=False, fingerprint="fp-old", circuit_dir=no_circuits)
    assert set(older.metrics["analysis"]) == {"head_attribution"}
    with pytest.raises(WorkbenchError, match="never mixes fingerprints"):
        build_atlas("tiny", results_dir=results, run_ids=[old.run_id, new.run_id], circuit_dir=no_circuits)
    with pytest.raises(WorkbenchError, match="no runs of tiny with fingerprint fp-x"):
        build_atlas("tiny", results_dir=results, fingerprint="fp-x", circuit_dir=no_circuits)


def test_thresholds_change_roles_and_unknown_roles_fail(results, no_circuits):
    induction_run(results)
    strict = build_atlas("tiny", results_dir=results, save=False, thresholds={"induction": 0.95},
                         circuit_dir=no_circuits)
    assert "induction" not in set(strict.roles["role"]) and strict.params["thresholds"]["induction"] == 0.95
    with pytest.raises(WorkbenchError, match="no role retreival"):
        build_atlas("tiny", results_dir=results, thresholds={"retreival": 0.2}, circuit_dir=no_circuits)


def test_circuit_files_give_circuit_roles(results, tmp_path):
    from workbench.results.circuits import Circuit, save_circuit

    induction_run(results)
    save_circuit(Circuit(name="tiny_ioi", model="tiny", task="ioi", heads=("L1H2", "L0H0"), n_layers=2, n_heads=4,
                         method="hand-picked", selection="two heads"), tmp_path / "circ")
    atlas = build_atlas("tiny", results_dir=results, save=False, circuit_dir=tmp_path / "circ")
    assert set(atlas.circuits["label"]) == {"L1H2", "L0H0"}
    assert set(atlas.roles.loc[atlas.roles["label"] == "L1H2", "role"]) == {"induction", "circuit@ioi"}
    assert "head_attribution" in set(atlas.missing["analysis"])


def test_head_outside_the_model_is_a_clear_error_in_api_and_cli(results, no_circuits):
    induction_run(results)
    atlas = build_atlas("tiny", results_dir=results, circuit_dir=no_circuits, top_k=1)
    profile = api.head_profile(atlas, "L1H2")
    assert profile["depth"] == 1.0 and set(profile["metrics"]["metric"]) == set(atlas.metrics["metric"])
    shares = profile["metrics"].set_index("metric")["share_in_topk"]
    assert shares["induction_heads.induction"] >= 0.95 and np.isnan(shares["induction_heads.prev_token_random"])
    with pytest.raises(WorkbenchError, match="tiny has no head L2H0: it has layers 0..1 and heads 0..3"):
        api.head_profile(atlas, "L2H0")
    from workbench.cli.main import app

    out = CliRunner().invoke(app, ["atlas", "show", "-m", "tiny", "--head", "L0H7", "--results-dir", str(results)])
    assert out.exit_code == 2 and "tiny has no head L0H7" in out.stderr
    out = CliRunner().invoke(app, ["atlas", "show", "-m", "tiny", "--head", "L1H2", "--results-dir", str(results)])
    assert out.exit_code == 0 and "induction_heads.induction" in out.stdout


def test_save_load_and_export_round_trip(results, no_circuits, tmp_path):
    induction_run(results)
    attribution_run(results)
    built = build_atlas("tiny", results_dir=results, circuit_dir=no_circuits)
    assert built.record.kind == "atlas" and built.record.analysis == "atlas"
    loaded = load_atlas("tiny", results)
    for name, table in built.tables().items():
        pd.testing.assert_frame_equal(loaded.tables()[name].reset_index(drop=True), table.reset_index(drop=True),
                                      check_dtype=False)
    assert (loaded.n_layers, loaded.n_heads, loaded.fingerprint) == (2, 4, "fp-a")
    pd.testing.assert_frame_equal(loaded.wide(), built.wide())
    written = export_atlas(loaded, tmp_path / "out")
    assert {p.name for p in written} >= {"atlas.parquet", "atlas.csv", "metrics.csv", "agreement.parquet"}
    csv = pd.read_csv(tmp_path / "out" / "atlas.csv")
    assert len(csv) == 8 * len(built.metrics) and np.allclose(csv["value"], built.values["value"])
    with pytest.raises(WorkbenchError, match="workbench atlas build -m tiny-mha"):
        load_atlas("tiny-mha", results)


def test_compare_two_models_over_normalised_depth(results, no_circuits):
    induction_run(results)
    attribution_run(results)
    induction_run(results, model="tiny-mha", fingerprint="fp-m", seed=5)
    a = build_atlas("tiny", results_dir=results, circuit_dir=no_circuits)
    b = build_atlas("tiny-mha", results_dir=results, circuit_dir=no_circuits)
    tables = api.compare_atlases(a, b)
    assert list(tables["only_a"]["role"]) == ["attribution@ioi"] and tables["only_b"].empty
    depth = tables["depth"].set_index(["role", "bin"])
    assert depth.loc[("induction", 4), "n_heads_tiny"] == 1 and depth.loc[("induction", 4), "share_tiny"] == 0.25
    assert compare_atlases(a, b, n_bins=2)["depth"]["bin"].max() == 1
    from workbench.cli.main import app

    out = CliRunner().invoke(app, ["atlas", "compare", "-m", "tiny", "-m", "tiny-mha", "--results-dir", str(results)])
    assert out.exit_code == 0 and "roles only tiny has: attribution@ioi" in out.stdout
    assert "25% / 25%" in out.stdout  # induction in the last depth bin: 1 of 4 heads in both
