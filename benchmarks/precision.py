"""Precision benchmark: does bfloat16 rank the heads as float32 does, and what memory does it save?

On SmolLM2-135M (or --model), the same analyses run once in float32 and once in bfloat16, side by side:

- bf16_vs_fp32_spearman_profile: Spearman rank correlation over the 270 heads of attention_profile's score
  (mean attention distance; default params: 4 prompts × 256 tokens); the other head columns (BOS mass,
  max attention, previous-token share) are kept under "raw".                                target >= 0.98
- bf16_vs_fp32_spearman_retrieval: the same for retrieval_heads' scores with the analysis's default trials (lengths
  500 and 2000 tokens, 5 depths, 3 needles: 30 trials, 24 new tokens; greedy decoding, so a trial may come out
  differently in bfloat16: the accuracies of both runs are kept under "raw").             target >= 0.98
- bf16_peak_mem_vs_fp32: peak memory of loading the model and one reducer forward (2048 tokens), bfloat16 /
  float32, each in a fresh child process. On CUDA: torch.cuda.max_memory_allocated (weights + activations).
  On the CPU: peak RSS minus the RSS before the model was loaded (torch, transformers and the workbench
  imported first), so the libraries' RSS, the same in both dtypes, does not dilute it.        target <= 0.6
  The peak counts from after loading (the high-water mark is reset there); the whole-process peak, loading
  included, is kept under "raw" (whole_process_peak_bf16_vs_fp32).
  The CPU children run with glibc's mmap threshold fixed at its default 128 KiB (MALLOC_MMAP_THRESHOLD_), so
  every block of 128 KiB or more goes back to the OS when freed and the peak is the memory the run needs. With
  the dynamic threshold, freed blocks stay in the heap and the forward's peak of one child varied 0.05-0.38 GB
  between identical runs; that allocator's figure (median of 3 child pairs) is kept under "raw"
  (default_allocator).

Ties get average ranks (scipy.stats.spearmanr). The numbers are reported as found. Most heads score exactly 0 in
retrieval; "raw" also gives the agreement beyond the figure (retrieval_agreement, retrieval_same_responses).

    python benchmarks/precision.py [--model smollm2-135m] [--device cpu] [--out benchmarks/out/precision.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's workbench
import engine as eb  # noqa: E402  (benchmarks/engine.py: token_ids, reducer_forward, rss helpers, report)

from workbench.core.paths import SOURCE_ROOT  # noqa: E402  (the repository root)
from workbench.models import DEFAULT_MODEL  # noqa: E402

TARGETS = {"bf16_vs_fp32_spearman_profile": (">=", 0.98), "bf16_vs_fp32_spearman_retrieval": (">=", 0.98),
           "bf16_peak_mem_vs_fp32": ("<=", 0.6)}
RETRIEVAL: dict = {}  # the analysis's defaults (retrieval_heads.Params), as a researcher first runs it
FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": "131072"}  # glibc's default value, with its dynamic growth off
DEFAULT_ALLOCATOR_PAIRS = 3
MEMORY_TOKENS = 2048
DEFAULT_OUT = SOURCE_ROOT / "benchmarks" / "out" / "precision.json"


def scores_by_dtype(model: str, device: str) -> dict:
    """{dtype: {"profile", "retrieval" (HeadScores), "retrieval_per_trial" (per_prompt), "retrieval_summary",
    "seconds"}}."""
    import workbench.api as wb
    from workbench.models import loading

    out = {}
    for dtype in ("float32", "bfloat16"):
        eb.log(f"{model} in {dtype}: attention_profile and retrieval_heads …")
        bridge = wb.load_model(model, device=device, dtype=dtype)
        start = time.perf_counter()
        profile, _ = wb.run_analysis("attention_profile", bridge, save=False, progress=False)
        mid = time.perf_counter()
        result = wb.run("retrieval_heads", bridge, params=dict(RETRIEVAL), save=False, progress=False)
        retrieval = result.scores
        retrieval.attrs["trials"] = result.tables["trials"].to_dict("records")
        out[dtype] = {"profile": profile, "retrieval": retrieval, "retrieval_per_trial": result.per_prompt,
                      "retrieval_summary": result.summary,
                      "seconds": {"profile": mid - start, "retrieval": time.perf_counter() - mid}}
        loading.LOADED.clear()
        del bridge
    return out


def spearman(a, b, column: str) -> float:
    from scipy.stats import spearmanr

    joined = a.merge(b, on=["layer", "head"], suffixes=("_a", "_b"))
    return float(spearmanr(joined[f"{column}_a"], joined[f"{column}_b"]).statistic)


def retrieval_agreement(a, b) -> dict:
    """How the zero-inflated retrieval scores agree beyond the figure: Spearman over the heads nonzero in either,
    Kendall's tau-b, the shared top-k, the heads zero in one and not the other. Reported, not a target."""
    from scipy.stats import kendalltau, spearmanr

    j = a.merge(b, on=["layer", "head"], suffixes=("_a", "_b"))
    x, y = j["score_a"], j["score_b"]
    either = (x > 0) | (y > 0)
    top = {k: len(set(j.nlargest(k, "score_a")["label_a"]) & set(j.nlargest(k, "score_b")["label_a"]))
           for k in (4, 10, 20)}
    return {"spearman_nonzero_in_either": float(spearmanr(x[either], y[either]).statistic),
            "n_nonzero_in_either": int(either.sum()), "kendall_tau_b": float(kendalltau(x, y).statistic),
            "shared_top_k": top, "zero_in_fp32_only": int(((x == 0) & (y > 0)).sum()),
            "zero_in_bf16_only": int(((x > 0) & (y == 0)).sum()), "n_zero_in_both": int((~either).sum())}


