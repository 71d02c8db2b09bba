"""What every analysis declares: a name, its Params type, default prompts, and a run function."""

from __future__ import annotations

import dataclasses
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
        """Params from string/typed overrides, with a clear error for unknown names or bad values."""
        from workbench.errors import WorkbenchError

        overrides = dict(overrides or {})
        known = {f.name: f for f in dataclasses.fields(self.params_type)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise WorkbenchError(f"{self.name} has no parameter {', '.join(unknown)}; "
                                 f"its parameters are {', '.join(known)}.")
        typed = {}
        for key, value in overrides.items():
            default = getattr(self.params_type(), key)
            try:
                if isinstance(default, bool) and isinstance(value, str):
                    typed[key] = _parse_bool(value)
                    continue
                typed[key] = type(default)(value) if isinstance(value, str) and default is not None else value
            except ValueError as exc:
                raise WorkbenchError(f"{self.name}: parameter {key}={value!r} is not a valid "
                                     f"{type(default).__name__}.") from exc
        return self.params_type(**typed)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean")
