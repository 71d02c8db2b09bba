"""Head map: any saved analysis as a layer × head heatmap, its top heads, and a clicked head's pattern."""

from __future__ import annotations

from dash import dcc, html

import workbench.api as wb
from workbench_app import controllers, ids
from workbench_app.context import AppContext
from workbench_app.pages.common import card, definition, field, job_slots, page, png_config, table


def prompt_options() -> list[dict]:
    """Natural-text samples, the first prompts of each circuit task (IOI, Colored Objects, greater-than, docstring),
    and the typed text."""
    samples = controllers.sample_prompts()
    opts = [{"label": f"sample {i + 1}: {s[:50].strip()}…", "value": str(i)} for i, s in enumerate(samples)]
    for task, label in controllers.TASK_LABELS.items():
        opts += [{"label": f"{label} {i + 1}: {t[:45].strip()}…", "value": f"{task}:{i}"}
                 for i, t in enumerate(wb.task_texts(task, controllers.TASK_EXAMPLES))]
    return opts + [{"label": "my own text (below)", "value": "custom"}]


def map_view(ctx: AppContext, run_id: str, column: str | None, head: str | None):
    """(colour-by options, heatmap figure, top-heads table, the column's definition, the map's PNG config) of a
    run; shared by the layout and its callback. The figure's trace 1 marks `head`."""
    scores = controllers.load_scores(run_id, ctx.runs())
    columns = controllers.numeric_columns(scores)
    column = column if isinstance(column, str) and column in columns else "score"
    ref = wb.HeadRef.parse(head) if isinstance(head, str) and head else None
    fig = wb.plot_heads(scores, column, title=controllers.map_title(scores, column))
    fig.add_trace(wb.plot_head_marker([(ref.layer, ref.head)] if ref else []))  # trace 1: callbacks.heads.mark_head
    name = f"{scores['analysis'].iloc[0]}_{column}_{run_id}"
    return (columns, fig, table(controllers.top_heads(scores, column, n=12), head_buttons="head_label", csv=name),
            definition(str(scores["analysis"].iloc[0]), column), png_config(name))


def layout(state: dict, ctx: AppContext):
    runs = ctx.runs()
    if runs.empty:
        return page("Head map", "Every head of a saved analysis run, layer by layer.",
                    card(None, [html.P(["No saved runs yet. Run one on the ", dcc.Link("Overview", href="/"),
                                        " page or with `workbench run attention_profile`."])]))
    run = state.get("run") if state.get("run") in set(runs["run_id"]) else runs["run_id"].iloc[0]
    warn = None
    if state.get("run") and state.get("run") != run:
        warn = f"No saved run {state['run'][:60]!r}; showing the newest run instead."
    prompt = state.get("prompt") if state.get("prompt") in {o["value"] for o in prompt_options()} else "0"
    columns, figure, top, meaning, config = map_view(ctx, run, state.get("col"), None)
    column = state.get("col") if state.get("col") in columns else "score"
    controls = html.Div([
        field("run", dcc.Dropdown(id=ids.HM_RUN, options=controllers.run_options(runs), value=run,
                                  clearable=False), width="520px"),
        field("colour by", dcc.Dropdown(id=ids.HM_COLUMN, value=column, clearable=False, options=columns),
              width="200px"),
        field("head", dcc.Input(id=ids.HM_HEAD_INPUT, type="text", placeholder="L3H5", value=state.get("head", ""),
                                debounce=True, className="head-input"), width="110px"),
        html.Button("Show head", id=ids.HM_HEAD_GO, n_clicks=0),
    ], className="row")
    pattern_controls = html.Div([
        field("prompt", dcc.Dropdown(id=ids.HM_PROMPT, options=prompt_options(), value=prompt, clearable=False),
              width="360px"),
        field("max tokens", dcc.Input(id=ids.HM_MAX, type="number", min=8, max=512, step=1, debounce=True,
                                      value=controllers.int_or(state.get("tokens"), 8, 512, 128)), width="110px"),
    ], className="row")
    text = dcc.Textarea(id=ids.HM_TEXT, value=state.get("text", ""),
                        placeholder="Type a prompt (at most 20,000 characters), then choose 'my own text' above.",
                        className="prompt-box", style={"height": "70px"})
    return page(
        "Head map", "Click a head to see its attention pattern and how it scores in every other analysis.",
        html.Div(id="hm-url-message", children=[] if warn is None else [html.Div(warn, className="alert alert-warn")]),
        html.Div(id=ids.HM_MESSAGE),
        controls,
        html.Div(id="hm-head-message"),
        dcc.Store(id=ids.HM_HEAD, data=None),
        html.Div([
            html.Div([dcc.Graph(id=ids.HM_MAP, figure=figure, config=config),
                      html.Div(meaning, id=ids.HM_DEFINITION),
                      card("Top heads", html.Div(top, id=ids.HM_TOP))], className="col-left"),
            html.Div([
                card(None, [html.H3("Click a head on the map", id=ids.HM_TITLE, className="card-title"),
                            pattern_controls, text,
                            *job_slots(ids.HM_JOB, ids.HM_JOB_POLL, ids.HM_PROGRESS),
                            dcc.Graph(id=ids.HM_PATTERN, config=png_config("pattern"))]),
                card("This head in the other analyses", html.Div(id=ids.HM_ACROSS)),
            ], className="col-right"),
        ], className="split"),
    )
