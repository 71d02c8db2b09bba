"""Sink-analysis benchmark on SmolLM2-135M: the cost of one sink-analysis forward vs a plain SDPA forward.

- sink_analysis_time_vs_forward_2048: one `engine.residual.sink_forward` (streaming column sums on every
  layer + the residual reductions: norms, cosine to BOS, per-dimension max, top-k entries, median) plus
  the column importance α, on a 2048-token prompt / a plain SDPA forward of the same HF model (base model,
  no lm_head). Medians of interleaved repeats after a warm-up.                              target <= 2.0
- sink_analysis_peak_mem_vs_forward_2048: peak RSS of a fresh child running one sink-analysis forward /
  the same for one SDPA forward; the high-water mark is reset after loading (see benchmarks/engine.py,
  whose helpers this script reuses).                                                        target <= 1.5

    python benchmarks/sinks.py [--out benchmarks/out/sinks.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's workbench
import engine as eb  # noqa: E402  (benchmarks/engine.py: token_ids, sdpa_forward, rss helpers)

from workbench.core.paths import SOURCE_ROOT  # noqa: E402  (the repository root)
from workbench.models import DEFAULT_MODEL  # noqa: E402

MODEL = DEFAULT_MODEL
LENGTH = 2048
REPEATS = 3
DEFAULT_OUT = SOURCE_ROOT / "benchmarks" / "out" / "sinks.json"
TARGETS = {"sink_analysis_time_vs_forward_2048": ("<=", 2.0), "sink_analysis_peak_mem_vs_forward_2048": ("<=", 1.5)}


def sink_analysis(bridge, ids) -> None:
    from workbench.analyses.attention_sinks.score import column_importance
    from workbench.engine.reducers import ReducerRequest
    from workbench.engine.residual import sink_forward

    att, _ = sink_forward(bridge, ids, ReducerRequest(row_argmax=False, column_sums=True, distance=False))
    column_importance(att.col_sum[0].float())


def column_sums_only(bridge, ids) -> None:
    """Diagnostic: the streaming column sums alone (no residual hooks), to split the sink analysis's cost."""
    import torch

    from workbench.engine.reducers import ReducerRequest
    from workbench.engine.run import stream_forward

    stream_forward(bridge, torch.tensor([ids]), ReducerRequest(row_argmax=False, column_sums=True, distance=False))


def time_pair(bridge, info, ids) -> tuple[list[float], list[float]]:
    import torch

    def sdpa_fn():
        eb.sdpa_forward(info, torch.tensor([ids]))

    def sinks_fn():
        sink_analysis(bridge, ids)

    sdpa_fn(), sinks_fn()  # warm-up
    sdpa, sinks = [], []
    for i in range(REPEATS):
        sdpa.append(eb.timed(sdpa_fn))
        sinks.append(eb.timed(sinks_fn))
        eb.log(f"  {LENGTH} tokens, repeat {i + 1}: sdpa {sdpa[-1]:.2f} s, sink analysis {sinks[-1]:.2f} s")
    return sdpa, sinks


def child(mode: str, length: int) -> None:
    import torch

    from workbench.models.loading import load_model, model_info

    bridge = load_model(MODEL)
    info = model_info(bridge)
    ids = eb.token_ids(info.tokenizer, length)
    with torch.no_grad():
        for param in [*bridge.parameters(), *info.stream_model.parameters()]:
            param.sum()
    after_load, max_after_load = eb.rss_bytes(), eb.max_rss_bytes()
    reset = eb.reset_peak_rss()
    fns = {"sinks": lambda: sink_analysis(bridge, ids), "sdpa": lambda: eb.sdpa_forward(info, torch.tensor([ids])),
           "column_sums_only": lambda: column_sums_only(bridge, ids)}
    seconds = eb.timed(fns[mode])
    peak = eb.hwm_bytes() if reset else max(max_after_load, eb.max_rss_bytes())
    print(json.dumps({"mode": mode, "tokens": length, "seconds": seconds, "peak_reset_after_load": reset,
                      "rss_after_load_gb": after_load / eb.GB, "forward_peak_rss_gb": peak / eb.GB}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]))
    from workbench.models.loading import load_model, model_info

    eb.log(f"loading {MODEL} …")
    bridge = load_model(MODEL)
    info = model_info(bridge)
    sdpa, sinks = time_pair(bridge, info, eb.token_ids(info.tokenizer, LENGTH))
    metrics, raw = {}, {}
    metrics["sink_analysis_time_vs_forward_2048"] = statistics.median(sinks) / statistics.median(sdpa)
    raw["time"] = {"tokens": LENGTH, "sdpa_s": sdpa, "sink_analysis_s": sinks,
                   "pair_ratios": [a / b for a, b in zip(sinks, sdpa, strict=True)],
                   "min_ratio": min(sinks) / min(sdpa)}
    del bridge, info
    runs: dict = {}
    for mode in ("sdpa", "sinks", "column_sums_only"):
        eb.log(f"peak memory: child process, {mode} at {LENGTH} tokens …")
        runs[mode] = eb.run_child(mode, LENGTH, __file__)
        r = runs[mode]
        eb.log(f"  peak {r['forward_peak_rss_gb']:.2f} GB (after load {r['rss_after_load_gb']:.2f} GB)")
    metrics["sink_analysis_peak_mem_vs_forward_2048"] = (runs["sinks"]["forward_peak_rss_gb"]
                                                         / runs["sdpa"]["forward_peak_rss_gb"])
    raw["peak_memory"] = runs
    eb.report(metrics, TARGETS, raw, args.out)


if __name__ == "__main__":
    main()
