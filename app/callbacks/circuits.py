"""Circuits wiring: two circuit names → the overlap table, the membership map and both score maps."""

from __future__ import annotations

from dash import Input, Output

import workbench.api as wb
from workbench_app import controllers, ids
from workbench_app.callbacks.common import guarded, link_clicks_to_profiles
from workbench_app.context import AppContext
from workbench_app.pages.common import table


def _score_map(circuit, scores, label: str):
    if scores is None:
        return wb.plot_placeholder(f"{circuit.name} was saved without a score map.")
    return wb.plot_heads(scores, highlight=[(h.layer, h.head) for h in circuit.heads], highlight_color="#111111",
                         title=f"{label}: {circuit.name}<br><sup>score map · circuit heads outlined "
                               f"({circuit.selection})</sup>")


def register(app, ctx: AppContext) -> None:
    @app.callback(Output(ids.CC_STATS, "children"), Output(ids.CC_META, "children"), Output(ids.CC_OVERLAP, "figure"),
                  Output(ids.CC_MAP_A, "figure"), Output(ids.CC_MAP_B, "figure"),
                  Output(ids.URL, "search", allow_duplicate=True), Output(ids.CC_MESSAGE, "children"),
                  Input(ids.CC_A, "value"), Input(ids.CC_B, "value"), prevent_initial_call="initial_duplicate")
    @guarded
    def show(a, b):
        saved = controllers.circuit_table(ctx.circuits_dir)
        a, b = controllers.circuit_name(a, saved, "A"), controllers.circuit_name(b, saved, "B")
        result = wb.compare_circuits(a, b, ctx.circuits_dir)
        ca, cb = result.a, result.b
        overlap_fig = result.overlap_figure(names=("A", "B"))
        if overlap_fig is None:
            overlap_fig = wb.plot_placeholder(f"A has {ca.n_layers} × {ca.n_heads} heads and B {cb.n_layers} × "
                                              f"{cb.n_heads} (two models): no shared map; read the numbers.")
        facts = controllers.circuit_facts(ca, cb)
        return (table(result.rows(), id="cc-overlap-table"), table(facts, id="cc-facts-table"), overlap_fig,
                _score_map(ca, result.a_scores, "A"), _score_map(cb, result.b_scores, "B"),
                controllers.build_query({"a": a, "b": b}), [])

    def model_of(graph, a, b):
        saved = controllers.circuit_table(ctx.circuits_dir)
        return saved.loc[saved["name"] == (b if graph == ids.CC_MAP_B else a), "model"].iloc[0]

    link_clicks_to_profiles(app, ids.CC_PROFILE, (ids.CC_OVERLAP, ids.CC_MAP_A, ids.CC_MAP_B), (ids.CC_A, ids.CC_B),
                            model_of)
