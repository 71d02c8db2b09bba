"""Checking an analysis request typed on the Overview page before it goes to the worker (pure, no dash).

Parameters are `name=value` pairs; names must be the analysis's own (defaults come from the worker's
`load` answer), values short plain text, never file paths; `reference` must name a saved circuit; the
cost must fit the work budget (workbench.api.check_budget), stated next to the field.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import workbench.api as wb
from workbench_app.controllers import AppInputError, shown

MAX_PARAMS_CHARS = 2_000


def parse_params(text: Any) -> dict[str, str]:
    """{name: value} from 'a=1, b=2' (',' or ';' between pairs)."""
    if text is not None and not isinstance(text, str):
        raise AppInputError(f"Parameters must be text like 'n_prompts=2, n_tokens=128'; {shown(text)}.")
    if text and len(text) > MAX_PARAMS_CHARS:
        raise AppInputError(f"The parameters field has {len(text):,} characters; give at most {MAX_PARAMS_CHARS:,}.")
    out = {}
    for item in (text or "").replace(";", ",").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise AppInputError(f"Parameter {item.strip()[:40]!r} must look like name=value.")
        key, value = (part.strip() for part in item.split("=", 1))
        if not key.isidentifier():
            raise AppInputError(f"{key[:40]!r} is not a parameter name; write name=value, like n_prompts=2.")
        out[key] = value
    return out


def analysis_request(analysis: Any, text: Any, analyses: Iterable[Mapping[str, Any]],
                     circuits: Iterable[str]) -> dict[str, Any]:
    """Validated `run_analysis` args, or AppInputError saying what to change (budget, names, paths)."""
    known = {a["analysis"]: a for a in analyses if isinstance(a, Mapping) and "analysis" in a}
    if not isinstance(analysis, str) or analysis not in known:
        listed = ", ".join(known) or "the list appears once the model is loaded"
        raise AppInputError(f"Choose an analysis from the list ({listed}); {shown(analysis)}.")
    params = parse_params(text)
    defaults = dict(known[analysis].get("params") or {})
    unknown = sorted(set(params) - set(defaults)) if defaults else []
    if unknown:
        raise AppInputError(f"{analysis} has no parameter {', '.join(unknown)}; its parameters are "
                            f"{', '.join(defaults)}.")
    try:
        wb.refuse_paths(params)
        if params.get("reference"):
            names = sorted(set(circuits))
            if params["reference"] not in names:
                raise AppInputError(f"reference={params['reference'][:60]!r} is not a saved circuit; name one of: "
                                    f"{', '.join(names) or 'none saved'}.")
        wb.check_budget(analysis, {**defaults, **params})
    except wb.WorkbenchError as exc:
        raise AppInputError(str(exc)) from None
    return {"analysis": analysis, "params": params}
