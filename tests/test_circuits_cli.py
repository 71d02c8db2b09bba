"""The `workbench circuits` command: committed circuits, overlap, clear errors; `find` end to end on SmolLM2."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from workbench.cli.main import app
from workbench.core.errors import WorkbenchError
from workbench.results.circuit_maps import load_with_scores
from workbench.results.circuits import load_circuit, select_heads


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_committed_smollm2_circuits_load_with_their_score_maps():
    for task in ("ioi", "colored_objects", "greater_than", "docstring"):
        circuit, scores = load_with_scores(f"smollm2-135m_{task}")
        assert (circuit.n_layers, circuit.n_heads) == (30, 9) and len(circuit.heads) == 14
        assert scores is not None and len(scores) == 270
        top = set(scores.assign(key=scores["score"].abs()).nlargest(14, "key")[["layer", "head"]]
                  .itertuples(index=False, name=None))
        assert {(h.layer, h.head) for h in circuit.heads} == top  # the file holds the map that chose it (|score|)
    ioi = {str(h) for h in load_circuit("gpt2-small_ioi").heads}
    assert len(ioi) == 26 and {"L9H6", "L9H9", "L10H0", "L9H0", "L10H7", "L11H10"} <= ioi and "L11H3" not in ioi
    gt = {str(h) for h in load_circuit("gpt2-small_greater_than").heads}
    assert len(gt) == 9 and {"L5H5", "L6H9", "L9H1", "L0H1"} <= gt


def test_overlap_command_reports_shared_heads_and_chance(tmp_path):
    result = invoke("circuits", "overlap", "smollm2-135m_ioi", "smollm2-135m_colored_objects",
                    "--out", str(tmp_path / "map.html"))
    assert result.exit_code == 0, result.output
    for text in ("shared heads", "Jaccard", "chance", "Spearman of the full |score| maps"):
        assert text in result.output
    html = (tmp_path / "map.html").read_text()
    assert "Plotly.newPlot" in html and not re.search(r"<script[^>]*\bsrc=", html)  # self-contained: opens offline


def test_bad_names_fail_with_what_to_do():
    result = invoke("circuits", "overlap", "smollm2-135m_ioi", "no_such_circuit")
    assert result.exit_code == 2 and "smollm2-135m_ioi" in result.output  # lists what exists
    result = invoke("circuits", "find", "--task", "ioi", "-m", "tiny", "--directory", "/nonexistent")
    assert result.exit_code == 2 and "not single tokens" in result.output
    result = invoke("circuits", "find", "--task", "sudoku", "-m", "tiny")
    assert result.exit_code == 2 and "colored_objects" in result.output
    result = invoke("circuits", "find", "-m", "no-such-model", "--top-fraction", "5")
    assert result.exit_code == 2 and "(0, 1]" in result.output  # before loading anything
    result = invoke("circuits", "find", "-m", "tiny", "--name", "../escape")
    assert result.exit_code == 2 and "file name" in result.output


def test_parameters_of_other_methods_are_refused_not_ignored(tiny, tiny_ioi):
    from workbench import api

    prompts = tiny_ioi.as_prompts()
    for params, text in [({"method": "both", "receivers": "L1H0"}, "path patching"),
                         ({"method": "attribution", "receiver_positions": "last"}, "path patching"),
                         ({"method": "path", "layers": "0-1"}, "limits activation patching"),
                         ({"method": "activation", "layers": "1-0"}, "low-high")]:
        with pytest.raises(WorkbenchError, match=text):
            api.run_analysis("head_attribution", tiny, prompts, params=params, save=False, progress=False)


def test_default_circuit_names_are_file_names():
    from workbench.results.circuits import default_circuit_name

    assert default_circuit_name("smollm2-135m", "ioi") == "smollm2-135m_ioi"
    assert default_circuit_name("openai-community/gpt2", "ioi") == "openai-community--gpt2_ioi"
    assert default_circuit_name("/models/my llama", "docstring") == "my-llama_docstring"


@pytest.mark.real_model
def test_find_on_smollm2_writes_a_circuit_with_its_map(tmp_path):
    result = invoke("circuits", "find", "--task", "greater_than", "--n-prompts", "6", "--method", "attribution",
                    "--top-fraction", "0.02", "--selection", "signed", "--name", "gt-test",
                    "--directory", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "attribution" in result.output
    circuit, scores = load_with_scores("gt-test", tmp_path)
    assert len(circuit.heads) == 6 and circuit.method == "attribution_patching"
    assert circuit.selection == "top 2% by signed score"  # --selection signed: the old rule, the largest scores
    assert circuit.heads == select_heads(scores, top_k=6, selection="signed")
