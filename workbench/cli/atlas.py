"""`workbench atlas build | show | compare | export`: the head atlas of a model from its saved runs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from workbench.cli.common import console, friendly, show
from workbench.core.errors import WorkbenchError
from workbench.models import DEFAULT_MODEL

app = typer.Typer(help="The head atlas: every head's roles across analyses, with intervals and agreement.",
                  no_args_is_help=True)
RESULTS_DIR = typer.Option(None, "--results-dir", help="read and save runs here (default: the catalog)")
MODEL = typer.Option(DEFAULT_MODEL, "--model", "-m", help="model name (see `workbench models`)")


def _thresholds(items: List[str] | None) -> dict[str, float]:
    out = {}
    for item in items or []:
        role, sep, value = item.partition("=")
        try:
            out[role.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise WorkbenchError(f"--threshold {item!r} must look like ROLE=NUMBER, e.g. retrieval=0.2.")
    return out


@app.command()
@friendly
def build(model: str = MODEL, fill: bool = typer.Option(False, "--fill", help="first run the missing analyses"),
          boot: int = typer.Option(200, "--boot", help="bootstrap resamples"),
          seed: int = typer.Option(0, help="seed of the resamples and permutations"),
          top_k: int = typer.Option(10, "--top-k", help="top-k for rank stability"),
          threshold: List[str] = typer.Option(None, "--threshold", help="ROLE=VALUE, repeatable (see `atlas show`)"),
          results_dir: Optional[Path] = RESULTS_DIR):
    """Build the atlas of a model from its saved runs and save it in the catalog."""
    from workbench.atlas.build import build_atlas

    atlas = build_atlas(model, fill=fill, n_boot=boot, seed=seed, top_k=top_k, thresholds=_thresholds(threshold),
                        results_dir=results_dir)
    console.print(f"atlas of {model} ({atlas.fingerprint}): {len(atlas.metrics)} metrics from "
                  f"{len(atlas.params['runs'])} runs in {atlas.params['build_s']:.2f} s; saved as "
                  f"{atlas.record.run_id}")
    _print(atlas, top_k)


@app.command("show")
@friendly
def show_atlas(model: str = MODEL, head: Optional[str] = typer.Option(None, "--head", help="one head, e.g. L17H4"),
               results_dir: Optional[Path] = RESULTS_DIR):
    """The newest saved atlas: multi-role heads, agreement matrix, top-k rank stability (or one head's profile)."""
    from workbench.atlas.store import load_atlas

    atlas = load_atlas(model, results_dir)
    if head is None:
        _print(atlas, int(atlas.params.get("top_k", 10)))
        return
    profile = atlas.head(head)
    metrics = profile["metrics"][["metric", "value", "lo", "hi", "rank", "topk_stability", "causal_verdict"]]
    show(metrics, f"{profile['label']} of {model} (depth {profile['depth']:.2f}; rank 1 = strongest)", limit=200)
    show(profile["roles"][["role", "metric", "value", "threshold"]], "roles")
    if not profile["circuits"].empty:
        show(profile["circuits"][["circuit", "task"]], "circuits")


def _print(atlas, top_k: int) -> None:
    from workbench.atlas.agreement import matrix
    from workbench.atlas.roles import multi_role, roles_table

    multi = multi_role(atlas.roles, atlas.values)
    show(multi[["label", "n_roles", "role", "metric", "value", "lo", "hi", "rank"]],
         f"multi-role heads ({multi['label'].nunique()}; rules: roles table below)", limit=80)
    show(roles_table()[["role", "metric", "rule", "threshold"]], "role rules (change with --threshold ROLE=VALUE)")
    if not atlas.agreement.empty:
        rho, p = matrix(atlas.agreement), matrix(atlas.agreement, "p_value")
        cells = rho.map(lambda v: f"{v:+.2f}" if v == v else "")
        cells = cells.where(~(p < 0.05), cells + "*")
        cells.columns = [str(i + 1) for i in range(len(cells.columns))]
        cells.index = [f"{i + 1} {name}" for i, name in enumerate(cells.index)]
        show(cells.reset_index(names="metric"), "Spearman ρ over heads (column n = metric n; * permutation p < 0.05)",
             limit=200)
    stab = atlas.metrics[["metric", "n_prompts", "topk_stability", "topk_jaccard", "description"]]
    show(stab, f"top-{top_k} rank stability over {atlas.params.get('n_boot')} bootstrap resamples "
         "(share of resamples keeping today's top-k; NaN: no per-prompt values)", limit=200)
    unstable = atlas.stability[atlas.stability["share_in_topk"] < 0.5]
    if not unstable.empty:
        show(unstable[["metric", "label", "rank", "share_in_topk"]], "unstable top heads (in < 50 % of resamples)")
    if not atlas.missing.empty:
        show(atlas.missing, "missing (run these, or build with --fill)")


@app.command()
@friendly
def compare(model: List[str] = typer.Option(..., "--model", "-m", help="two models: -m A -m B"),
            bins: int = typer.Option(5, help="depth bins"), results_dir: Optional[Path] = RESULTS_DIR):
    """Roles over normalised depth (layer / (n_layers − 1)) in two models' saved atlases, and roles one lacks."""
    from workbench.atlas.compare import compare_atlases
    from workbench.atlas.store import load_atlas

    if len(model) != 2:
        raise WorkbenchError(f"compare takes two models (-m A -m B); got {len(model)}.")
    tables = compare_atlases(*(load_atlas(m, results_dir) for m in model), n_bins=bins)
    show(tables["summary"], "heads per role and their mean depth", limit=200)
    show(tables["depth"], "roles over normalised depth", limit=200)
    for key, name in (("only_a", model[0]), ("only_b", model[1])):
        console.print(f"roles only {name} has: {', '.join(tables[key]['role']) or 'none'}")


@app.command()
@friendly(out_dirs=("out",))
def export(model: str = MODEL, out: Path = typer.Option(..., "--out", help="directory for Parquet and CSV"),
           results_dir: Optional[Path] = RESULTS_DIR):
    """Write the newest saved atlas as atlas.parquet + atlas.csv (values) and the other tables."""
    from workbench.atlas.store import export_atlas, load_atlas

    written = export_atlas(load_atlas(model, results_dir), out)
    console.print(f"wrote {len(written)} files to {out}/ ({', '.join(p.name for p in written)})")
