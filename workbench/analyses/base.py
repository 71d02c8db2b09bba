"""What every analysis declares: a name, its Params type, default prompts, and a run function."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd


@dataclass
class AnalysisOutput:
    """What an analysis may return instead of bare HeadScores: extra tables and a JSON summary."""

    scores: pd.DataFrame
    tables: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class AnalysisSpec:
    name: str
    summary: str
    params_type: type
    default_prompts: Callable[[Any, Any], Any]  # (model, params) -> PromptSet
    run: Callable[..., "pd.DataFrame | AnalysisOutput"]  # (model, prompts, params, *, progress)

    def make_params(self, overrides: dict[str, Any] | None = None):
        """Params from string/typed overrides: unknown names, wrong types (16.5 for an int, a list) and numbers
        out of range (workbench.validation) fail with one clear line."""
        from workbench.errors import WorkbenchError
        from workbench.validation import coerce_param

        if overrides is not None and not isinstance(overrides, dict):
            raise WorkbenchError(f"{self.name}: parameters must be a table of name = value; got {overrides!r}.")
        overrides = dict(overrides or {})
        known = {f.name: f for f in dataclasses.fields(self.params_type)}
        unknown = sorted(set(overrides) - set(known), key=str)
        if unknown:
            raise WorkbenchError(f"{self.name} has no parameter {', '.join(map(str, unknown))}; "
                                 f"its parameters are {', '.join(known)}.")
        hints = typing.get_type_hints(self.params_type)
        typed = {key: coerce_param(self.name, key, value, hints[key]) for key, value in overrides.items()}
        return self.params_type(**typed)
