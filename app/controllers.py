"""The app's logic as pure functions (no dash): URL state, the catalog, heads, comparisons, and validation of
everything a person types (AppInputError, whose message the page shows). Callbacks only wire these up."""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlencode

import pandas as pd

import workbench.api as wb
from workbench.api import MAX_PROMPT_CHARS, MAX_PROMPTS, WorkbenchError

EDITS = {name: kind.label for name, kind in wb.EDIT_KINDS.items()}
METRICS = ("loss", "logit_diff", "answer_logprob", "prob_diff")
PAGES = {"/": "Overview", "/heads": "Head map", "/compare": "Compare", "/circuits": "Circuits",
         "/interventions": "Interventions", "/tokens": "Tokens", "/attention": "Attention text", "/atlas": "Atlas",
         "/jobs": "Jobs"}
_QUERY_KEYS = {"run", "col", "head", "prompt", "a", "b", "k", "heads", "edit", "alpha", "keys", "metric", "n",
               "tokens", "window", "text", "model", "role", "source", "typed", "patch", "layer", "page"}
_RUN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,120}")


class AppInputError(WorkbenchError):
    """Something typed into the app (or its URL) that cannot be used; the message says what to do."""


# ---- URL state ---------------------------------------------------------------------------------------
def parse_query(search: str | None) -> dict[str, str]:
    """Known keys of a URL query string (unknown keys are dropped, values are capped in length)."""
    if not search or not isinstance(search, str):
        return {}
    pairs = parse_qsl(search.lstrip("?"), keep_blank_values=False)
    return {k: v[:2000] for k, v in pairs if k in _QUERY_KEYS}


def build_query(state: Mapping[str, Any]) -> str:
    """`?k=v&…` of the non-empty known keys, in a stable order."""
    items = [(k, str(v)) for k, v in state.items() if k in _QUERY_KEYS and v not in (None, "", [])]
    return "?" + urlencode(items) if items else ""


