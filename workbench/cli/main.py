"""`workbench` command line: turns strings into typed requests and calls workbench.api; nothing else."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from workbench import api
from workbench.analyses import get_analysis
from workbench.analyses.attention_sinks import cli as cli_sinks
from workbench.analyses.circuits import cli as cli_circuits
from workbench.analyses.head_divergence import cli as cli_divergence
from workbench.analyses.preplan_anchor import cli as cli_preplan
from workbench.cli import app as cli_app
from workbench.cli import atlas as cli_atlas
from workbench.cli import batch as cli_batch
from workbench.cli import registry as cli_registry
from workbench.cli.common import DEVICE, DTYPE, MODEL, OneLineErrors, _params, console, friendly, show
from workbench.core import paths
from workbench.core.budget import edit_batch_size
from workbench.core.errors import WorkbenchError
from workbench.core.heads import parse_heads
from workbench.core.natural_text import text_chunks
from workbench.core.validation import parse_int_list
from workbench.edits import vocabulary
from workbench.models.loading import model_info
from workbench.results.runs import load_result

app = typer.Typer(help="Attention-head interpretability workbench.", no_args_is_help=True,
                  pretty_exceptions_enable=False, cls=OneLineErrors)
cache_app = typer.Typer(help="The on-disk activation cache.", no_args_is_help=True)
results_app = typer.Typer(help="Saved analysis runs (the catalog).", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
app.add_typer(results_app, name="results")
app.command("batch")(cli_batch.batch)
app.add_typer(cli_app.app_app, name="app")
app.add_typer(cli_atlas.app, name="atlas")
cli_registry.add_analysis_apps(app)  # `workbench <analysis> run | all | show | <check>` for every analysis
# Short groups: their own commands (reports, edits, circuit files) and names for the generic ones.
_GROUPS = {
    "induction": (typer.Typer(help="Induction heads on repeated random tokens (Olsson et al. 2022).",
                              no_args_is_help=True), "induction_heads", {"score": "run", "check": "ablate"}),
    "retrieval": (typer.Typer(help="Retrieval heads (Wu et al. 2024): scores, causal check, KV budget.",
                              no_args_is_help=True), "retrieval_heads",
                  {"score": "run", "mask": "mask", "budget": "kv_budget", "all": "all"}),
    "sinks": (cli_sinks.sinks_app, "attention_sinks", {"search": "act_search"}),
    "preplan": (cli_preplan.app, "preplan_anchor", {"intervene": "anchor_intervention"}),
    "divergence": (cli_divergence.app, "head_divergence", {"reinforce": "reinforce"}),
    "circuits": (cli_circuits.circuits_app, "head_attribution", {"faithfulness": "faithfulness", "repair": "repair"}),
}
for _name, (_group, _analysis, _names) in _GROUPS.items():
    cli_registry.add_commands(_group, get_analysis(_analysis), _names)
    app.add_typer(_group, name=_name)


@app.callback()
def _global_options(ctx: typer.Context, home: Optional[Path] = typer.Option(
        None, "--home", help="keep the activation cache, results, converted models and saved circuits under DIR "
        "(default: your user cache/data dirs, or WORKBENCH_CACHE_DIR, WORKBENCH_RESULTS_DIR, …)")):
    """Attention-head interpretability workbench."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizers' threads warn after a fork otherwise
    # for the whole command: warnings logged while a progress bar runs go above it, on lines of their own
    ctx.with_resource(logging_redirect_tqdm())
    if home is not None:
        paths.set_home(home)

@app.command()
@friendly
def models():
    """List bundled and test models: size, layers × heads, KV heads, context, offline availability."""
    df = api.list_models()
    df["params"] = df["params"].map(lambda p: f"{p / 1e6:.0f}M" if p == p and p else "-")
    show(df[["name", "params", "layers", "heads", "kv_heads", "n_ctx", "available", "description"]], "models")
    console.print("Any Hugging Face id (org/name) or local HF directory also works as --model.")


@app.command()
@friendly
def analyses():
    """List the registered analyses."""
    show(api.list_analyses(), "analyses")


@app.command()
@friendly
def hooks(model: str = MODEL,
          device: str = DEVICE, dtype: str = DTYPE,
          contains: str = typer.Option("blocks.0.", help="only names containing this")):
    """List the model's real hook names."""
    names = [n for n in api.load_model(model, device=device, dtype=dtype).hook_dict if contains in n]
    console.print("\n".join(names))


@app.command()
@friendly
def run(analysis: str = typer.Argument("attention_profile"),
        model: str = MODEL,
        device: str = DEVICE, dtype: str = DTYPE,
        param: List[str] = typer.Option(None, "--param", "-p", help="name=value, repeatable"),
        top: int = typer.Option(10, help="show this many top heads"),
        save: bool = typer.Option(True, help="save to the results catalog")):
    """Run an analysis on a model and save its Result (`workbench <analysis> run` takes the params as options)."""
    cli_registry.run_and_show(get_analysis(analysis), _params(param), model=model, device=device, dtype=dtype,
                      results_dir=None, save=save, out=None, top=top)


