"""Compare wiring: two runs → overlap numbers, both maps, and the percentile-rank difference map."""

from __future__ import annotations

from dash import Input, Output, html

import workbench.api as wb
from workbench_app import controllers, ids
from workbench_app.callbacks.common import guarded, link_clicks_to_profiles
from workbench_app.context import AppContext
from workbench_app.pages.common import definition


def _stat(label: str, value: str) -> html.Div:
    return html.Div([html.Div(value, className="stat-value"), html.Div(label, className="stat-label")],
                    className="stat")


def register(app, ctx: AppContext) -> None:
    @app.callback(Output(ids.CM_STATS, "children"), Output(ids.CM_MAP_A, "figure"), Output(ids.CM_MAP_B, "figure"),
                  Output(ids.CM_DIFF, "figure"), Output(ids.URL, "search", allow_duplicate=True),
                  Output(ids.CM_DEFINITION, "children"), Output(ids.CM_MESSAGE, "children"),
                  Input(ids.CM_A, "value"), Input(ids.CM_B, "value"), Input(ids.CM_K, "value"),
                  prevent_initial_call="initial_duplicate")
    @guarded
    def show(a, b, k):
        runs = ctx.runs()
        k = controllers.int_in(k, 1, 200, "top-k")
        score_a, score_b = controllers.load_scores(a, runs), controllers.load_scores(b, runs)
        stats, diff = controllers.compare(score_a, score_b, k)
        k = stats["k"]
        cards = [_stat(f"of the top-{k} heads by {stats['by']} shared", f"{stats['top_k_overlap']} / {k}"),
                 _stat("Jaccard of the top-k sets", f"{stats['jaccard']:.2f}"),
                 _stat(f"Spearman rank correlation of {stats['by']}",
                       "—" if stats["spearman"] is None else f"{stats['spearman']:.2f}"),
                 html.Div([html.Div("shared top heads", className="stat-label"),
                           html.Div(", ".join(stats["shared_heads"]) or "none", className="shared-heads")],
                          className="stat wide")]
        fig_a = wb.plot_heads(score_a, title="A: " + controllers.map_title(score_a, "score"))
        fig_b = wb.plot_heads(score_b, title="B: " + controllers.map_title(score_b, "score"))
        if diff is None:
            fig_d = wb.plot_placeholder("The runs have different layer × head shapes (two models):\n"
                                        "no per-head difference map; compare the maps and the overlap.")
        else:
            fig_d = wb.plot_difference(diff, label_a="A", label_b="B",
                                       title=f"A − B: percentile rank difference of {stats['by']}<br>"
                                             "<sup>red: ranked higher in A · blue: higher in B</sup>")
        query = controllers.build_query({"a": a, "b": b, "k": k})
        meaning = [definition(s["analysis"].iloc[0], "score") for s in (score_a, score_b)]
        return cards, fig_a, fig_b, fig_d, query, meaning, []

    def model_of(graph, a, b):
        runs = ctx.runs()
        return runs.loc[runs["run_id"] == (b if graph == ids.CM_MAP_B else a), "model"].iloc[0]

    link_clicks_to_profiles(app, ids.CM_PROFILE, (ids.CM_MAP_A, ids.CM_MAP_B, ids.CM_DIFF), (ids.CM_A, ids.CM_B),
                            model_of)
