"""The wheel works outside the repository: build it, install it into a fresh venv, run it from an empty folder.

The fresh venv borrows this interpreter's installed dependencies through a .pth line (a plain path entry, so an
editable-install finder there is not activated) and gets the wheel with `pip install --no-deps`. Shipped data is
read from the installed package; everything written goes to the user's dirs; site-packages stays untouched.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.core.paths import SOURCE_ROOT

SOURCES = ("pyproject.toml", "setup.py", "README.md", "workbench", "app", "data", "circuits")

CHECK = """
import json, sys
import workbench, workbench_app.controllers
import workbench.api as wb
from workbench.core.paths import SOURCE_ROOT
from workbench.analyses.attention_sinks.prompts import load_items
from workbench.analyses.head_divergence.prompts import load_facts
circuit, score_map = wb.load_circuit("smollm2-135m_ioi")  # the TOML and its shipped .scores.parquet
print(json.dumps({"workbench": workbench.__file__, "app": workbench_app.controllers.__file__,
                  "source_root": str(SOURCE_ROOT), "circuit_heads": len(circuit.heads), "map_rows": len(score_map),
                  "items": len(load_items()), "facts": len(load_facts()[0]),
                  "circuits": sorted(wb.list_circuits()["name"])}))
"""


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _not_shipped(folder: str, names: list[str]) -> set[str]:
    """Byte-code everywhere, and the activation cache and results that live under data/ in a checkout."""
    local = {"cache", "results"} if Path(folder).resolve() == SOURCE_ROOT / "data" else set()
    return {n for n in names if n == "__pycache__" or n in local}


@pytest.mark.wheel
def test_wheel_runs_outside_the_repository(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:  # build from a copy: the build writes build/ and *.egg-info next to setup.py
        copy = shutil.copytree if (SOURCE_ROOT / name).is_dir() else shutil.copy2
        copy(SOURCE_ROOT / name, src / name, **({"ignore": _not_shipped} if (SOURCE_ROOT / name).is_dir() else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, timeout=120)
    wheel = next((tmp_path / "dist").glob("attention_workbench-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    py = venv / "bin" / "python"
    fresh_site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     check=True, capture_output=True, text=True).stdout.strip())
    (fresh_site / "_borrowed_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, timeout=120)
    before = _files(fresh_site)

    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKBENCH_", "PYTHON"))}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg-cache"), XDG_DATA_HOME=str(tmp_path / "xdg-data"),
               WORKBENCH_MODEL_CACHE=str(tmp_path / "models"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

    def run(*args):
        return subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=300)

    profile = run(str(venv / "bin" / "workbench"), "run", "attention_profile", "-m", "tiny", "--device", "cpu")
    assert profile.returncode == 0, profile.stderr[-2000:]
    assert "is in the catalog" in profile.stdout
    assert list((tmp_path / "xdg-data" / "attention-workbench" / "results" / "attention_profile").iterdir())
    assert list((tmp_path / "xdg-cache" / "attention-workbench" / "activations").iterdir())
    assert list((tmp_path / "models" / "_kernels").glob("softmax_stats-*.so")), "the shipped kernel source built"
    helped = run(str(venv / "bin" / "workbench"), "sinks", "search", "--help")
    assert helped.returncode == 0 and "--device" in helped.stdout and "--dtype" in helped.stdout
    checked = run(str(py), "-c", CHECK)
    assert checked.returncode == 0, checked.stderr[-2000:]
    import json

    facts = json.loads(checked.stdout.strip().splitlines()[-1])
    assert facts["workbench"].startswith(str(fresh_site)) and facts["app"].startswith(str(fresh_site))
    assert facts["source_root"] == "None"
    assert facts["circuit_heads"] > 0 and facts["map_rows"] == 30 * 9 and facts["items"] > 0 and facts["facts"] > 0
    assert {"smollm2-135m_ioi", "gpt2-small_ioi"} <= set(facts["circuits"])
    assert not list(work.iterdir()), "the workbench wrote into the working directory"
    assert _files(fresh_site) == before, "something was written under site-packages"
