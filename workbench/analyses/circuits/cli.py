"""`workbench circuits find|ls|overlap|sae`: circuits from patching, as files in circuits/ (`circuits
faithfulness|repair`: the generic checks of head_attribution, added in workbench/cli/main.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from workbench import api
from workbench.analyses import get_analysis
from workbench.cli.common import DEVICE, DTYPE, MODEL, console, friendly, save_figure, show
from workbench.cli.registry import run_and_show
from workbench.core.errors import WorkbenchError
from workbench.core.validation import parse_int_list
from workbench.results import circuits as files

circuits_app = typer.Typer(help="Circuits: find them by patching, save them, compare them, test and repair them.",
                           no_args_is_help=True)


@circuits_app.command("find")
@friendly
def find(task: str = typer.Option("ioi", help="ioi | colored_objects | greater_than | docstring"),
         model: str = MODEL,
         device: str = DEVICE, dtype: str = DTYPE,
         n_prompts: int = typer.Option(50), seed: int = typer.Option(0),
         method: str = typer.Option("both", help="activation | attribution | both | path"),
         receivers: str = typer.Option("", help="path patching: receiver heads ('' = direct path to logits)"),
         receiver_positions: str = typer.Option("all", help="path patching: patch receivers at all | last"),
         top_fraction: float = typer.Option(0.05, help="circuit = this share of heads with the largest |score|"),
         selection: str = typer.Option("abs", help="abs: rank heads by |score| | signed: by the signed score"),
         name: Optional[str] = typer.Option(None, help="circuit file name (default <model>_<task>, '/' → '--')"),
         directory: Optional[Path] = typer.Option(None, help="where circuits live (default: the repo's circuits/)"),
         top: int = typer.Option(15, help="rows of the top-head table")):
    """Score every head on a task by patching, select a circuit and save it (TOML + its score map)."""
    from workbench.results.circuit_maps import save_with_scores

    circuit_name = files.check_circuit_name(name) if name else files.default_circuit_name(model, task)
    params = {"task": task, "n_prompts": n_prompts, "seed": seed, "method": method, "receivers": receivers,
              "receiver_positions": receiver_positions}
    result = run_and_show(get_analysis("head_attribution"), params, model=model, device=device, dtype=dtype,
                          results_dir=None, save=True, out=None, top=top)
    scores, s, record = result.scores, result.summary, result.record
    if s["unchanged_answer_twins"]:
        console.print(f"[yellow]flagged:[/] corrupted twins {s['unchanged_answer_twins']} keep the clean answer")
    heads = files.select_heads(scores, top_fraction=top_fraction, selection=selection)
    path_method = f"path_patching (receivers {receivers or 'logits'}, {receiver_positions} positions)"
    how = {"both": "activation_patching", "path": path_method}.get(method, f"{method}_patching")
    circuit = files.Circuit(name=circuit_name, model=model, task=task, heads=heads,
                            n_layers=int(scores["layer"].max()) + 1, n_heads=int(scores["head"].max()) + 1, method=how,
                            selection=files.selection_label(selection, top_fraction),
                            run_id=record.run_id if record else None,
                            metric={"metric": s["metric"], "n_prompts": s["n_prompts"], "clean": s["clean_metric"],
                                    "corrupt": s["corrupt_metric"], "clean_accuracy": s["clean_accuracy"]})
    path = save_with_scores(circuit, scores, directory)
    console.print(f"circuit [bold]{circuit.name}[/]: {len(heads)} heads {', '.join(circuit.labels)} → {path}")


@circuits_app.command("ls")
@friendly
def ls(directory: Optional[Path] = typer.Option(None)):
    """List the saved circuits."""
    table = files.list_circuits(directory)
    show(table.drop(columns=[c for c in ("path", "error") if c in table and (c == "path" or table[c].isna().all())]),
         f"circuits in {directory or 'the repo circuits/ folder'}", 200)


@circuits_app.command("overlap")
@friendly
def overlap(a: str = typer.Argument(..., help="circuit name or file"), b: str = typer.Argument(...),
            directory: Optional[Path] = typer.Option(None), out: Optional[Path] = typer.Option(None, help="HTML map")):
    """Shared heads, Jaccard, overlap coefficient, rank correlation of the score maps, chance level."""
    from workbench.analyses.circuits.report import compare_circuits

    result = compare_circuits(a, b, directory)
    ca, cb = result.a, result.b
    console.rule(f"{ca.name} ({len(ca.heads)} heads) vs {cb.name} ({len(cb.heads)} heads)")
    show(result.rows(), "overlap", 50)
    if out is not None:
        fig = result.overlap_figure()
        if fig is None:
            raise WorkbenchError(f"{ca.name} is {ca.n_layers}×{ca.n_heads} and {cb.name} {cb.n_layers}×{cb.n_heads} "
                                 "(two models): there is no shared head map to draw; drop --out.")
        save_figure(fig, out)
        console.print(f"map written to {out}")


@circuits_app.command("sae")
@friendly
def sae(task: str = typer.Option("ioi"), model: str = MODEL,
        device: str = DEVICE, dtype: str = DTYPE,
        reference: Optional[str] = typer.Option(None, help="reference circuit (default: the saved one for model "
                                                "and task, e.g. smollm2-135m_ioi, gpt2-small_ioi)"),
        sizes: str = typer.Option("5,10,20,50", help="numbers of examples"), seeds: int = typer.Option(5),
        discretiser: str = typer.Option("both", help="sae | kmeans | both"), epochs: int = typer.Option(500),
        n_latents: int = typer.Option(300), out: Optional[Path] = typer.Option(None, help="HTML plot of ROC-AUC")):
    """SAE circuit discovery vs a patching circuit: ROC-AUC / F1 by number of examples and seed, runtime."""
    from workbench.analyses.circuits.sae.analysis import default_reference
    from workbench.analyses.circuits.sae.report import patching_seconds, summarize, sweep

    n_list = parse_int_list(sizes, "--sizes", lo=1)
    kinds = {"sae": ("sae",), "kmeans": ("kmeans",), "both": ("sae", "kmeans")}
    if discretiser not in kinds:
        raise WorkbenchError(f"--discretiser must be sae, kmeans or both; got {discretiser!r}.")
    ref = reference or default_reference(model, task)
    if ref is None:
        raise WorkbenchError(f"No saved circuit for {model} on {task} to measure against; find one with "
                             f"`workbench circuits find --task {task} -m {model}` or pass --reference.")
    files.load_circuit(ref)  # fails now, listing the circuits, rather than after loading the model
    bridge = api.load_model(model, device=device, dtype=dtype)
    table = sweep(bridge, task, ref, sizes=n_list, seeds=seeds, discretisers=kinds[discretiser], epochs=epochs,
                  n_latents=n_latents)
    summary = summarize(table)
    show(summary, f"{task}: node scores vs {ref} (mean ± sd over {seeds} seeds; each seed draws its own prompts)", 60)
    n0 = n_list[0]
    secs = patching_seconds(bridge, task, n0)
    method = f"{kinds[discretiser][0]} codes"
    sae_secs = float(table[(table["n_examples"] == n0) & (table["method"] == method)]["seconds"].mean())
    console.print(f"runtime on {n0} examples: discovery with {method} {sae_secs:.1f} s vs activation patching of "
                  f"every head {secs:.1f} s (ratio {sae_secs / secs:.2f})")
    if out is not None:
        from workbench.analyses.circuits.views import roc_by_examples

        save_figure(roc_by_examples(summary, title=f"{task}: ROC-AUC against {ref}"), out)
        console.print(f"plot written to {out}")
