"""workbench.api is the one facade: torch-free at import, the app reaches the library through it only, and its
generic `run` returns the Result that `run_analysis` unpacks."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workbench import api
from workbench.analyses.base import Result

APP = Path(__file__).resolve().parents[1] / "app"
HEAVY = ("torch", "transformers", "transformer_lens", "pandas", "plotly", "duckdb")


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_the_facade_pulls_in_no_model_table_or_figure_code():
    out = _python(f"""
        import sys
        import workbench.api as wb
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        assert wb.DEFAULT_MODEL == "smollm2-135m" and issubclass(wb.WorkbenchError, ValueError)
        edit = wb.AblateHead(("L0H1",))  # an edit class: imported (with torch) on first access
        from workbench.edits.intervene import AblateHead
        print(type(edit) is AblateHead, "torch" in sys.modules)
    """)
    assert out.splitlines() == ["[]", "True True"]


def _workbench_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{a.name}" if node.module == "workbench" else node.module for a in node.names]
    return [n for n in names if n == "workbench" or n.startswith("workbench.")]


def test_the_app_imports_nothing_from_workbench_but_the_facade():
    files = sorted(APP.rglob("*.py"))
    assert len(files) > 10
    wrong = {str(f.relative_to(APP)): bad for f in files
             if (bad := [n for n in _workbench_imports(f) if n != "workbench.api"])}
    assert wrong == {}


def test_the_app_process_never_imports_torch():
    out = _python("""
        import sys
        from workbench_app.main import create_app
        import workbench.cli.main, workbench.cli.app
        app = create_app("smollm2-135m", start_worker=False)
        assert app.server.test_client().get("/").status_code == 200
        print(sorted(m for m in ("torch", "transformers", "transformer_lens") if m in sys.modules))
    """)
    assert out.splitlines()[-1] == "[]"


def test_every_exported_name_resolves_and_unknown_names_fail():
    missing = [name for name in api.__all__ if getattr(api, name, None) is None]
    assert missing == []
    assert set(api.__all__) <= set(dir(api))
    assert api.plot_heads.__name__ == "head_heatmap" and api.check_budget.__name__ == "check_analysis"
    with pytest.raises(AttributeError, match="no attribute 'run_analyses'"):
        api.run_analyses  # noqa: B018


def test_run_returns_a_saved_result_and_run_analysis_unpacks_the_same(tiny, tmp_path):
    results_dir = tmp_path / "runs"  # an explicit results directory, beside the isolated default one
    params = {"n_prompts": 2, "n_tokens": 24}
    result = api.run("attention_profile", tiny, params=params, progress=False, results_dir=results_dir)
    assert isinstance(result, Result) and result.analysis == "attention_profile" and result.record is not None
    assert (results_dir / "attention_profile" / result.record.run_id / "run.json").is_file()
    saved = api.load_scores(result.record.run_id, results_dir)
    assert saved["score"].tolist() == result.scores["score"].tolist()
    scores, record = api.run_analysis("attention_profile", tiny, params=params, progress=False, save=False)
    assert record is None and scores["score"].tolist() == result.scores["score"].tolist()
    assert list(api.find_results(results_dir=results_dir)["run_id"]) == [result.record.run_id]


def test_check_names_an_unknown_check_with_the_analysis():
    pytest.importorskip("workbench.analyses.runner")
    with pytest.raises(api.WorkbenchError, match="attention_profile has no check 'nope'"):
        api.check("attention_profile", "nope", "tiny", save=False, progress=False)
