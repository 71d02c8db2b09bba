"""SAE circuit discovery benchmark on SmolLM2-135M IOI, against the committed patching circuit
(circuits/smollm2-135m_ioi.toml: top 5 % of heads by activation patching on 50 prompts).

For each of 5 seeds (each draws its own 10 positive + 10 corrupted prompts, none of them the circuit's):
- roc_auc_mean, roc_auc_sd: ROC-AUC of the SAE node scores (paper settings: 300 latents, L1 0.02,
  Adam 1e-3, 500 epochs, mean over positions).
- baseline_roc_auc: the same for the trivial baseline, heads ranked by |mean‖o+‖ − mean‖o−‖|.
- kmeans_roc_auc_mean: the k-means codebook in place of the SAE.
- runtime_vs_activation_patching: SAE discovery (collect + fit) seconds / activation patching of all 270
  heads on the same 10 prompts (< 1: the SAE is faster).

    python benchmarks/sae_circuits.py [--n-examples 10] [--seeds 5] [--out benchmarks/out/sae_circuits.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's workbench
from engine import environment, log, write_figures  # noqa: E402

from workbench.core.paths import SOURCE_ROOT  # noqa: E402  (the repository root)
from workbench.models import DEFAULT_MODEL  # noqa: E402


def main() -> None:
    from workbench import api
    from workbench.analyses.circuits.sae.report import patching_seconds, summarize, sweep

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-examples", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=SOURCE_ROOT / "benchmarks" / "out" / "sae_circuits.json")
    args = parser.parse_args()
    bridge = api.load_model(DEFAULT_MODEL)
    table = sweep(bridge, "ioi", f"{DEFAULT_MODEL}_ioi", sizes=(args.n_examples,), seeds=args.seeds)
    summary = summarize(table).set_index("method")
    log(summary.to_string())
    patch_s = patching_seconds(bridge, "ioi", args.n_examples)
    sae_s = float(table[table["method"] == "sae codes"]["seconds"].mean())
    figures = {"model": DEFAULT_MODEL, "task": "ioi", "reference": f"circuits/{DEFAULT_MODEL}_ioi.toml",
               "n_examples": args.n_examples, "seeds": args.seeds,
               "roc_auc_mean": round(float(summary.loc["sae codes", "roc_auc_mean"]), 4),
               "roc_auc_sd": round(float(summary.loc["sae codes", "roc_auc_sd"]), 4),
               "best_f1_mean": round(float(summary.loc["sae codes", "best_f1_mean"]), 4),
               "baseline_roc_auc": round(float(summary.loc["norm-difference baseline", "roc_auc_mean"]), 4),
               "baseline_roc_auc_sd": round(float(summary.loc["norm-difference baseline", "roc_auc_sd"]), 4),
               "kmeans_roc_auc_mean": round(float(summary.loc["kmeans codes", "roc_auc_mean"]), 4),
               "kmeans_roc_auc_sd": round(float(summary.loc["kmeans codes", "roc_auc_sd"]), 4),
               "runtime_vs_activation_patching": round(sae_s / patch_s, 3),
               "raw": {"sae_seconds_mean": sae_s, "activation_patching_seconds": patch_s,
                       "runs": table.to_dict("records")},
               "env": environment()}
    write_figures(figures, args.out)


if __name__ == "__main__":
    main()
