"""Engine benchmark on SmolLM2-135M: what the activation cache and the streaming reducers cost.

Measured (all timings are medians of 3 repeats, 7 for the 2048-token reducer pairs, run side by side in one
process after one warm-up, because the machine is noisy; peak memory is measured in fresh child processes
because a peak never goes down):

- cached_run_vs_forward_{128,512}: `ActivationStore.ensure` on a fresh store dir for one prompt
  (compute + write `hook_z` of every layer) / a plain bridge forward `bridge(ids)`.     target <= 1.15
- cache_hit_speedup (512 tokens): the fresh `ensure` above / a second `ensure` that hits the cache plus
  loading every hook's tensors with `acts[hook]`.                                         target >= 10
- reducer_time_vs_sdpa_{2048,8192}: `stream_forward` with row argmax, column sums, distance-weighted sums,
  key-set mass on positions 0..3 and head outputs at the last position / a plain SDPA forward of
  the same HF model (base model, no lm_head).                             target <= 1.15 (2048), 1.3 (8192)
- reducer_peak_mem_vs_sdpa_{2048,8192}: peak RSS (VmHWM) of a child that loads the model and runs
  one reducer forward / the same for one SDPA forward; medians of 3 children each.       target <= 1.2
  Loading can briefly peak above the forward, which would hide it, so after loading (weights paged in)
  the child resets the high-water mark (/proc/self/clear_refs); the metric is the peak from there on,
  whole-process peaks and RSS after load (so the forward's own increment) are kept under "raw".

Tokens are real text (Python's bundled pydoc topics), BOS first. Allocator: the default one; the
MALLOC_* environment seen is recorded in the JSON.

    python benchmarks/engine.py [--quick] [--out benchmarks/out/engine.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's workbench
from workbench.core.paths import SOURCE_ROOT  # noqa: E402  (the repository root)
from workbench.models import DEFAULT_MODEL  # noqa: E402

MODEL = DEFAULT_MODEL
REPEATS = 3
MEMORY_REPEATS = 3  # child pairs per length for the peak-memory ratios
REDUCER_REPEATS = {2048: 7, 8192: 3}  # a 2048-token pair takes ~8 s; more pairs steady its median on a noisy VM
DEFAULT_OUT = SOURCE_ROOT / "benchmarks" / "out" / "engine.json"
TARGETS = {
    "cached_run_vs_forward_128": ("<=", 1.15),
    "cached_run_vs_forward_512": ("<=", 1.15),
    "cache_hit_speedup": (">=", 10.0),
    "reducer_time_vs_sdpa_2048": ("<=", 1.15),
    "reducer_time_vs_sdpa_8192": ("<=", 1.3),
    "reducer_peak_mem_vs_sdpa_2048": ("<=", 1.2),
    "reducer_peak_mem_vs_sdpa_8192": ("<=", 1.2),
}
GB = 1e9


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def token_ids(tokenizer, n: int) -> list[int]:
    """`n` token ids of real English text: BOS, then the start of Python's pydoc topics."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    chars = 8 * n  # generous; the cut-off tail token is dropped below
    while True:
        ids = tokenizer(text[:chars], add_special_tokens=False)["input_ids"]
        if len(ids) > n or chars >= len(text):
            break
        chars *= 2
    if len(ids) < n - 1:
        raise SystemExit(f"the pydoc text has only {len(ids)} tokens; {n} were asked for")
    return [tokenizer.bos_token_id, *ids[: n - 1]]


def request():
    from workbench.engine.reducers import ReducerRequest

    return ReducerRequest(row_argmax=True, column_sums=True, distance=True, distance_window=None,
                          key_sets={"sink": [0, 1, 2, 3]}, entropy=False, output_positions=(-1,))


def reducer_forward(bridge, ids) -> None:
    from workbench.engine.run import stream_forward

    stream_forward(bridge, ids, request(), output_positions=[-1], logits="none")


def sdpa_forward(info, ids) -> None:
    import torch

    model = info.stream_model
    previous = model.config._attn_implementation
    model.config._attn_implementation = "sdpa"
    try:
        with torch.inference_mode():
            model.model(ids)
    finally:
        model.config._attn_implementation = previous


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field + ":"))


def rss_bytes() -> int:
    return _status_bytes("VmRSS")


def hwm_bytes() -> int:
    """The RSS high-water mark; unlike ru_maxrss it is reset by writing 5 to /proc/self/clear_refs."""
    return _status_bytes("VmHWM")


