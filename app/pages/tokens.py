"""Tokens: per-token views of one prompt: sink scores and BOS mass, WAAD and FAI with preplan/anchor marks."""

from __future__ import annotations

from dash import dcc, html

from workbench_app import controllers, ids
from workbench_app.context import AppContext
from workbench_app.pages.common import card, field, job_slots, page, png_config
from workbench_app.pages.heads import prompt_options


def layout(state: dict, ctx: AppContext):
    prompt = state.get("prompt") if state.get("prompt") in {o["value"] for o in prompt_options()} else "0"
    return page(
        "Tokens", "Which tokens soak up attention (sinks, anchors) and where heads look far back (preplan).",
        card(None, [
            html.Div([
                field("prompt", dcc.Dropdown(id=ids.TK_PROMPT, options=prompt_options(), value=prompt,
                                             clearable=False), width="380px"),
                field("overlay head", dcc.Input(id=ids.TK_HEAD, type="text", value=state.get("head", ""),
                                                placeholder="L3H5 (optional)", className="head-input"),
                      width="150px"),
                field("WAAD window W", dcc.Input(id=ids.TK_WINDOW, type="number", min=1, max=512,
                                                 value=controllers.int_or(state.get("window"), 1, 512, 10)),
                      width="120px"),
                html.Button("Run", id=ids.TK_GO, className="primary", n_clicks=0),
            ], className="row"),
            dcc.Textarea(id=ids.TK_TEXT, value=state.get("text", ""), className="prompt-box",
                         placeholder="Type a prompt (at most 20,000 characters), then choose 'my own text' above.",
                         style={"height": "70px"}),
            html.Div("Heads are split into local and global at the median of their mean attention distance on "
                     "this prompt; preplan = WAAD above its 90th percentile, anchor = FAI above its 90th "
                     "percentile (Li et al. 2025).", className="field-hint"),
            *job_slots(ids.TK_JOB, ids.TK_JOB_POLL, ids.TK_PROGRESS),
            html.Div(id=ids.TK_MESSAGE),
        ]),
        card(None, dcc.Graph(id=ids.TK_FIGURE, config=png_config("token_traces"))),
    )
