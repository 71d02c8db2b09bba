"""Attention text: the prompt as tokens; hover (or click) a token to colour what it attends to and what attends to
it, for one head or a grid of every head of a layer; pages of up to 1024 query tokens through the whole context.
The browser draws (assets/attention_text.js); the worker computes only the visible window (workbench.engine.window).
"""

from __future__ import annotations

from dash import dcc, html

import workbench.api as wb
from workbench_app import controllers, ids
from workbench_app.context import AppContext
from workbench_app.pages.common import card, field, job_slots, page
from workbench_app.pages.heads import prompt_options

SIZES = (128, 256, 512, 1024)
LONG = {"long-16000": 16_000, "long-34000": 34_000}  # bundled text (≈ 4k and 8k SmolLM2 tokens)


def options() -> list[dict]:
    long = [{"label": f"bundled text, first {n:,} characters", "value": key} for key, n in LONG.items()]
    return [*prompt_options()[:-1], *long, prompt_options()[-1]]


def prompt_body(prompt, text) -> str:
    """The text a request runs: a long bundled excerpt, a sample, or the typed text (up to 200,000 characters)."""
    if prompt in LONG:
        return wb.public_domain_text()[:LONG[prompt]]
    if prompt == "custom":
        return controllers.check_text(text, "Your prompt", limit=200_000)
    return controllers.prompt_text(prompt, text)


def href(head: str) -> str:
    """This page with `head` (L3H5) chosen: its layer and its single-head view."""
    ref = wb.HeadRef.parse(head)
    return "/attention" + controllers.build_query({"head": str(ref), "layer": ref.layer})


def link(head: str, text: str | None = None) -> dcc.Link:
    return dcc.Link(text or f"{head}: open in the attention text view →", href=href(head), className="profile-link")


def layout(state: dict, ctx: AppContext):
    n_layers, _ = ctx.shape
    head = state.get("head", "")
    try:
        ref = wb.HeadRef.parse(head[:20]) if head else None
    except wb.WorkbenchError:
        ref = None
    layer = ref.layer if ref else controllers.int_or(state.get("layer"), 0, max(0, n_layers - 1), 0)
    prompt = state.get("prompt") if state.get("prompt") in {o["value"] for o in options()} else "long-16000"
    size = controllers.int_or(state.get("tokens"), 1, 1024, 512)
    controls = html.Div([
        field("prompt", dcc.Dropdown(id=ids.AX_PROMPT, options=options(), value=prompt, clearable=False),
              width="340px"),
        field("layer", dcc.Input(id=ids.AX_LAYER, type="number", min=0, max=n_layers - 1, step=1, value=layer),
              width="80px"),
        field("window (query tokens)", dcc.Dropdown(id=ids.AX_SIZE, options=list(SIZES),
                                                    value=size if size in SIZES else 512, clearable=False),
              width="150px"),
        html.Button("Show", id=ids.AX_GO, className="primary", n_clicks=0),
        html.Button("◀ prev", id=ids.AX_PREV, n_clicks=0),
        field("page", dcc.Input(id=ids.AX_PAGE, type="number", min=1, step=1, debounce=True,
                                value=controllers.int_or(state.get("page"), 1, 10_000, 1)), width="90px"),
        html.Button("next ▶", id=ids.AX_NEXT, n_clicks=0),
    ], className="row")
    return page(
        "Attention text", "The prompt as tokens: hover a token to colour what it attends to (blue, earlier tokens) "
        "and what attends to it (orange, later tokens); click to pin it. One head, or every head of the layer.",
        card(None, [
            controls,
            dcc.Textarea(id=ids.AX_TEXT, value=state.get("text", ""), className="prompt-box",
                         placeholder="Type or paste a prompt (up to the model's context), then choose 'my own "
                                     "text' above.", style={"height": "70px"}),
            html.Div("Only the window's query tokens are computed (keys: the window, plus each query's mass on BOS "
                     "and on the tokens before the window, shown as numbers). Colours are scaled to the largest "
                     "weight shown outside BOS; the numbers are the weights.", className="field-hint"),
            *job_slots(ids.AX_JOB, ids.AX_JOB_POLL, ids.AX_PROGRESS),
            html.Div(id=ids.AX_MESSAGE),
        ]),
        dcc.Store(id=ids.AX_DATA), dcc.Store(id=ids.AX_SHOWN),
        html.Div(id=ids.AX_RENDERED, className="muted", style={"display": "none"}),
        card(None, html.Div(id=ids.AX_VIEW, className="att-view", **{"data-head": str(ref) if ref else ""})),
    )