def max_rss_bytes() -> int:
    """This process's peak RSS: VmHWM where /proc has it. Not ru_maxrss there: Linux keeps it across execve, so a
    child started by a benchmark that holds a model reports the parent's peak (776 MB for a bare `python -c`)."""
    try:
        return hwm_bytes()
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark (VmHWM, not ru_maxrss) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# ---- child: one forward in a fresh process, for peak memory -------------------------------------
def child(mode: str, length: int) -> None:
    import torch

    from workbench.models.loading import load_model, model_info

    bridge = load_model(MODEL)
    info = model_info(bridge)
    ids = torch.tensor([token_ids(info.tokenizer, length)])
    with torch.no_grad():  # the weights are mmapped lazily: page them in so "after load" includes them
        for param in [*bridge.parameters(), *info.stream_model.parameters()]:
            param.sum()
    after_load, max_after_load = rss_bytes(), max_rss_bytes()
    reset = reset_peak_rss()
    seconds = timed(lambda: reducer_forward(bridge, ids) if mode == "reducer" else sdpa_forward(info, ids))
    forward_peak = hwm_bytes() if reset else max(max_after_load, max_rss_bytes())
    print(json.dumps({"mode": mode, "tokens": length, "seconds": seconds, "peak_reset_after_load": reset,
                      "rss_after_load_gb": after_load / GB, "max_rss_after_load_gb": max_after_load / GB,
                      "forward_peak_rss_gb": forward_peak / GB,
                      "process_peak_rss_gb": max(max_after_load, forward_peak) / GB}))


def run_child(mode: str, length: int, script: str | Path = __file__) -> dict:
    """Run `script --child MODE LENGTH` in a fresh process (clean peak memory) and parse its JSON line."""
    proc = subprocess.run([sys.executable, str(Path(script).resolve()), "--child", mode, str(length)],
                          check=False, capture_output=True, text=True, cwd=SOURCE_ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"child {mode} {length} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_memory(length: int) -> tuple[float, dict]:
    """Median forward peak of MEMORY_REPEATS child pairs (sdpa, reducer, sdpa, …): one child's peak varies by
    ±0.3 GB at 8192 tokens with the heap's layout (1.90–2.44 GB for the same reducer run)."""
    runs = {"sdpa": [], "reducer": []}
    for i in range(MEMORY_REPEATS):
        for mode in ("sdpa", "reducer"):
            log(f"peak memory: child process {i + 1}, {mode} forward at {length} tokens …")
            r = run_child(mode, length)
            r["forward_increment_gb"] = r["forward_peak_rss_gb"] - r["rss_after_load_gb"]
            runs[mode].append(r)
            log(f"  peak during forward {r['forward_peak_rss_gb']:.2f} GB (after load "
                f"{r['rss_after_load_gb']:.2f} GB, peak while loading {r['max_rss_after_load_gb']:.2f} GB), "
                f"{r['seconds']:.1f} s")

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    raw = {"runs": runs, "increment_ratio": median("reducer", "forward_increment_gb") / max(
        median("sdpa", "forward_increment_gb"), 1e-9),
        "process_peak_ratio": median("reducer", "process_peak_rss_gb") / median("sdpa", "process_peak_rss_gb"),
        "forward_peak_gb": {m: [r["forward_peak_rss_gb"] for r in runs[m]] for m in runs}}
    return median("reducer", "forward_peak_rss_gb") / median("sdpa", "forward_peak_rss_gb"), raw


# ---- in-process timings --------------------------------------------------------------------------
def cached_run_vs_forward(bridge, info, length: int) -> tuple[float, float, dict]:
    """Fresh-store `ensure` vs `bridge(ids)`, and (second ensure + loading every hook) on the same store."""
    import torch

    from workbench.core.prompts import PromptSet, tokenize
    from workbench.engine import hooks
    from workbench.engine.store import ActivationStore

    ids = token_ids(info.tokenizer, length)
    prompts = PromptSet.from_texts(f"bench-{length}", [info.tokenizer.decode(ids[1:])])
    store_ids = tokenize(bridge, prompts)[0]
    round_trip = store_ids == ids
    input_ids = torch.tensor([store_ids])  # the forward sees exactly the tokens the store caches
    wanted = [hooks.z(layer) for layer in range(info.n_layers)]

    def forward():
        with torch.inference_mode():
            bridge(input_ids)

    def fresh_then_hit():
        root = tempfile.mkdtemp(prefix="wb-engine-bench-")
        try:
            store = ActivationStore(root)
            start = time.perf_counter()
            acts = store.ensure(bridge, prompts, wanted, batch_size=8, progress=False)
            fresh = time.perf_counter() - start
            assert sorted(acts.report.computed) == sorted(wanted), acts.report
            start = time.perf_counter()
            acts = store.ensure(bridge, prompts, wanted, batch_size=8, progress=False)
            for hook in wanted:
                acts[hook]
            hit = time.perf_counter() - start
            assert not acts.report.computed and len(acts.report.reused) == len(wanted), acts.report
            size = sum(p.stat().st_size for p in Path(root).rglob("*.safetensors"))
            return fresh, hit, size
        finally:
            shutil.rmtree(root, ignore_errors=True)

    forward(), fresh_then_hit()  # warm-up
    fwd, fresh, hit = [], [], []
    for i in range(REPEATS):
        fwd.append(timed(forward))
        f, h, size = fresh_then_hit()
        fresh.append(f), hit.append(h)
        log(f"  {length} tokens, repeat {i + 1}: forward {fwd[-1]:.3f} s, fresh ensure {f:.3f} s, "
            f"hit+load {h:.4f} s")
    raw = {"tokens": len(store_ids), "tokenization_round_trips": round_trip, "hooks": len(wanted),
           "cache_bytes": size, "forward_s": fwd, "fresh_ensure_s": fresh, "hit_and_load_s": hit,
           "forward_median_s": statistics.median(fwd), "fresh_ensure_median_s": statistics.median(fresh),
           "hit_and_load_median_s": statistics.median(hit), "min_ratio": min(fresh) / min(fwd)}
    return (raw["fresh_ensure_median_s"] / raw["forward_median_s"],
            raw["fresh_ensure_median_s"] / raw["hit_and_load_median_s"], raw)


def reducer_vs_sdpa_time(bridge, info, length: int) -> tuple[float, dict]:
    import torch

    ids = torch.tensor([token_ids(info.tokenizer, length)])
    sdpa_forward(info, ids), reducer_forward(bridge, ids)  # warm-up
    sdpa, reducer = [], []
    for i in range(REDUCER_REPEATS.get(length, REPEATS)):
        sdpa.append(timed(lambda: sdpa_forward(info, ids)))
        reducer.append(timed(lambda: reducer_forward(bridge, ids)))
        log(f"  {length} tokens, repeat {i + 1}: sdpa {sdpa[-1]:.2f} s, reducer {reducer[-1]:.2f} s")
    raw = {"tokens": length, "sdpa_s": sdpa, "reducer_s": reducer, "sdpa_median_s": statistics.median(sdpa),
           "reducer_median_s": statistics.median(reducer),
           # noise diagnostics: the ratio of each interleaved pair, and of the fastest runs
           "pair_ratios": [r / s for r, s in zip(reducer, sdpa, strict=True)],
           "min_ratio": min(reducer) / min(sdpa)}
    return raw["reducer_median_s"] / raw["sdpa_median_s"], raw


# ---- main ----------------------------------------------------------------------------------------
def report(metrics: dict, targets: dict, raw: dict, out: Path, **extra) -> None:
    """Print metric / value / target / ok, and write the figures (top level and under "metrics") as JSON."""
    width = max(len(name) for name in metrics) + 2
    passed = {}
    print(f"\n{'metric':{width}} {'value':>9}  target   ok")
    for name, value in metrics.items():
        op, bound = targets[name]
        passed[name] = value <= bound if op == "<=" else value >= bound
        print(f"{name:{width}} {value:9.3f}  {op} {bound:<5} {'yes' if passed[name] else 'NO'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"model": MODEL, **extra, **metrics, "metrics": metrics,
              "targets": {k: f"{op} {b}" for k, (op, b) in targets.items() if k in metrics},
              "passed": passed, "raw": raw, "env": environment()}
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out}")