def shown(value: Any) -> str:
    """How a bad field value reads in a message: 'the field is empty', 'got 1e+99', 'got a list'."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "the field is empty"
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = repr(value)
        return f"got {text[:40]}…" if len(text) > 40 else f"got {text}"
    return f"got a {type(value).__name__}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or (isinstance(value, str) and
                                                                             len(value) > 40):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def int_in(value: Any, low: int, high: int, name: str, default: int | None = None) -> int:
    """An integer in [low, high] from a field or URL value, else AppInputError naming the field and range."""
    if value in (None, "") and default is not None:
        return default
    number = _number(value)
    if number is None or number != int(number) or not low <= number <= high:
        raise AppInputError(f"{name} must be a whole number between {low:,} and {high:,}; {shown(value)}.")
    return int(number)


def int_or(value: Any, low: int, high: int, default: int) -> int:
    """`int_in` for URL values: anything invalid falls back to `default`."""
    try:
        return int_in(value, low, high, "value", default)
    except AppInputError:
        return default


def float_in(value: Any, low: float, high: float, name: str) -> float:
    """A finite number in [low, high], else AppInputError naming the field and range."""
    number = _number(value)
    if number is None or not low <= number <= high:
        raise AppInputError(f"{name} must be a number between {low:g} and {high:g}; {shown(value)}.")
    return number


# ---- catalog -----------------------------------------------------------------------------------------
def catalog(results_dir: Path | None = None) -> pd.DataFrame:
    """Saved results that check no other run (runs, reports, interventions …), newest first, with `checks`: one
    '<check>: <headline>' line per saved check of each."""
    rows = wb.find_results(results_dir=results_dir)
    runs = rows[rows["parent_run"].isna() & (rows["kind"] != "atlas")].reset_index(drop=True)  # atlases: /atlas
    checks = rows[rows["parent_run"].notna()]
    runs["checks"] = ["\n".join(f"{c['kind']}: {headline(c['path'])}"
                                for c in checks[checks["parent_run"] == run_id].to_dict("records"))
                      for run_id in runs["run_id"]]
    return runs


def headline(run_dir: str, n: int = 3) -> str:
    """The first `n` single numbers or words of a saved summary, 'k=v' (numbers to 3 significant digits)."""
    try:
        summary = wb.load_summary(run_dir)
    except WorkbenchError as exc:
        return f"summary unreadable ({exc})"
    items = [(k, v) for k, v in summary.items() if isinstance(v, (int, float, str)) and len(str(v)) <= 40]
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in items[:n]) or "no summary"


def run_label(row: Mapping[str, Any]) -> str:
    """How a run reads in every run list: '<label> — <analysis> [<kind>] · <model> · <prompt set> · <created>'."""
    kind = f" [{row['kind']}]" if row.get("kind", "run") != "run" else ""
    text = f"{row['analysis']}{kind} · {row['model']} · {row['prompt_set']} · {str(row['created'])[:16]}"
    return f"{row['label']} — {text}" if row.get("label") else text


def run_options(runs: pd.DataFrame) -> list[dict[str, str]]:
    return [{"label": run_label(r), "value": r["run_id"]} for r in runs.to_dict("records")]


def check_run_id(run_id: Any, runs: pd.DataFrame) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise AppInputError(f"{str(run_id)[:80]!r} is not a run id; pick a run from the list.")
    if run_id not in set(runs["run_id"]):
        raise AppInputError(f"No saved run {run_id!r}; pick one from the list (or run an analysis).")
    return run_id


@lru_cache(maxsize=32)
def _load(path: str, mtime: float) -> pd.DataFrame:
    return wb.load_scores(path)


def load_scores(run_id: str, runs: pd.DataFrame) -> pd.DataFrame:
    """HeadScores of a catalogued run (cached per run directory)."""
    check_run_id(run_id, runs)
    path = Path(runs.loc[runs["run_id"] == run_id, "path"].iloc[0])
    return _load(str(path), (path / "scores.parquet").stat().st_mtime)


def numeric_columns(scores: pd.DataFrame) -> list[str]:
    """Columns a head map can colour by: score first, then numeric extras."""
    skip = {"layer", "head"}
    cols = [c for c in scores.columns if c not in skip and pd.api.types.is_numeric_dtype(scores[c])]
    return ["score"] + [c for c in cols if c != "score"]


def top_heads(scores: pd.DataFrame, column: str = "score", n: int = 15) -> pd.DataFrame:
    """The n strongest heads by `column` (by |value| where it is signed), with label and average rank first (the
    rank column says 'by |score|' for a signed column) and floats rounded for display."""
    if column not in scores.columns:
        raise AppInputError(f"This run has no column {column!r}; choose one of {', '.join(numeric_columns(scores))}.")
    top = wb.rank_heads(scores, column, n)
    by = top.attrs["by"]
    rank = f"rank by {by}" if by != column else "rank"
    top = top.rename(columns={"label": "head_label", "rank": rank})
    keep = ["head_label", rank, "score"] + [c for c in top.columns if c not in
                                             ("head_label", rank, "score", "analysis", "model", "prompt_set", "layer",
                                              "head")]
    return top[keep].round(4)


def map_title(scores: pd.DataFrame, what: str) -> str:
    """'<analysis> · <what>' over '<model> · <prompt set>', from the HeadScores' own identity columns; a signed
    `what` column adds 'signed: ranked by |<what>|'."""
    first = scores.iloc[0]
    signed = what in scores.columns and pd.api.types.is_numeric_dtype(scores[what]) and wb.is_signed(scores[what])
    note = f" · signed: ranked by |{what}|" if signed else ""
    return f"{first['analysis']} · {what}<br><sup>{first['model']} · {first['prompt_set']}{note}</sup>"


def shape_of(scores: pd.DataFrame) -> tuple[int, int]:
    return int(scores["layer"].max()) + 1, int(scores["head"].max()) + 1


# ---- heads -------------------------------------------------------------------------------------------
def head_from_click(click: Mapping[str, Any] | None) -> str | None:
    """'L{l}H{h}' from a heatmap clickData (x = head, y = layer), or None."""
    try:
        point = click["points"][0]
        return str(wb.HeadRef(int(point["y"]), int(point["x"])))
    except (TypeError, KeyError, IndexError, ValueError):
        return None


def parse_head_field(text: Any, n_layers: int, n_heads: int, *, allow_many: bool = True) -> tuple[str, ...]:
    """Validated head labels from 'L3H5, L10H2'; AppInputError says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise AppInputError("Name at least one head, like L3H5 (or click one on the map).")
    if len(text) > 2000:
        raise AppInputError("The heads field is too long; list at most a few dozen heads like 'L3H5, L10H2'.")
    try:
        refs = wb.parse_heads(text)
    except WorkbenchError as exc:
        raise AppInputError(str(exc)) from None
    bad = [str(h) for h in refs if not (h.layer < n_layers and h.head < n_heads)]
    if bad:
        raise AppInputError(f"Head(s) {', '.join(bad)} do not exist: this model has layers L0..L{n_layers - 1} "
                            f"and heads H0..H{n_heads - 1}.")
    if not allow_many and len(refs) != 1:
        raise AppInputError(f"Choose one head here, got {len(refs)}.")
    return tuple(str(h) for h in refs)


