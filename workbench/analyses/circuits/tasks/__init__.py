"""The contrast tasks by name: IOI, Colored Objects, greater-than, docstring."""

from __future__ import annotations

from workbench.analyses.circuits.tasks import colored_objects, docstring, greater_than, ioi
from workbench.core.contrast import ContrastSet
from workbench.core.errors import WorkbenchError

TASKS = {"ioi": ioi.make, "colored_objects": colored_objects.make, "greater_than": greater_than.make,
         "docstring": docstring.make}


def make_task(model, task: str, n: int = 50, seed: int = 0) -> ContrastSet:
    if task not in TASKS:
        raise WorkbenchError(f"Unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    if n < 1:
        raise WorkbenchError(f"A task needs at least one prompt (got n={n}).")
    return TASKS[task](model, n=n, seed=seed)