@app.command()
@friendly
def intervene(heads: str = typer.Option(..., help="heads like 'L3H5,L10H2'"),
              edit: str = typer.Option("ablate", help="ablate | mean-ablate | scale | uniform | reweight (patch "
                                       "needs source prompts: use the API or the app)"),
              alpha: float = typer.Option(0.0, help="scale factor (scale) or attention scale (reweight)"),
              keys: str = typer.Option("0", help="key positions for reweight, e.g. '0,1'"),
              metric: str = typer.Option("loss", help="loss | logit_diff | answer_logprob"),
              model: str = MODEL,
              device: str = DEVICE, dtype: str = DTYPE,
              n_prompts: int = typer.Option(4), n_tokens: int = typer.Option(128)):
    """Edit heads on natural-text prompts and show the metric before and after, per prompt."""
    from workbench.edits.intervene import summarize

    refs = parse_heads(heads)
    if "source" in vocabulary.kind(edit).params:
        raise WorkbenchError(f"--edit {edit} needs source prompts; patch through workbench.api or the app.")
    the_edit = vocabulary.make_edit(edit, refs, alpha=alpha, keys=parse_int_list(keys, "--keys"))
    bridge = api.load_model(model, device=device, dtype=dtype)
    batch = edit_batch_size(n_tokens, model_info(bridge).n_heads)  # batch × heads × T² scores stay bounded
    table = api.intervene(bridge, text_chunks(bridge, n_prompts, n_tokens), the_edit, metric, batch_size=batch)
    show(table, f"{table.attrs['edits'][0]} · {metric}")
    console.print(summarize(table))


def _cache_entries():
    """(store root, one row per cache entry); prints a note and returns no rows when the cache is empty."""
    import pandas as pd

    from workbench.engine.store import ActivationStore

    store = ActivationStore()
    df = pd.DataFrame(store.entries())
    if df.empty:
        console.print(f"cache at {store.root} is empty (0 B)")
    return store.root, df


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


@cache_app.command("ls")
@friendly
def cache_ls():
    """List cached (model, prompt set) entries."""
    root, df = _cache_entries()
    if not df.empty:
        df["size"] = df.pop("bytes").map(_mib)
        show(df.drop(columns=["path"]), f"cache at {root}")


@cache_app.command("du")
@friendly
def cache_du():
    """Disk use of the activation cache, per model."""
    root, df = _cache_entries()
    if not df.empty:
        per_model = df.groupby(["model", "model_fingerprint"], as_index=False)["bytes"].sum()
        per_model["size"] = per_model.pop("bytes").map(_mib)
        show(per_model, f"cache at {root}: {_mib(df['bytes'].sum())} in all")


@cache_app.command("rm")
@friendly
def cache_rm(model_fingerprint: Optional[str] = typer.Option(None, "--model-fp"),
             prompts_fingerprint: Optional[str] = typer.Option(None, "--prompts-fp"),
             everything: bool = typer.Option(False, "--all", help="remove every entry")):
    """Remove cache entries by fingerprint prefix (see `cache ls`), or --all."""
    from workbench.engine.store import ActivationStore

    try:
        n = ActivationStore().remove(model_fingerprint=model_fingerprint, prompts_fingerprint=prompts_fingerprint,
                                     everything=everything)
    except ValueError as exc:
        raise WorkbenchError(str(exc)) from None
    console.print(f"removed {n} cache entries")


@results_app.command("ls")
@friendly
def results_ls(analysis: Optional[str] = None, model: Optional[str] = typer.Option(None, "--model", "-m"),
               prompt_set: Optional[str] = typer.Option(None, "--prompt-set"),
               kind: Optional[str] = typer.Option(None, help="'run' or a check's name"),
               results_dir: Optional[Path] = cli_registry.RESULTS_DIR):
    """List saved runs and checks (kind, and the run a check checked), newest first, filtered."""
    df = api.find_results(analysis=analysis, model=model, prompt_set=prompt_set, kind=kind, results_dir=results_dir)
    if df.empty:
        console.print("no saved runs match")
        return
    df["parent_run"] = df["parent_run"].fillna("")
    show(df[["run_id", "label", "analysis", "kind", "parent_run", "model", "prompt_set", "params", "n_rows"]],
         "runs (the run id starts with the UTC time it was saved)")


@results_app.command("show")
@friendly
def results_show(run_id: str, top: int = typer.Option(10, help="show this many top heads"),
                 results_dir: Optional[Path] = cli_registry.RESULTS_DIR):
    """Top heads (and, for a check, its tables) and the summary of a saved run."""
    cli_registry.print_result(load_result(run_id, results_dir), top)


@results_app.command("label")
@friendly
def results_label(run_id: str, text: str = typer.Argument(..., help="at most 60 characters; '' clears the label"),
                  results_dir: Optional[Path] = cli_registry.RESULTS_DIR):
    """Label a saved run (shown in `results ls` and in every run list of the app)."""
    record = api.label_run(run_id, text, results_dir)
    console.print(f"{record.run_id}: label {record.label!r}" if record.label else f"{record.run_id}: label cleared")


@results_app.command("rm")
@friendly
def results_rm(run_id: str, yes: bool = typer.Option(False, "--yes", "-y", help="do not ask"),
               results_dir: Optional[Path] = cli_registry.RESULTS_DIR):
    """Delete a saved run (a damaged one too) and its checks: moved to the results dir's .trash/."""
    if not yes:
        typer.confirm(f"Delete run {run_id} and its checks?", abort=True)
    removed = api.delete_run(run_id, results_dir)
    console.print(f"deleted {', '.join(removed)} (moved to .trash/ in the results dir)")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
