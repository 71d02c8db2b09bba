"""The layout holds: few top-level entries, small files, no import cycles, layers that import downwards only,
and every registered analysis in its own folder. Imports are read with ast (nothing is imported but the registry).
"""

from __future__ import annotations

import ast
import inspect
from functools import cache
from pathlib import Path

import pytest

from workbench.core.paths import SOURCE_ROOT

PACKAGE = SOURCE_ROOT / "workbench"
MAX_TOP_LEVEL = 12
MAX_LINES = 400
# Module-level import cycles tolerated while a branch removes them (none now).
KNOWN_CYCLES: set[frozenset[str]] = set()
# Lazy upward imports still allowed: core's tokenize/single_token_id/text_chunks read a loaded model's tokenizer and
# context through models.loading.model_info (moving them to models/ would touch some 40 call sites).
LAZY_ALLOWED = {("workbench.core.prompts", "workbench.models.loading"),
                ("workbench.core.natural_text", "workbench.models.loading")}


def _module(path: Path) -> str:
    parts = path.relative_to(SOURCE_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def _statements(body: list[ast.stmt], module_level: bool):
    """Import statements of a body; with module_level, those in functions and `if TYPE_CHECKING:` are skipped."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        elif module_level and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _statements(node.orelse, module_level)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _statements(getattr(node, field, None) or [], module_level)


@cache
def _imports(module: str, module_level: bool) -> frozenset[str]:
    """The workbench modules `module` imports (`from pkg import sub` names the submodule when there is one)."""
    mods, path = _modules(), _modules()[module]
    found = set()
    for node in _statements(ast.parse(path.read_text()).body, module_level):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names)
    return frozenset(m for m in found if m in mods and m != module)


def _cycles() -> set[frozenset[str]]:
    """Strongly connected components (more than one module) of the module-level import graph (Tarjan)."""
    graph = {m: _imports(m, True) for m in _modules()}
    index, low, stack, on_stack, out = {}, {}, [], set(), set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while not component or w != v:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
            if len(component) > 1:
                out.add(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_few_top_level_entries():
    entries = sorted(p.name for p in PACKAGE.iterdir() if p.name not in ("__init__.py", "__pycache__")
                     and (p.suffix == ".py" or (p / "__init__.py").is_file()))
    assert len(entries) <= MAX_TOP_LEVEL, f"workbench/ has {len(entries)} entries: {entries}"


def test_no_file_over_the_line_limit():
    files = [p for root in ("workbench", "app") for p in (SOURCE_ROOT / root).rglob("*.py")]
    long = {str(p.relative_to(SOURCE_ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert len(files) > 50 and not long, f"split these files (over {MAX_LINES} lines): {long}"


def test_no_import_cycles():
    new = _cycles() - KNOWN_CYCLES
    assert not new, f"module-level import cycles: {[sorted(c) for c in new]}"


def test_imports_are_read_at_module_and_function_level():
    assert _imports("workbench.core.heads", True) >= {"workbench.core.scores"}
    assert "workbench.core.errors" in _imports("workbench.core.heads", False)  # a function-level import
    assert "workbench.core.errors" not in _imports("workbench.core.heads", True)


@pytest.mark.parametrize("layer, forbidden", [
    ("core", ("analyses", "api", "batch", "cli", "edits", "engine", "models", "results", "viz", "worker")),
    ("engine", ("analyses", "api", "batch", "cli", "results", "viz", "worker")),
])
def test_layers_import_downwards(layer, forbidden):
    """Counting function-level imports too: a lower layer never reaches up, not even lazily."""
    bad = {m: sorted(d for d in _imports(m, False) if d.split(".")[1] in forbidden and (m, d) not in LAZY_ALLOWED)
           for m in _modules() if m.startswith(f"workbench.{layer}.")}
    assert all(d in _imports(m, False) for m, d in LAZY_ALLOWED), "an allowed lazy import is gone: drop it here"
    assert not {m: d for m, d in bad.items() if d}


def _folder(ref) -> tuple[str, Path]:
    module = ref.partition(":")[0] if isinstance(ref, str) else inspect.getmodule(ref).__name__
    parts = module.split(".")
    assert parts[:2] == ["workbench", "analyses"] and len(parts) > 3, f"{ref} is not in an analysis folder"
    return parts[2], _modules()[module]


def _generic(ref) -> bool:
    from workbench.analyses.ablation import Ablate

    return isinstance(ref, Ablate)


def test_every_analysis_has_its_folder_and_its_checks_live_there():
    from workbench.analyses import REGISTRY
    from workbench.analyses.base import resolve

    for spec in REGISTRY:
        folder, run_file = _folder(spec.run)
        assert (PACKAGE / "analyses" / folder / "__init__.py").is_file() and run_file.is_file(), spec.name
        refs = [spec.default_prompts, spec.run, *([spec.views] if spec.views else []),
                *(c.run for c in spec.checks if not _generic(c.run))]  # the shared ablation check: one for all
        for ref in refs:
            assert _folder(ref)[0] == folder, f"{spec.name}: {ref} lives outside workbench/analyses/{folder}/"
            assert callable(resolve(ref)), f"{spec.name}: {ref} does not name a function"
