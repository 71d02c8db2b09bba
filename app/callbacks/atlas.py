"""Atlas wiring: model → page; roles → rank table and heatmap; a clicked cell or square → its profile link; CSV."""

from __future__ import annotations

from dash import Input, Output, State, callback_context, dcc
from dash.exceptions import PreventUpdate

from workbench_app import atlas_controllers as ac
from workbench_app import controllers, ids
from workbench_app.callbacks.common import guarded
from workbench_app.context import AppContext
from workbench_app.pages import atlas as atlas_page
from workbench_app.pages.common import profile_link


def register(app, ctx: AppContext) -> None:
    @app.callback(Output(ids.CONTENT, "children", allow_duplicate=True),
                  Output(ids.URL, "search", allow_duplicate=True), Output(ids.AT_MESSAGE, "children"),
                  Input(ids.AT_MODEL, "value"), State(ids.URL, "search"), prevent_initial_call=True)
    @guarded
    def pick_model(model, search):
        if model == controllers.parse_query(search).get("model", ctx.model):  # the page's own first render
            raise PreventUpdate
        model = ac.check_model(model, ctx.atlas_models())
        return atlas_page.layout({"model": model}, ctx), controllers.build_query({"model": model}), []

    @app.callback(Output(ids.AT_MATRIX, "data"), Output(ids.AT_MATRIX, "columns"), Output(ids.AT_HEATMAP, "figure"),
                  Output(ids.URL, "search", allow_duplicate=True), Output(ids.AT_MESSAGE, "children",
                                                                          allow_duplicate=True),
                  Input(ids.AT_ROLE, "value"), State(ids.AT_MODEL, "value"), prevent_initial_call=True)
    @guarded
    def filter_roles(roles, model):
        model = ac.check_model(model, ctx.atlas_models())
        roles = [r for r in (roles or []) if isinstance(r, str)][:20]
        data, columns, fig = atlas_page.matrix_view(ctx, model, roles)
        return data, columns, fig, controllers.build_query({"model": model, "role": ",".join(roles)}), []

    @app.callback(Output(ids.AT_LINK, "children"), Input(ids.AT_HEATMAP, "clickData"),
                  Input(ids.AT_MATRIX, "active_cell"), State(ids.AT_MODEL, "value"), prevent_initial_call=True)
    @guarded
    def link(click, cell, model):
        if callback_context.triggered_id == ids.AT_HEATMAP:
            head = ac.head_from_heatmap(click)
        else:
            head = cell.get("row_id") if isinstance(cell, dict) else None
        if not isinstance(head, str) or not isinstance(model, str):
            raise PreventUpdate
        return profile_link(model, head)

    @app.callback(Output(ids.AT_DOWNLOAD, "data"), Output(ids.AT_MESSAGE, "children", allow_duplicate=True),
                  Input(ids.AT_DOWNLOAD_GO, "n_clicks"), State(ids.AT_MODEL, "value"), prevent_initial_call=True)
    @guarded
    def download(n_clicks, model):
        if not n_clicks:
            raise PreventUpdate
        atlas = ctx.atlas(ac.check_model(model, ctx.atlas_models()))
        return dcc.send_data_frame(atlas.values.to_csv, f"atlas-{model}.csv", index=False), []