def toggle_head(current: str | None, head: str) -> str:
    """Add `head` to a comma-separated field, or remove it if present."""
    heads = [h.strip() for h in (current or "").replace(";", ",").split(",") if h.strip()]
    heads = [h for h in heads if h != head] if head in heads else [*heads, head]
    return ", ".join(heads)


def head_across_runs(layer: int, head: int, model: str, runs: pd.DataFrame) -> pd.DataFrame:
    """The head's score, rank and percentile in the newest run of every (analysis, prompt set) of `model`: rank 1 =
    strongest, by |score| where a run has negative scores (signed), average ranks for ties (as in the atlas)."""
    rows = []
    latest = runs[runs["model"] == model].drop_duplicates(["analysis", "prompt_set"], keep="first")
    for run in latest.to_dict("records"):
        try:
            scores = load_scores(run["run_id"], runs)
        except WorkbenchError:
            continue
        match = scores[(scores["layer"] == layer) & (scores["head"] == head)]
        if match.empty:
            continue
        signed, rank = wb.is_signed(scores["score"]), float(wb.rank_heads(scores).loc[match.index[0], "rank"])
        rows.append({"analysis": run["analysis"], "prompt_set": run["prompt_set"],
                     "score": round(float(match["score"].iloc[0]), 4),
                     "rank": f"{rank:g} / {len(scores)}" + (" by |score|" if signed else ""),
                     "percentile": round(100.0 * (1 - (rank - 1) / len(scores)), 1), "run_id": run["run_id"]})
    return pd.DataFrame(rows, columns=["analysis", "prompt_set", "score", "rank", "percentile", "run_id"])


# ---- compare -----------------------------------------------------------------------------------------
def compare(a: pd.DataFrame, b: pd.DataFrame, k: int = 10) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """Overlap of two HeadScores (workbench.api.circuit_overlap: top-k, Jaccard, Spearman, all of |score|) and, for
    one shape, the per-head difference of percentile ranks, pct_A − pct_B (analyses' scores live on different
    scales; a signed map is ranked by |score|). `stats["by"]` says what was ranked."""
    k = min(int_in(k, 1, 200, "top-k"), len(a), len(b))
    result = wb.circuit_overlap(a, b, top_k=k)
    stats: dict[str, Any] = {"k": k, "top_k_overlap": result["n_shared"], "jaccard": result["jaccard"],
                             "shared_heads": result["shared"], "same_shape": result["same_shape"],
                             "spearman": result["spearman"],
                             "by": "|score|" if wb.is_signed(a["score"]) or wb.is_signed(b["score"]) else "score"}
    if not stats["same_shape"]:
        return stats, None
    diff = wb.score_difference(a, b).rename(columns={"score": "difference"})
    return stats, diff.round({"difference": 2, "score_a": 4, "score_b": 4, "pct_a": 1, "pct_b": 1})


# ---- circuits ----------------------------------------------------------------------------------------
def circuit_table(directory: Path | str | None = None) -> pd.DataFrame:
    """The saved circuits that load (circuits/*.toml by default); broken files are left out of the choices."""
    table = wb.list_circuits(directory)
    return table[table["error"].isna()].reset_index(drop=True)


def circuit_options(table: pd.DataFrame) -> list[dict[str, str]]:
    return [{"label": f"{r['name']} · {r['task']} · {r['n_heads_in_circuit']} heads ({r['method']}, {r['selection']})",
             "value": r["name"]} for r in table.to_dict("records")]


