"""Head profile (/head?model=M&head=L17H4): every atlas metric of one head with its interval and rank, its roles
with their evidence, its circuits, its attention on one example prompt of each task (tokens shaded by attention,
click one to make it the query), and a one-click ablation across every task's metric (both model-worker jobs)."""

from __future__ import annotations

from dash import dcc, html

import workbench.api as wb
from workbench_app import atlas_controllers as ac
from workbench_app import controllers, ids
from workbench_app.context import AppContext
from workbench_app.pages.attention import link as attention_link
from workbench_app.pages.common import alert, card, field, job_slots, page, table

STATE = "hp-state"  # Store: {model, head, live}
GO_MESSAGE = "hp-go-message"
SUBTITLE = "One head across every analysis in the atlas, its attention on each task, and what ablating it does."


def _head_controls(model: str, head: str) -> html.Div:
    return html.Div([
        field("head", dcc.Input(id=ids.HP_HEAD_INPUT, type="text", value=head, placeholder="L3H5", debounce=False,
                                className="head-input"), width="110px"),
        html.Button("Show head", id=ids.HP_GO, n_clicks=0),
        dcc.Link(f"← the {model} atlas", href="/atlas" + controllers.build_query({"model": model}),
                 className="profile-link"),
        html.Div(id=GO_MESSAGE),
    ], className="row")


def _atlas_cards(ctx: AppContext, model: str, head: str) -> tuple[str, list]:
    """(checked head label, cards) from the model's atlas; a note card naming the build commands if it has none."""
    try:
        atlas = ctx.atlas(model)
    except wb.WorkbenchError as exc:
        if model != ctx.model:
            raise
        (label,) = controllers.parse_head_field(head, *ctx.shape, allow_many=False)
        return label, [card("Atlas", [alert(str(exc), "warn"), html.P(html.Code(ac.build_commands(model)))])]
    found = ac.profile(atlas, head)
    circuits = found["circuits"]
    return found["label"], [
        card(f"Every metric ({len(found['metrics'])}): value, bootstrap interval, rank among "
             f"{atlas.n_layers * atlas.n_heads} heads",
             html.Div(table(found["metrics"], max_rows=500), id=ids.HP_METRICS)),
        html.Div([
            card("Roles, with the evidence", table(found["roles"]) if not found["roles"].empty else
                 html.P("No role at the atlas's thresholds.", className="muted")),
            card("Circuits", table(circuits, links={"circuit": lambda c: f"/circuits?a={c}"}) if not circuits.empty
                 else html.P(f"In no saved circuit of {model}.", className="muted")),
        ], className="grid-2")]


def _live_cards(ctx: AppContext, model: str, head: str) -> list:
    if model != ctx.model or ctx.worker is None:
        why = ("the app was started without a model worker" if ctx.worker is None else
               f"the app's model worker runs {ctx.model}; start the app with --model {model}")
        return [card("Attention and ablation", alert(f"Live views are off: {why}.", "warn"))]
    return [
        card("Attention on one example of each task", [
            html.P("Each token is shaded by how much the query token (outlined) attends to it; hover for the weight.",
                   className="field-hint"), attention_link(head),
            *job_slots(ids.HP_PROBE_JOB, ids.HP_PROBE_POLL, ids.HP_PROBE_PROGRESS), html.Div(id=ids.HP_ATTENTION)]),
        card("Ablate this head on every task", [
            html.Div([field("ablation", dcc.Dropdown(id=ids.HP_MODE, value="mean", clearable=False, options=[
                {"label": "mean (its mean output over the task's prompts)", "value": "mean"},
                {"label": "zero (its output set to 0)", "value": "zero"}]), width="360px"),
                      html.Button("Ablate this head", id=ids.HP_ABLATE, n_clicks=0, className="primary")],
                     className="row"),
            *job_slots(ids.HP_ABLATE_JOB, ids.HP_ABLATE_POLL, ids.HP_ABLATE_PROGRESS), html.Div(id=ids.HP_ABLATION)]),
    ]


def layout(state: dict, ctx: AppContext):
    model = state.get("model") or ctx.model
    head = (state.get("head") or "").strip()
    title = f"{head or 'Head'} · {model}"
    try:
        label, atlas_cards = _atlas_cards(ctx, model, head)
    except wb.WorkbenchError as exc:
        return page(title, SUBTITLE, _head_controls(model, head), html.Div(alert(str(exc)), id=ids.HP_MESSAGE))
    live = model == ctx.model and ctx.worker is not None
    return page(f"{label} · {model}", SUBTITLE, _head_controls(model, label), html.Div(id=ids.HP_MESSAGE),
                dcc.Store(id=STATE, data={"model": model, "head": label, "live": live}),
                *atlas_cards, *_live_cards(ctx, model, label))


def attention_text(task: dict, query=None) -> list:
    """One task's prompt as clickable token spans shaded by the attention of `query`, and the caption."""
    tokens, caption = ac.attention_tokens(task, query)
    spans = [html.Span(t["text"].replace("\n", "↵\n"), id={"type": ids.HP_TOKEN, "task": task["task"], "index": i},
                       n_clicks=0, title=t["title"], className=f"tok tok-{t['kind']}",
                       style={"backgroundColor": f"rgba(214, 69, 65, {t['alpha']:.3f})"} if t["alpha"] else None)
             for i, t in enumerate(tokens)]
    return [html.Div(caption, className="field-hint"), html.Div(spans, className="tok-text")]


def attention_cards(result: dict) -> list:
    """Every task of a head_probe answer, each with its text view, plus the tasks this model could not build."""
    out = [html.Div([html.H4(f"{t['label']} · scored by {t['metric']}"),
                     html.Div(attention_text(t), id={"type": ids.HP_TEXT, "task": t["task"]})], className="tok-task")
           for t in result["tasks"]]
    if result.get("skipped"):
        out.append(html.Details([html.Summary(f"{len(result['skipped'])} tasks this model's tokenizer cannot build"),
                                 html.Ul([html.Li(f"{s['label']}: {s['reason'][:300]}") for s in result["skipped"]])],
                                className="muted"))
    return out