def same_trial_spearman(fp32: dict, bf16: dict) -> dict:
    """Spearman of the retrieval score recomputed on the counted trials whose greedy responses are identical in both
    dtypes: what rounding does to the scoring itself, apart from trials that decoded differently. Reported."""
    from scipy.stats import spearmanr

    same = identical_trials(fp32["retrieval"].attrs["trials"], bf16["retrieval"].attrs["trials"])

    def mean_score(run: dict):
        table = run["retrieval_per_trial"]
        kept = table[(table["metric"] == "score") & table["prompt"].isin(same)]
        return kept.groupby(["layer", "head"])["value"].mean(), int(kept["prompt"].nunique())

    (a, n), (b, _) = mean_score(fp32), mean_score(bf16)
    joined = a.to_frame("a").join(b.to_frame("b"), how="inner")
    return {"spearman": float(spearmanr(joined["a"], joined["b"]).statistic), "n_trials": n,
            "max_abs_difference": float((joined["a"] - joined["b"]).abs().max())}


def identical_trials(a: list[dict], b: list[dict]) -> set[int]:
    """Ids of the trials whose greedy responses are identical in both dtypes."""
    return {int(x["trial"]) for x, y in zip(a, b, strict=True) if x.get("response") == y.get("response")}


def child(model: str, device: str, dtype: str) -> None:
    """Load `model` in `dtype`, run one reducer forward; print the peak memory as a JSON line."""
    import torch
    import transformers  # noqa: F401  (the libraries are imported before the baseline is taken)
    from transformer_lens.model_bridge import TransformerBridge  # noqa: F401

    import workbench.engine.run  # noqa: F401
    from workbench.models.loading import load_model, model_info

    cuda = device.startswith("cuda")
    before = torch.cuda.memory_allocated() if cuda else eb.rss_bytes()
    bridge = load_model(model, device=device, dtype=dtype)
    info = model_info(bridge)
    ids = torch.tensor([eb.token_ids(info.tokenizer, MEMORY_TOKENS)])
    with torch.no_grad():  # page the (mmapped) weights in, so "after load" holds them
        for param in info.stream_model.parameters():
            param.sum()
    after_load = torch.cuda.memory_allocated() if cuda else eb.rss_bytes()
    load_peak = torch.cuda.max_memory_allocated() if cuda else eb.max_rss_bytes()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    reset = cuda or eb.reset_peak_rss()
    eb.reducer_forward(bridge, ids)
    if cuda:
        torch.cuda.synchronize()
        forward_peak = torch.cuda.max_memory_allocated()
    else:
        forward_peak = eb.hwm_bytes() if reset else eb.max_rss_bytes()
    print(json.dumps({"dtype": dtype, "device": device, "tokens": MEMORY_TOKENS, "before_load_gb": before / eb.GB,
                      "after_load_gb": after_load / eb.GB, "load_peak_gb": load_peak / eb.GB,
                      "forward_peak_gb": forward_peak / eb.GB, "peak_reset_after_load": reset,
                      "model_and_forward_gb": (max(forward_peak, 0) - before) / eb.GB,
                      "whole_process_peak_gb": (max(load_peak, forward_peak) - before) / eb.GB,
                      "kind": "cuda allocated" if cuda else "RSS"}))


