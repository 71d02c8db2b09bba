"""workbench.core.paths: default dirs under the user's dirs, env overrides, --home, shipped data, circuit lookup."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from typer.testing import CliRunner

from workbench.core import paths
from workbench.results.circuits import list_circuits, load_circuit, save_circuit


def test_defaults_are_user_dirs_and_env_overrides(monkeypatch, tmp_path):
    for name in ("WORKBENCH_CACHE_DIR", "WORKBENCH_RESULTS_DIR", "WORKBENCH_MODEL_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "d"))
    assert paths.cache_dir() == tmp_path / "c" / "attention-workbench" / "activations"
    assert paths.results_dir() == tmp_path / "d" / "attention-workbench" / "results"
    assert paths.model_cache_dir() == tmp_path / "c" / "attention-workbench" / "models"
    monkeypatch.setenv("WORKBENCH_RESULTS_DIR", str(tmp_path / "r"))
    assert paths.results_dir() == tmp_path / "r"


def test_home_option_moves_every_writable_dir(monkeypatch, tmp_path):
    from workbench.cli.main import app

    for name in paths._HOME_DIRS:
        monkeypatch.setenv(name, "/elsewhere")
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "h"), "run", "attention_profile", "-m", "tiny",
                                      "--param", "n_prompts=1", "--param", "n_tokens=16"])
    assert result.exit_code == 0, result.output
    assert paths.cache_dir() == tmp_path / "h" / "cache" and paths.model_cache_dir() == tmp_path / "h" / "models"
    assert list((tmp_path / "h" / "results" / "attention_profile").iterdir())


def test_shipped_data_in_a_checkout_and_circuits_fall_back_to_it(monkeypatch, tmp_path):
    assert paths.SOURCE_ROOT == Path(__file__).resolve().parents[1]
    assert paths.shipped("data", "sinks", "first_letter.json").is_file()
    monkeypatch.setenv("WORKBENCH_CIRCUITS_DIR", str(tmp_path / "mine"))
    shipped = load_circuit("smollm2-135m_ioi")  # not in the save folder: found among the shipped ones
    assert load_circuit("smollm2-135m_ioi").heads == shipped.heads
    save_circuit(dataclasses.replace(shipped, name="my_copy"))
    assert (tmp_path / "mine" / "my_copy.toml").is_file()
    names = set(list_circuits()["name"])
    assert {"my_copy", "smollm2-135m_ioi", "gpt2-small_ioi"} <= names
