"""Edits benchmark on SmolLM2-135M: the streaming twin's key-range fast path for streaming-window heads.

- window_prefill_fast_vs_generic: the kv_budget check's prefill (`retrieval_heads.checks.budget_check`, its
  random condition of seed 0: full_share 0.25, so 67 of 90 KV heads, 201 of 270 query heads, stream with
  sink 4 + recent 128) of one NIAH trial (chat format, ~1000 tokens, needle at depth 50 %) with the
  `StreamingWindow` key-range hint (only the window's keys per block of query rows) / the same edit without
  the hint (the generic score-edit path: every key's logit). Medians of interleaved repeats after a warm-up;
  the largest logit difference between the two is kept under "raw" (float32).           target <= 0.6

    python benchmarks/edits.py [--length 1000] [--out benchmarks/out/edits.json]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's workbench
from engine import log, report, timed  # noqa: E402  (benchmarks/engine.py)

from workbench.core.paths import SOURCE_ROOT  # noqa: E402  (the repository root)
from workbench.edits.kinds import StreamingWindow  # noqa: E402
from workbench.models import DEFAULT_MODEL  # noqa: E402

MODEL = DEFAULT_MODEL
REPEATS = 3
DEFAULT_OUT = SOURCE_ROOT / "benchmarks" / "out" / "edits.json"
TARGETS = {"window_prefill_fast_vs_generic": ("<=", 0.6)}


class GenericWindow(StreamingWindow):
    """The same window without its key-range hint: the generic score-edit path."""

    visible_keys = None


def streaming_heads(info, full_share: float = 0.25, seed: int = 0) -> tuple:
    """Query heads of the KV heads budget_check streams in its random condition of `seed`."""
    from workbench.core.heads import HeadRef

    group = info.n_heads // info.n_kv_heads
    kv_all = [(layer, g) for layer in range(info.n_layers) for g in range(info.n_kv_heads)]
    keep = set(random.Random(seed).sample(kv_all, math.ceil(full_share * len(kv_all))))
    return tuple(HeadRef(layer, h) for layer in range(info.n_layers) for h in range(info.n_heads)
                 if (layer, h // group) not in keep)


def prefill(bridge, info, ids, edit):
    """greedy_generate's prefill (every prompt token but the last, into a KV cache) under `edit`: last logits."""
    import torch
    from transformers import DynamicCache

    from workbench.edits.apply import editing
    from workbench.engine.run import stream_forward

    with editing([edit], bridge):
        cache = DynamicCache(config=info.hf_config)
        return stream_forward(bridge, torch.tensor([ids[:-1]]), None, cache=cache, logits="last").logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    from workbench.analyses.retrieval_heads.prompts import niah_prompts
    from workbench.core.prompts import tokenize
    from workbench.models.loading import load_model, model_info

    bridge = load_model(MODEL)
    info = model_info(bridge)
    ids = tokenize(bridge, niah_prompts(bridge, lengths=(args.length,), depths=(50.0,), fmt="chat",
                                        max_new_tokens=24))[0]
    heads = streaming_heads(info)
    fast, generic = StreamingWindow(heads, 4, 128), GenericWindow(heads, 4, 128)
    log(f"{len(ids)} tokens, {len(heads)} of {info.n_layers * info.n_heads} query heads streaming")
    diff = float((prefill(bridge, info, ids, fast) - prefill(bridge, info, ids, generic)).abs().max())  # warm-up
    times: dict[str, list[float]] = {"fast": [], "generic": []}
    for i in range(REPEATS):
        for name, edit in (("fast", fast), ("generic", generic)):
            times[name].append(timed(lambda edit=edit: prefill(bridge, info, ids, edit)))
        log(f"repeat {i}: fast {times['fast'][-1]:.2f} s, generic {times['generic'][-1]:.2f} s")
    fast_s, generic_s = statistics.median(times["fast"]), statistics.median(times["generic"])
    metrics = {"window_prefill_fast_vs_generic": fast_s / generic_s}
    raw = {"n_tokens": len(ids), "n_streaming_heads": len(heads), "fast_s": times["fast"],
           "generic_s": times["generic"], "max_abs_logit_diff": diff}
    report(metrics, TARGETS, raw, args.out, length=len(ids))


if __name__ == "__main__":
    main()