def run_child(model: str, device: str, dtype: str, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", dtype, "--model", model,
                           "--device", device], check=False, capture_output=True, text=True, cwd=SOURCE_ROOT,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"child {dtype} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def default_allocator_memory(model: str, device: str) -> dict:
    """The CPU figure under glibc's default (dynamic) mmap threshold: median over interleaved child pairs."""
    import statistics

    pairs = []
    for i in range(DEFAULT_ALLOCATOR_PAIRS):
        eb.log(f"peak memory, default allocator: child pair {i + 1}/{DEFAULT_ALLOCATOR_PAIRS} …")
        pairs.append({d: run_child(model, device, d)["model_and_forward_gb"] for d in ("float32", "bfloat16")})
    return {"bf16_peak_mem_vs_fp32": statistics.median(p["bfloat16"] / p["float32"] for p in pairs),
            "model_and_forward_gb": pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", metavar="DTYPE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from workbench.engine.devices import resolve_device

    device = resolve_device(args.device)
    if args.child:
        return child(args.model, device, args.child)

    runs = scores_by_dtype(args.model, device)
    fp32, bf16 = runs["float32"], runs["bfloat16"]
    metrics = {"bf16_vs_fp32_spearman_profile": spearman(fp32["profile"], bf16["profile"], "score"),
               "bf16_vs_fp32_spearman_retrieval": spearman(fp32["retrieval"], bf16["retrieval"], "score")}
    raw = {"profile_columns": {c: spearman(fp32["profile"], bf16["profile"], c)
                               for c in ("score", "bos_mass", "max_attention", "prev_token")
                               if c in fp32["profile"].columns},
           "retrieval": {d: {"summary": runs[d]["retrieval_summary"],
                             "nonzero_heads": int((runs[d]["retrieval"]["score"] > 0).sum())} for d in runs},
           "retrieval_agreement": retrieval_agreement(fp32["retrieval"], bf16["retrieval"]),
           "retrieval_same_responses": len(identical_trials(fp32["retrieval"].attrs["trials"],
                                                            bf16["retrieval"].attrs["trials"])),
           "retrieval_same_trials": same_trial_spearman(fp32, bf16),
           "retrieval_params": RETRIEVAL or "retrieval_heads defaults",
           "seconds": {d: runs[d]["seconds"] for d in runs}}
    memory = {}
    for dtype in ("float32", "bfloat16"):
        eb.log(f"peak memory: child process, {dtype}, reducer forward at {MEMORY_TOKENS} tokens …")
        memory[dtype] = run_child(args.model, device, dtype, FIXED_MMAP_THRESHOLD)
        eb.log(f"  model + forward {memory[dtype]['model_and_forward_gb']:.3f} GB")
    metrics["bf16_peak_mem_vs_fp32"] = (memory["bfloat16"]["model_and_forward_gb"]
                                        / memory["float32"]["model_and_forward_gb"])
    raw["memory"] = memory
    raw["whole_process_peak_bf16_vs_fp32"] = (memory["bfloat16"]["whole_process_peak_gb"]
                                              / memory["float32"]["whole_process_peak_gb"])
    if not device.startswith("cuda"):
        raw["default_allocator"] = default_allocator_memory(args.model, device)
    eb.MODEL = args.model
    eb.report(metrics, TARGETS, json.loads(json.dumps(raw, default=str)), args.out, device=device)


if __name__ == "__main__":
    main()
