"""Every notebook executes top to bottom on the bundled model with its fast parameters."""

from __future__ import annotations

import pytest

from workbench.core.paths import SOURCE_ROOT

NOTEBOOKS = sorted((SOURCE_ROOT / "notebooks").glob("*.ipynb"))


def test_every_notebook_starts_with_a_parameters_cell():
    import nbformat

    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        first = nbformat.read(path, as_version=4).cells[0]
        assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", []), path.name
        assert "import torch" not in path.read_text(), f"{path.name}: notebooks call workbench.api only"


@pytest.mark.real_model
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