def circuit_name(value: Any, table: pd.DataFrame, which: str) -> str:
    """A circuit name picked in the app or the URL, checked against the saved circuits."""
    if not isinstance(value, str) or value not in set(table["name"]):
        known = ", ".join(table["name"]) or "none saved"
        raise AppInputError(f"Circuit {which} {value!r} is not a saved circuit; pick one of: {known}.")
    return value


def circuit_facts(a, b) -> pd.DataFrame:
    """Two circuits' attributes side by side (attribute, A, B): model, task, size and how each was found."""
    def facts(c) -> dict[str, Any]:
        metric = dict(c.metric or {})
        clean = metric.get("clean")
        return {"circuit": c.name, "model": c.model, "task": c.task, "heads": len(c.heads), "method": c.method,
                "selection": c.selection, "prompts": metric.get("n_prompts", "-"),
                f"clean {metric.get('metric', 'metric')}": "-" if clean is None else
                (f"{clean:.3g}" if isinstance(clean, float) else clean),
                "run": c.run_id or "-"}
    fa, fb = facts(a), facts(b)
    return pd.DataFrame({"attribute": list(fa), "A": [str(v) for v in fa.values()],
                         "B": [str(v) for v in fb.values()]})


# ---- prompts and interventions -----------------------------------------------------------------------
def check_text(text: Any, name: str = "The prompt", limit: int = MAX_PROMPT_CHARS) -> str:
    if text is not None and not isinstance(text, str):
        raise AppInputError(f"{name} must be text; {shown(text)}.")
    if not isinstance(text, str) or not text.strip():
        raise AppInputError(f"{name} is empty; type or pick some text.")
    if len(text) > limit:
        raise AppInputError(f"{name} has {len(text):,} characters; the app accepts at most {limit:,}. "
                            "Paste a shorter text (long prompts are shown as their last window anyway).")
    return text


def split_prompts(text: Any, name: str = "Prompts") -> list[str]:
    """One prompt per non-empty line."""
    text = check_text(text, name, limit=MAX_PROMPT_CHARS)
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if len(prompts) > MAX_PROMPTS:
        raise AppInputError(f"{name}: {len(prompts)} lines; give at most {MAX_PROMPTS} prompts, one per line.")
    return prompts


def prompt_text(prompt: Any, text: Any) -> str:
    """The prompt a page runs: the typed text when `prompt` is "custom", prompt i of a circuit task for "ioi:i"
    (TASK_EXAMPLES of each), else sample prompt number `prompt`."""
    if prompt == "custom":
        return check_text(text, "Your prompt")
    task, _, index = str(prompt).partition(":") if isinstance(prompt, str) else ("", "", "")
    if index:
        if task not in TASK_LABELS:
            raise AppInputError(f"Unknown task {task[:40]!r}; choose one of {', '.join(TASK_LABELS)}.")
        return wb.task_texts(task, TASK_EXAMPLES)[int_in(index, 0, TASK_EXAMPLES - 1, f"{task} prompt")]
    return sample_prompts()[int_in(prompt, 0, 3, "Sample prompt")]


TASK_LABELS = {"ioi": "IOI", "colored_objects": "Colored Objects", "greater_than": "greater-than",
               "docstring": "docstring"}
TASK_EXAMPLES = 4  # prompts of each circuit task the prompt pickers offer


@lru_cache(maxsize=1)
def sample_prompts(n: int = 4, chars: int = 700) -> tuple[str, ...]:
    """Snippets of the bundled public-domain text (Python's pydoc topics), cut at whitespace."""
    text = wb.public_domain_text()
    out = []
    for i in range(n):
        start = text.find(" ", 5000 + i * 40_000) + 1
        chunk = text[start:start + chars]
        out.append(chunk[: chunk.rfind(" ")] if " " in chunk else chunk)
    return tuple(out)


def truncation(res: Mapping[str, Any]) -> str:
    """' (BOS + the last 511 of 901)' when the worker cut a long prompt to its last window, else ''."""
    return f" (BOS + the last {len(res['tokens']) - 1} of {res['n_tokens_total']})" if res["truncated"] else ""
