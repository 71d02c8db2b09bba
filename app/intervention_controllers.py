"""The Interventions page's logic as pure functions (no dash): the request from the form (validated, with the
prompt sets of workbench.edits.sources), the URL that holds the whole request, and the tables of a result."""

from __future__ import annotations

import re
from typing import Any, Mapping

import pandas as pd

import workbench.api as wb
from workbench.api import MAX_EDIT_TOKENS, MAX_PROMPTS
from workbench_app.controllers import (
    EDITS,
    METRICS,
    AppInputError,
    build_query,
    float_in,
    int_in,
    int_or,
    parse_head_field,
    shown,
    split_prompts,
)

URL_TEXT_LIMIT = 1500  # typed prompts longer than this (all lines, URL-encoded) are not kept in the URL


def sources() -> dict[str, str]:
    """Prompt set name → label, in the order the page lists them."""
    return {name: s.label for name, s in wb.INTERVENTION_SOURCES.items()}


def intervention_request(*, heads: Any, edit: Any, alpha: Any, keys: Any, metric: Any, source: Any,
                         typed: Any, n_prompts: Any, n_tokens: Any, patch_text: Any, n_layers: int,
                         n_heads: int) -> dict[str, Any]:
    """Validated arguments for the worker's `intervene` op (refusals name the field and its range)."""
    labels = parse_head_field(heads, n_layers, n_heads)
    if not isinstance(edit, str) or edit not in EDITS:
        raise AppInputError(f"Unknown edit {str(edit)[:40]!r}; choose one of {', '.join(EDITS)}.")
    if not isinstance(metric, str) or metric not in METRICS:
        raise AppInputError(f"Unknown metric {str(metric)[:40]!r}; choose one of {', '.join(METRICS)}.")
    if not isinstance(source, str) or source not in wb.INTERVENTION_SOURCES:
        raise AppInputError(f"Choose a prompt set: {', '.join(sources().values())}.")
    args: dict[str, Any] = {"heads": ",".join(labels), "edit": edit, "metric": metric, "source": source}
    if edit == "scale":
        args["alpha"] = float_in(alpha, 0.0, 100.0, "α")
    if edit == "reweight":
        args["alpha"] = float_in(alpha, 0.0, 1000.0, "α")
        if not isinstance(keys, str) or len(keys) > 200 or not re.fullmatch(r"\s*-?\d+(\s*,\s*-?\d+)*\s*", keys):
            raise AppInputError(f"Key positions must be integers separated by commas, like '0' or '0, -1'; "
                                f"{shown(keys)}.")
        args["keys"] = keys.replace(" ", "")
    metadata = None
    if source == "typed":
        args["texts"] = split_prompts(typed, "Typed prompts")
        metadata = _parsed(args["texts"])
    else:
        args["n_prompts"] = int_in(n_prompts, 1, MAX_PROMPTS, "n")
        if source in ("natural", "niah"):
            low = wb.NIAH_MIN_TOKENS if source == "niah" else 8
            args["n_tokens"] = int_in(n_tokens, low, MAX_EDIT_TOKENS, "tokens each")
    try:
        wb.check_intervention_metric(source, metric, metadata)
    except wb.WorkbenchError as exc:
        raise AppInputError(str(exc)) from None
    if edit == "patch" and isinstance(patch_text, str) and patch_text.strip():
        args["patch_texts"] = split_prompts(patch_text, "Patch sources")
    elif edit == "patch" and source in ("typed", "niah"):
        which = "typed" if source == "typed" else "NIAH"
        raise AppInputError(f"Patching {which} prompts needs source prompts: type one source per prompt, with the "
                            "same token count, in the patch-source box (task prompt sets patch from their corrupted "
                            "twins).")
    return args


def _parsed(lines: list[str]) -> list[dict]:
    try:
        return wb.parse_typed(lines)[1]
    except wb.WorkbenchError as exc:
        raise AppInputError(str(exc)) from None


def request_query(form: Mapping[str, Any], args: Mapping[str, Any]) -> tuple[str, str | None]:
    """(URL query of the whole request, a note when typed text was too long to keep in it, else None)."""
    state = {"heads": args["heads"], "edit": args["edit"], "alpha": args.get("alpha"), "keys": args.get("keys"),
             "metric": args["metric"], "source": args["source"], "n": args.get("n_prompts"),
             "tokens": args.get("n_tokens")}
    note, texts = None, {"typed": form.get("typed") if args["source"] == "typed" else None,
                         "patch": form.get("patch") if args["edit"] == "patch" else None}
    for key, text in texts.items():
        if isinstance(text, str) and text.strip():
            if len(build_query({key: text})) <= URL_TEXT_LIMIT:
                state[key] = text
            else:
                note = (f"The {'typed prompts' if key == 'typed' else 'patch sources'} are too long to keep in the "
                        f"URL ({len(text):,} characters); a shared link will not carry them.")
    return build_query(state), note


def form_state(state: Mapping[str, str]) -> dict[str, Any]:
    """The form's values from a URL's state (anything invalid falls back to the default; nothing runs)."""
    known = sources()
    return {"heads": state.get("heads", ""), "edit": state.get("edit") if state.get("edit") in EDITS else "ablate",
            "metric": state.get("metric") if state.get("metric") in METRICS else "loss",
            "source": state.get("source") if state.get("source") in known else
            ("typed" if state.get("typed") else "natural"),
            "alpha": state.get("alpha", "0.0"), "keys": state.get("keys", "0"),
            "n": int_or(state.get("n"), 1, MAX_PROMPTS, 4),
            "tokens": int_or(state.get("tokens"), 8, MAX_EDIT_TOKENS, 64),
            "typed": state.get("typed", ""), "patch": state.get("patch", "")}


def intervention_frames(result: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-prompt table, one-row aggregate) from the worker's `intervene` result."""
    table = pd.DataFrame(result["rows"])
    for c in ("before", "after", "delta"):
        table[c] = pd.to_numeric(table[c], errors="coerce")
    summary = dict(result["summary"])
    metric = summary.get("metric")
    agg = pd.DataFrame([{"edit": "; ".join(result.get("edits", [])), "prompt set": result.get("prompt_set", ""),
                         "prompts": summary.get("n"), "metric": metric, f"clean {metric}": summary.get("before"),
                         f"edited {metric}": summary.get("after"), "mean delta": summary.get("delta"),
                         "share of prompts where it rose": summary.get("share_increased")}])
    table = table.rename(columns={"before": f"clean {metric}", "after": f"edited {metric}"})
    return table.round(4), agg.round(4)


def saved_interventions(results_dir=None, model: str | None = None) -> pd.DataFrame:
    """The catalog's intervention runs, newest first, with their parameters (heads, edit, metric, source, n …)."""
    out = wb.find_interventions(model, results_dir)[["run_id", "created", "model", "prompt_set", "params"]].copy()
    out["created"] = out["created"].astype(str).str[:19].str.replace("T", " ")
    return out.reset_index(drop=True)
