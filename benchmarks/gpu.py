"""GPU benchmark: the streaming reducers against a plain SDPA forward, and the bridge's run_with_cache, on CUDA.

Measured at 2k, 8k and 32k tokens (lengths beyond the model's context are recorded as skipped), on any model
given by name, Hugging Face id or path (default the bundled SmolLM2), in the dtype asked for:

- reducer_time_vs_sdpa_{L}: `stream_forward` with the engine benchmark's request (row argmax, column sums,
  distance-weighted sums, sink mass, head outputs at the last position) / an SDPA forward of the same HF
  model (base model, no lm_head); medians of 3 after one warm-up, with torch.cuda.synchronize.  target <= 1.5
- reducer_peak_mem_vs_sdpa_{L}: peak CUDA memory above the loaded weights
  (torch.cuda.max_memory_allocated after reset_peak_memory_stats), reducer / SDPA.              target <= 1.5
- for comparison (no target): the bridge's `run_with_cache` of every layer's `hook_pattern`, the hooks the
  reducers summarise, timed and measured the same way; an out-of-memory is recorded as such.

On a machine without CUDA it prints that it was skipped and exits 0 (nothing is written).

    python benchmarks/gpu.py [--model smollm2-135m] [--dtype bfloat16] [--device cuda] [--out benchmarks/out/gpu.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's workbench
import engine as eb  # noqa: E402  (benchmarks/engine.py: token_ids, request, sdpa_forward, report helpers)

from workbench.core.paths import SOURCE_ROOT  # noqa: E402  (the repository root)
from workbench.models import DEFAULT_MODEL  # noqa: E402

LENGTHS = (2048, 8192, 32768)
TARGETS = {f"reducer_{kind}_vs_sdpa_{n}": ("<=", 1.5) for n in LENGTHS for kind in ("time", "peak_mem")}
DEFAULT_OUT = SOURCE_ROOT / "benchmarks" / "out" / "gpu.json"


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(fn, device: str) -> dict:
    """Median seconds of REPEATS runs after a warm-up, and the peak memory of one run above the baseline."""
    import torch

    cuda = device.startswith("cuda")
    try:
        fn()
        _sync(device)
        seconds = []
        for _ in range(eb.REPEATS):
            start = time.perf_counter()
            fn()
            _sync(device)
            seconds.append(time.perf_counter() - start)
        peak = None
        if cuda:
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fn()
            _sync(device)
            peak = (torch.cuda.max_memory_allocated() - base) / eb.GB
    except torch.cuda.OutOfMemoryError as exc:
        torch.cuda.empty_cache()
        return {"error": f"out of memory: {str(exc).splitlines()[0][:200]}"}
    return {"seconds": seconds, "median_s": statistics.median(seconds), "peak_above_weights_gb": peak}


def run_with_cache(bridge, ids, hooks) -> None:
    import torch

    with torch.inference_mode():
        _, cache = bridge.run_with_cache(ids, names_filter=lambda name: name in hooks)
    del cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="name, Hugging Face id or local path")
    parser.add_argument("--dtype", default="bfloat16", help="float32 | bfloat16 | float16")
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | map (device_map='auto')")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)), help="comma-separated token counts")
    parser.add_argument("--allow-cpu", action="store_true", help=argparse.SUPPRESS)  # to test this script
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print(f"benchmarks/gpu.py: skipped: CUDA is not available (torch {torch.__version__}); nothing written.")
        return
    from workbench.engine import hooks
    from workbench.models.loading import load_model, model_info

    eb.log(f"loading {args.model} ({args.dtype}) on {args.device} …")
    bridge = load_model(args.model, device=args.device, dtype=args.dtype)
    info = model_info(bridge)
    device = str(info.stream_model.get_input_embeddings().weight.device)
    patterns = {hooks.pattern(layer) for layer in range(info.n_layers)}
    metrics, raw = {}, {}
    for n in (int(x) for x in args.lengths.split(",")):
        if n > info.n_ctx:
            raw[f"tokens_{n}"] = {"skipped": f"{n} tokens exceed the context of {args.model} ({info.n_ctx})"}
            eb.log(f"{n} tokens: skipped (context {info.n_ctx})")
            continue
        ids = torch.tensor([eb.token_ids(info.tokenizer, n)], device=device)
        runs = {"sdpa": measure(lambda ids=ids: eb.sdpa_forward(info, ids), device),
                "reducer": measure(lambda ids=ids: eb.reducer_forward(bridge, ids), device),
                "bridge_run_with_cache": measure(lambda ids=ids: run_with_cache(bridge, ids, patterns), device)}
        for name, r in runs.items():
            eb.log(f"{n} tokens, {name}: " + (r["error"] if "error" in r else
                                              f"{r['median_s']:.3f} s, peak {r['peak_above_weights_gb']} GB"))
        sdpa, reducer = runs["sdpa"], runs["reducer"]
        if "error" not in sdpa and "error" not in reducer:
            metrics[f"reducer_time_vs_sdpa_{n}"] = reducer["median_s"] / sdpa["median_s"]
            if sdpa["peak_above_weights_gb"]:
                metrics[f"reducer_peak_mem_vs_sdpa_{n}"] = (reducer["peak_above_weights_gb"]
                                                            / sdpa["peak_above_weights_gb"])
        cache = runs["bridge_run_with_cache"]
        if "error" not in cache and "error" not in sdpa:
            runs["bridge_time_vs_sdpa"] = cache["median_s"] / sdpa["median_s"]
            if sdpa["peak_above_weights_gb"]:
                runs["bridge_peak_mem_vs_sdpa"] = cache["peak_above_weights_gb"] / sdpa["peak_above_weights_gb"]
        raw[f"tokens_{n}"] = runs
    targets = {name: TARGETS.get(name, ("<=", 1.5)) for name in metrics}  # lengths given with --lengths too
    eb.MODEL = args.model
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (--allow-cpu)"
    eb.report(metrics, targets, raw, args.out, dtype=args.dtype, device=args.device, gpu=gpu)


if __name__ == "__main__":
    main()
