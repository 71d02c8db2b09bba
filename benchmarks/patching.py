"""Patching benchmark on SmolLM2-135M, IOI, 50 prompts (same prompts for every method, one process):

- activation_patching_all_heads_s: exact activation patching of all 270 heads (ABC twins).
- attribution_patching_s: attribution patching of all heads (one backward pass per length group).
- attribution_vs_activation_spearman: rank correlation of the two score maps over all heads.
- activation_patching_vs_bridge_single_head: seconds per head-patch through the bridge's hook_z (the
  plain way) / seconds per head-patch in the batched, shared-prefix engine — the engine's speed-up.

    python benchmarks/patching.py [--n-prompts 50] [--out benchmarks/out/patching.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's workbench
from engine import environment, log, write_figures  # noqa: E402

from workbench.core.paths import SOURCE_ROOT  # noqa: E402  (the repository root)
from workbench.models import DEFAULT_MODEL  # noqa: E402


def main() -> None:

    import numpy as np
    from scipy.stats import spearmanr

    from workbench import api
    from workbench.analyses.circuits import patching
    from workbench.analyses.circuits.tasks import make_task
    from workbench.core.scores import head_label
    from workbench.edits.apply import run_metric
    from workbench.edits.kinds import PatchHead
    from workbench.engine.metrics import get_metric

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-prompts", type=int, default=50)
    parser.add_argument("--out", type=Path, default=SOURCE_ROOT / "benchmarks" / "out" / "patching.json")
    args = parser.parse_args()
    bridge = api.load_model(DEFAULT_MODEL)
    contrast = make_task(bridge, "ioi", args.n_prompts)
    t = time.perf_counter()
    base = patching.baseline(bridge, contrast)
    baseline_s = time.perf_counter() - t
    log(f"baseline: logit diff clean {base.m_clean:.3f}, corrupt {base.m_corrupt:.3f} ({baseline_s:.1f} s)")
    t = time.perf_counter()
    act = patching.activation_patching(bridge, contrast, base)
    act_s = time.perf_counter() - t
    log(f"activation patching, 270 heads: {act_s:.1f} s")
    t = time.perf_counter()
    attr = patching.attribution_patching(bridge, contrast, base)
    attr_s = time.perf_counter() - t
    log(f"attribution patching: {attr_s:.2f} s")
    rho = float(spearmanr(act.ravel(), attr.ravel()).statistic)
    metric = get_metric("logit_diff")
    heads = [(23, 3), (17, 4), (5, 6)]
    t = time.perf_counter()
    for head in heads:  # the plain way: one bridge run per head, hook_z patch
        run_metric(bridge, contrast.clean, metric, [PatchHead((head,), contrast.corrupt)], batch_size=50)
    bridge_per_head = (time.perf_counter() - t) / len(heads)
    engine_per_head = act_s / act.size
    top = np.argsort(-act.ravel())[:10]
    figures = {"model": DEFAULT_MODEL, "task": "ioi", "n_prompts": len(contrast),
               "activation_patching_all_heads_s": round(act_s, 2), "attribution_patching_s": round(attr_s, 3),
               "attribution_vs_activation_spearman": round(rho, 4),
               "activation_patching_vs_bridge_single_head": round(bridge_per_head / engine_per_head, 3),
               "attribution_speedup_vs_activation": round(act_s / attr_s, 1),
               "raw": {"baseline_s": baseline_s, "bridge_s_per_head": bridge_per_head,
                       "engine_s_per_head": engine_per_head, "clean_logit_diff": base.m_clean,
                       "corrupt_logit_diff": base.m_corrupt,
                       "top_heads": [{"head": head_label(*divmod(int(i), act.shape[1])),
                                      "activation": float(act.ravel()[i]), "attribution": float(attr.ravel()[i])}
                                     for i in top]},
               "env": environment()}
    write_figures(figures, args.out)


if __name__ == "__main__":
    main()