def write_figures(figures: dict, out: Path) -> None:
    """Write the figures as JSON and print them (without the raw numbers and the environment)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k not in ("raw", "env")}, indent=2))


def environment() -> dict:
    import torch

    from workbench.engine import kernels
    from workbench.engine.kernels import softmax_stats

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "libc": " ".join(platform.libc_ver()),
            "allocator": "default (glibc malloc)",
            "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
            "tmp_dir": tempfile.gettempdir(), "repeats": REPEATS,
            "reducer_repeats": REDUCER_REPEATS, "memory_repeats": MEMORY_REPEATS,
            "native_kernel": softmax_stats.available() or kernels.why_unavailable("softmax_stats")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the 8192-token runs (time and peak memory)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]))

    from workbench.models.loading import load_model, model_info

    log(f"loading {MODEL} …")
    bridge = load_model(MODEL)
    info = model_info(bridge)
    metrics, raw = {}, {}
    for length in (128, 512):
        log(f"cached run vs bridge forward at {length} tokens …")
        ratio, speedup, raw[f"cached_run_{length}"] = cached_run_vs_forward(bridge, info, length)
        metrics[f"cached_run_vs_forward_{length}"] = ratio
        if length == 512:
            metrics["cache_hit_speedup"] = speedup
    raw["cache_hit_speedup"] = raw["cached_run_vs_forward_512"] = raw.pop("cached_run_512")
    raw["cached_run_vs_forward_128"] = raw.pop("cached_run_128")
    lengths = (2048,) if args.quick else (2048, 8192)
    for length in lengths:
        log(f"reducer vs SDPA time at {length} tokens …")
        name = f"reducer_time_vs_sdpa_{length}"
        metrics[name], raw[name] = reducer_vs_sdpa_time(bridge, info, length)
    del bridge, info
    for length in lengths:
        name = f"reducer_peak_mem_vs_sdpa_{length}"
        metrics[name], raw[name] = peak_memory(length)

    report(metrics, TARGETS, raw, args.out, quick=args.quick)


if __name__ == "__main__":
    main()
