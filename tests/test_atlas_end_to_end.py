"""The atlas end to end on the tiny model: three real analyses run through analyses.runner, then
`workbench atlas build | show | export` and workbench.api (build, save, load, export)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from workbench import api
from workbench.analyses.runner import run_analysis
from workbench.cli.main import app

SMALL = {"attention_profile": {"n_prompts": 3, "n_tokens": 24}, "attention_sinks": {"n_prompts": 3, "n_tokens": 24},
         "induction_heads": {"n_prompts": 4, "half_len": 16}}


def test_tiny_runs_to_atlas_build_save_load_export(tiny, tiny_ioi, tmp_path):
    results = tmp_path / "results"
    runs = {name: run_analysis(name, tiny, params=params, progress=False, results_dir=results)
            for name, params in SMALL.items()}
    runs["head_attribution"] = run_analysis("head_attribution", tiny, tiny_ioi.as_prompts(), progress=False,
                                            results_dir=results)
    atlas = api.build_atlas("tiny", results_dir=results, n_boot=200)
    assert atlas.fingerprint == runs["induction_heads"].record.model_fingerprint
    assert set(atlas.params["runs"]) == {r.record.run_id for r in runs.values()}
    metrics = atlas.metrics.set_index("metric")
    assert {"attention_profile.distance_non_sink", "attention_profile.bos_mass", "induction_heads.induction",
            "induction_heads.prev_token_random", "attention_sinks.first_token_share"} <= set(metrics.index)
    assert "induction_heads.score" not in metrics.index  # the score repeats induction_heads.induction
    assert metrics.loc["induction_heads.induction", "n_prompts"] == 4
    assert metrics.loc["head_attribution.activation_score@ioi", "description"] == \
        "bootstrap over prompts: Σ activation_effect / Σ gap over prompts (signed: ranked by |value|)"
    # every stored column is reproduced by its per-prompt values here, so every finite value has an interval
    finite = atlas.values[np.isfinite(atlas.values["value"])]
    assert finite[["lo", "hi"]].notna().all().all()
    assert (finite["lo"] <= finite["hi"]).all()
    scores = runs["induction_heads"].scores.set_index("label")["induction"]
    got = atlas.wide().loc[scores.index, "induction_heads.induction"]
    np.testing.assert_allclose(got.to_numpy(), scores.to_numpy())
    assert set(atlas.missing["analysis"]) >= {"retrieval_heads", "sae_circuits"}

    loaded = api.load_atlas("tiny", results_dir=results)
    pd.testing.assert_frame_equal(loaded.values, atlas.values, check_dtype=False)
    out = CliRunner().invoke(app, ["atlas", "show", "-m", "tiny", "--results-dir", str(results)])
    assert out.exit_code == 0, out.stderr
    assert "Spearman" in out.stdout and "rank stability" in out.stdout
    assert "workbench sae_circuits run" in out.stdout
    out = CliRunner().invoke(app, ["atlas", "export", "-m", "tiny", "--out", str(tmp_path / "export"),
                                   "--results-dir", str(results)])
    assert out.exit_code == 0, out.stderr
    table = pd.read_parquet(tmp_path / "export" / "atlas.parquet")
    assert len(table) == 8 * len(atlas.metrics) and (tmp_path / "export" / "agreement.csv").is_file()
    out = CliRunner().invoke(app, ["atlas", "build", "-m", "tiny", "--boot", "50", "--threshold", "bos_sink=0.9",
                                   "--results-dir", str(results)])
    assert out.exit_code == 0 and "4 runs" in out.stdout
    assert api.load_atlas("tiny", results_dir=results).params["thresholds"]["bos_sink"] == 0.9
