"""Compare: two runs side by side (two analyses, two prompt sets or two models), overlap and difference."""

from __future__ import annotations

from dash import dcc, html

from workbench_app import controllers, ids
from workbench_app.context import AppContext
from workbench_app.pages.common import card, field, page, png_config


def layout(state: dict, ctx: AppContext):
    runs = ctx.runs()
    if len(runs) < 1:
        return page("Compare", "Two runs side by side.",
                    card(None, html.P(["Nothing to compare yet: save runs first (", dcc.Link("Overview", href="/"),
                                       ")."])))
    valid = set(runs["run_id"])
    a = state.get("a") if state.get("a") in valid else runs["run_id"].iloc[0]
    b = state.get("b") if state.get("b") in valid else runs["run_id"].iloc[min(1, len(runs) - 1)]
    options = controllers.run_options(runs)
    return page(
        "Compare", "Two analyses or two runs side by side: top-k overlap, rank correlation, and where they differ.",
        html.Div([
            field("run A", dcc.Dropdown(id=ids.CM_A, options=options, value=a, clearable=False), width="460px"),
            field("run B", dcc.Dropdown(id=ids.CM_B, options=options, value=b, clearable=False), width="460px"),
            field("top-k", dcc.Input(id=ids.CM_K, type="number", min=1, max=200, step=1,
                                     value=controllers.int_or(state.get("k"), 1, 200, 10), debounce=True),
                  width="90px"),
        ], className="row"),
        html.Div(id=ids.CM_MESSAGE),
        html.Div(id=ids.CM_STATS, className="stats-row"),
        html.Div(id=ids.CM_PROFILE, className="progress-line"),
        html.Div([dcc.Graph(id=ids.CM_MAP_A, config=png_config(f"A_{a}")),
                  dcc.Graph(id=ids.CM_MAP_B, config=png_config(f"B_{b}")),
                  dcc.Graph(id=ids.CM_DIFF, config=png_config(f"A_{a}_minus_B_{b}"))], className="grid-3"),
        html.Div(id=ids.CM_DEFINITION),
    )
