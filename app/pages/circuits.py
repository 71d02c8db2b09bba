"""Circuits: two saved circuits (circuits/*.toml) side by side: shared heads, Jaccard, chance level, the
membership map, and each circuit's score map with its heads outlined."""

from __future__ import annotations

from dash import dcc, html

from workbench_app import controllers, ids
from workbench_app.context import AppContext
from workbench_app.pages.common import card, field, page, png_config


def layout(state: dict, ctx: AppContext):
    table = controllers.circuit_table(ctx.circuits_dir)
    if table.empty:
        return page("Circuits", "Saved circuits side by side.",
                    card(None, html.P("No saved circuits yet: find one with `workbench circuits find --task ioi`.")))
    names = list(table["name"])
    a = state.get("a") if state.get("a") in names else names[0]
    b = state.get("b") if state.get("b") in names else names[min(1, len(names) - 1)]
    options = controllers.circuit_options(table)
    return page(
        "Circuits", "Which heads two tasks share (Merullo et al. 2024): overlap against chance, and where each "
                    "circuit's heads sit on its score map.",
        html.Div([
            field("circuit A", dcc.Dropdown(id=ids.CC_A, options=options, value=a, clearable=False), width="560px"),
            field("circuit B", dcc.Dropdown(id=ids.CC_B, options=options, value=b, clearable=False), width="560px"),
        ], className="row"),
        html.Div(id=ids.CC_MESSAGE),
        html.Div(id=ids.CC_PROFILE, className="progress-line"),
        html.Div([card("Overlap", html.Div(id=ids.CC_STATS)), card("How they were found", html.Div(id=ids.CC_META))],
                 className="grid-2"),
        html.Div([dcc.Graph(id=ids.CC_OVERLAP, config=png_config("circuit_overlap")),
                  dcc.Graph(id=ids.CC_MAP_A, config=png_config("circuit_A")),
                  dcc.Graph(id=ids.CC_MAP_B, config=png_config("circuit_B"))], className="grid-3"),
    )
