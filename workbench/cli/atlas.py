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
    metrics = profile["metrics"][["metric", "value", "lo", "hi", "rank", "share_in_topk", "causal_verdict"]]
    show(metrics, f"{profile['label']} of {model} (depth {profile['depth']:.2f}; rank 1 = strongest)", limit=200)
    show(profile["roles"][["role", "metric", "value", "threshold"]], "roles")
    if not profile["circuits"].empty:
        show(profile["circuits"][["circuit", "task"]], "circuits")


def _print(atlas, top_k: int) -> None:
    from workbench.atlas.roles import evidence, multi_role, roles_table

    multi = evidence(multi_role(atlas.roles, atlas.values))
    show(multi, f"multi-role heads ({len(multi)}): role value [95 % interval] #rank", limit=60)
    show(roles_table(atlas.params.get("thresholds"))[["role", "metric", "rule", "threshold"]],
         "role rules (change with --threshold ROLE=VALUE)")
    stab = atlas.metrics[["metric", "n_prompts", "topk_stability", "topk_jaccard", "description"]]
    show(stab.rename_axis("n").reset_index().assign(n=lambda d: d["n"] + 1),
         f"metrics n: top-{top_k} rank stability over {atlas.params.get('n_boot')} bootstrap resamples (share of "
         "resamples keeping today's top-k; NaN: no per-prompt values)", limit=200)
    if not atlas.agreement.empty:
        _print_matrix(atlas)
        _print_pairs(atlas)
    unstable = atlas.stability[atlas.stability["share_in_topk"] < 0.5]
    if not unstable.empty:
        show(unstable[["metric", "label", "rank", "share_in_topk"]], "unstable top heads (in < 50 % of resamples)")
    if not atlas.missing.empty:
        show(atlas.missing.fillna(""), "missing (run these, or build with --fill)")


def _print_matrix(atlas, limit: int = 24) -> None:
    """Spearman ρ × 100 between the metrics with intervals (numbered as in the metrics table), * where p < 0.05."""
    from rich.table import Table

    from workbench.atlas.agreement import matrix

    shown = atlas.metrics[atlas.metrics["topk_stability"].notna()].head(limit)
    names, numbers = list(shown["metric"]), [str(i + 1) for i in shown.index]
    rho = matrix(atlas.agreement).reindex(index=names, columns=names)
    p = matrix(atlas.agreement, "p_value").reindex(index=names, columns=names)
    table = Table(title="agreement: Spearman ρ × 100 over heads between metrics n (* permutation p < 0.05)",
                  box=None, padding=(0, 1))
    table.add_column("n", justify="right")
    for number in numbers:
        table.add_column(number, justify="right", no_wrap=True)
    for number, name in zip(numbers, names, strict=True):
        cells = [("" if r != r else f"{100 * r:+.0f}" + ("*" if q < 0.05 else "")) for r, q in
                 zip(rho.loc[name], p.loc[name], strict=True)]
        table.add_row(number, *cells)
    console.print(table)


def _print_pairs(atlas, limit: int = 15) -> None:
    """The strongest agreements and disagreements between metrics of different analyses."""
    pairs = atlas.agreement[atlas.agreement["metric_a"] < atlas.agreement["metric_b"]]
    analysis = pairs[["metric_a", "metric_b"]].apply(lambda col: col.str.split(".").str[0])
    pairs = pairs[analysis["metric_a"] != analysis["metric_b"]]
    pairs = pairs.reindex(pairs["spearman"].abs().sort_values(ascending=False).index).head(limit)
    show(pairs[["metric_a", "metric_b", "spearman", "p_value", "n_heads"]],
         f"strongest agreement between analyses (|ρ|, top {limit}; p: permutation)")


@app.command()
@friendly
def compare(model: List[str] = typer.Option(..., "--model", "-m", help="two models: -m A -m B"),
            bins: int = typer.Option(5, help="depth bins"), results_dir: Optional[Path] = RESULTS_DIR):
    """Roles over normalised depth (layer / (n_layers − 1)) in two models' saved atlases, and roles one lacks."""
    from workbench.atlas.compare import compare_atlases
    from workbench.atlas.store import load_atlas

    if len(model) != 2:
        raise WorkbenchError(f"compare takes two models (-m A -m B); got {len(model)}.")
    atlases = [load_atlas(m, results_dir) for m in model]
    tables = compare_atlases(*atlases, n_bins=bins)
    show(tables["summary"].fillna({c: 0 for c in tables["summary"].columns if c.startswith("n_heads")}),
         "heads per role and their mean depth (layer / (n_layers − 1))", limit=200)
    depth = tables["depth"]
    depth = depth.assign(cell=[f"{a:.0%} / {b:.0%}" for a, b in
                               zip(depth[f"share_{model[0]}"], depth[f"share_{model[1]}"], strict=True)])
    wide = depth.pivot(index="role", columns="bin", values="cell").fillna("")
    wide.columns = [f"{lo:.1f}–{hi:.1f}" for lo, hi in depth.drop_duplicates("bin").sort_values("bin")
                    [["depth_lo", "depth_hi"]].itertuples(index=False)]
    show(wide.reset_index(), f"share of each depth bin's heads holding the role: {model[0]} / {model[1]}", limit=200)
    for key, atlas in zip(("only_a", "only_b"), atlases, strict=True):
        lacking = sorted(set(atlas.missing["analysis"]))
        console.print(f"roles only {atlas.model} has: {', '.join(tables[key]['role']) or 'none'}"
                      + (f" ({atlas.model} has no run of {', '.join(lacking)})" if lacking else ""))


@app.command()
@friendly(out_dirs=("out",))
def export(model: str = MODEL, out: Path = typer.Option(..., "--out", help="directory for Parquet and CSV"),
           results_dir: Optional[Path] = RESULTS_DIR):
    """Write the newest saved atlas as atlas.parquet + atlas.csv (values) and the other tables."""
    from workbench.atlas.store import export_atlas, load_atlas

    written = export_atlas(load_atlas(model, results_dir), out)
    console.print(f"wrote {len(written)} files to {out}/ ({', '.join(p.name for p in written)})")
