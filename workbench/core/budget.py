"""Work budgets for app requests to the model worker (torch-free; the app and the worker both check).

Unit: prompt tokens (prompts × tokens, generation included), at most `MAX_TOKENS` per request. Interventions
run on the bridge (T × T scores per edited layer): prompts ≤ `MAX_EDIT_TOKENS` each, batches with
`batch × heads × T²` ≤ `MAX_EDIT_CELLS`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from workbench.core.errors import WorkbenchError

MAX_TOKENS = 65_536
MAX_EDIT_TOKENS = 2_048
MAX_EDIT_CELLS = 64 * 2**20  # batch × heads × T × T per edited layer: 256 MB of float32 scores
MAX_COUNT = 4_096  # any n_* count, epochs, shuffles …
MAX_PROMPT_CHARS = 20_000
MAX_PROMPTS = 16
SHORT_PROMPT_TOKENS = 64  # task prompts (IOI, docstring …) without a token parameter
BUDGET_TEXT = (f"Budget per request: prompts × tokens ≤ {MAX_TOKENS:,} (e.g. 60 × 509); "
               f"interventions: at most {MAX_EDIT_TOKENS:,} tokens per prompt.")


class BudgetError(WorkbenchError):
    """A request that would take more work or memory than one request may use."""


class PathRefused(WorkbenchError):
    """A file path where the app accepts only the name of a saved thing."""


def _int(params: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = params.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BudgetError(f"Parameter {key} must be a whole number; got {str(value)[:40]!r}.") from None
    if not math.isfinite(number) or number != int(number) or number < 0:
        raise BudgetError(f"Parameter {key} must be a whole number ≥ 0; got {str(value)[:40]!r}.")
    return int(number)


def _lengths(value: Any) -> list[int]:
    text = str(value).replace(" ", "")
    items = list(value) if isinstance(value, (list, tuple)) else [s for s in text.split(",") if s]
    try:
        return [int(s) for s in items]
    except ValueError:
        raise BudgetError(f"Parameter lengths must be comma-separated whole numbers like '500,2000'; "
                          f"got {str(value)[:40]!r}.") from None


def analysis_cost(params: Mapping[str, Any]) -> int:
    """Prompt tokens an analysis run costs, from its parameters (typed or strings, defaults filled in)."""
    for key, value in params.items():
        try:
            finite = isinstance(value, bool) or not isinstance(value, (str, float)) or math.isfinite(float(value))
        except (ValueError, OverflowError):
            finite = True  # not a number at all: the analysis's own parser says so
        if not finite:
            raise BudgetError(f"Parameter {key} must be a finite number; got {str(value)[:40]!r}.")
        if (key.startswith("n_") or key in ("epochs", "max_new_tokens")) and not isinstance(value, bool):
            count = _int(params, key)
            if count > MAX_COUNT and key != "n_tokens":
                raise BudgetError(f"Parameter {key}={count:,} is over the app's limit of {MAX_COUNT:,}.")
    new = _int(params, "max_new_tokens") if "max_new_tokens" in params else 0
    if "lengths" in params:
        lengths = _lengths(params["lengths"])
        prompts = len(lengths) * max(_int(params, "n_depths", 1), 1)
        tokens = max(lengths, default=0) + new
    else:
        prompts = next((_int(params, k) for k in ("n_prompts", "n_examples", "n_problems") if k in params), 1)
        tokens = _int(params, "n_tokens") if "n_tokens" in params else SHORT_PROMPT_TOKENS + new
    return prompts * tokens


def check_analysis(name: str, params: Mapping[str, Any]) -> int:
    """The cost of running `name` with `params`, or BudgetError saying the limit."""
    cost = analysis_cost(params)
    if cost > MAX_TOKENS:
        raise BudgetError(f"{name} with these parameters costs {cost:,} prompt tokens (prompts × tokens); one "
                          f"request may use at most {MAX_TOKENS:,}. Use fewer prompts or tokens, or the CLI.")
    return cost


def check_edit_lengths(lengths: list[int]) -> int:
    """Total tokens of an intervention's prompts, or BudgetError."""
    longest, total = max(lengths, default=0), sum(lengths)
    if longest > MAX_EDIT_TOKENS:
        raise BudgetError(f"A prompt has {longest:,} tokens; interventions in the app take at most "
                          f"{MAX_EDIT_TOKENS:,} per prompt. Use shorter prompts (or `workbench intervene`).")
    if 2 * total > MAX_TOKENS:  # clean + edited runs
        raise BudgetError(f"The prompts have {total:,} tokens (×2 for clean and edited runs); one request may "
                          f"use at most {MAX_TOKENS:,}. Use fewer or shorter prompts.")
    return total


def edit_batch_size(longest: int, n_heads: int, default: int = 8) -> int:
    """Prompts per batch so that batch × heads × T² stays under MAX_EDIT_CELLS."""
    per_prompt = max(1, n_heads * longest * longest)
    return max(1, min(default, MAX_EDIT_CELLS // per_prompt))


def refuse_paths(params: Mapping[str, Any]) -> None:
    """PathRefused if any string parameter looks like a file path (the app names saved things only)."""
    for key, value in params.items():
        text = str(value)
        if isinstance(value, str) and ("/" in text or "\\" in text or text.startswith("~") or
                                       text.endswith(".toml") or ".." in text):
            raise PathRefused(f"Parameter {key}={text[:60]!r} looks like a file path; the app takes only names "
                              "of saved circuits (like smollm2-135m_ioi). Use the CLI for files.")
