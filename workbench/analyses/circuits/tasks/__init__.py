"""The contrast tasks by name: IOI, Colored Objects, greater-than, docstring. Torch-free at import: `task_texts`
draws a task's prompt texts without a model; `make_task` builds the ContrastSet (token ids need the tokenizer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.analyses.circuits.tasks import colored_objects, docstring, greater_than, ioi
from workbench.core.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.core.contrast import ContrastSet

MODULES = {"ioi": ioi, "colored_objects": colored_objects, "greater_than": greater_than, "docstring": docstring}
TASKS = {name: module.make for name, module in MODULES.items()}


def task_texts(task: str, n: int = 4, seed: int = 0) -> list[str]:
    """The clean prompt texts of `make_task(model, task, n, seed)`, drawn without a model."""
    if task not in MODULES:
        raise WorkbenchError(f"Unknown task {task!r}; choose one of {', '.join(MODULES)}.")
    return [row["clean"] for row in MODULES[task].draw(n, seed)]


def make_task(model, task: str, n: int = 50, seed: int = 0) -> ContrastSet:
    if task not in TASKS:
        raise WorkbenchError(f"Unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    if n < 1:
        raise WorkbenchError(f"A task needs at least one prompt (got n={n}).")
    return TASKS[task](model, n=n, seed=seed)
