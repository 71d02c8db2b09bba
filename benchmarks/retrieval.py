"""Retrieval-head scoring benchmark on SmolLM2-135M: what scoring costs over plain greedy generation.

- scoring_time_vs_generation: NIAH trials (chat format, 1000 tokens, 3 needles at depth 50 %) decoded
  with per-step streaming statistics (row argmax of every head + streaming key-set mass, as
  `retrieval_heads` does) / plain greedy generation of the same trials with HF SDPA and a KV cache,
  for the same number of new tokens. Medians of interleaved repeats after a warm-up.    target <= 1.3
- scoring_peak_mem_vs_generation: peak RSS of a fresh child that loads the model and scores one trial at
  2000 tokens / the same for plain generation; the high-water mark is reset after loading (see
  benchmarks/engine.py).                                                                 target <= 1.5
  With --long the same is measured at the full 8192-token context (8168 prompt + 24 new tokens).
- scoring_time_vs_generation_{2048,8192}: one NIAH trial (chat format, needle at depth 50 %) of 2048 (or
  8168 + 24 new = the full 8192 context, with --long) tokens scored as `retrieval_heads` does (prefill with
  plain SDPA and no statistics, then statistics for each decoding query) / plain greedy generation of the
  same trial for the same number of new tokens. Medians of interleaved repeats (3; 2 at 8192) after a
  warm-up; the scoring run's prefill/decode split is kept under "raw".          target <= 1.3 (8192: <= 1.1)
- default_run_s: the default `workbench retrieval score` (30 trials at 500 and 2000 tokens) in a child with a
  fresh activation cache and results dir (nothing resumed, nothing saved in the catalog), wall time; the load
  average is sampled every 15 s ("raw": per-trial prefill/decode times from the trial files).   target <= 900

    python benchmarks/retrieval.py [--long] [--only-trials | --only-default-run] [--out benchmarks/out/retrieval.json]
    (an --only-* run keeps the other figures already in --out)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's workbench
from engine import GB, hwm_bytes, log, max_rss_bytes, report, reset_peak_rss, rss_bytes, run_child  # noqa: E402

from workbench.core.paths import SOURCE_ROOT  # noqa: E402  (the repository root)
from workbench.models import DEFAULT_MODEL  # noqa: E402

MODEL = DEFAULT_MODEL
REPEATS = 3
NEW_TOKENS = 24
DEFAULT_OUT = SOURCE_ROOT / "benchmarks" / "out" / "retrieval.json"
TARGETS = {"scoring_time_vs_generation": ("<=", 1.3), "scoring_peak_mem_vs_generation": ("<=", 1.5),
           "scoring_peak_mem_vs_generation_8192": ("<=", 1.5), "scoring_time_vs_generation_2048": ("<=", 1.3),
           "scoring_time_vs_generation_8192": ("<=", 1.1), "default_run_s": ("<=", 900)}


def trials(bridge, length: int) -> list[list[int]]:
    from workbench.analyses.retrieval_heads.prompts import niah_prompts
    from workbench.core.prompts import tokenize

    return tokenize(bridge, niah_prompts(bridge, lengths=(length,), depths=(50.0,), fmt="chat",
                                         max_new_tokens=NEW_TOKENS))


def score(bridge, ids) -> int:
    """One scoring run as retrieval_heads does it; returns the number of new tokens."""
    from workbench.analyses.retrieval_heads.score import _stream_keys
    from workbench.engine.decode import greedy_generate

    gen = greedy_generate(bridge, ids, max_new_tokens=NEW_TOKENS, stats=True, key_sets=_stream_keys(4, 128))
    return len(gen.tokens)


def plain(info, ids, n_new: int) -> None:
    """Greedy decoding with HF SDPA and a DynamicCache, `n_new` tokens (prefill the whole prompt)."""
    import torch
    from transformers import DynamicCache

    from workbench.engine.devices import cache_kwargs

    model = info.stream_model
    previous = model.config._attn_implementation
    model.config._attn_implementation = "sdpa"
    try:
        with torch.inference_mode():
            cache = DynamicCache(config=info.hf_config)
            out = model(input_ids=torch.tensor([ids]), **cache_kwargs(cache), use_cache=True, logits_to_keep=1)
            nxt = out.logits[0, -1].argmax()
            for _ in range(n_new - 1):
                out = model(input_ids=nxt.view(1, 1), **cache_kwargs(cache), use_cache=True, logits_to_keep=1)
                nxt = out.logits[0, -1].argmax()
    finally:
        model.config._attn_implementation = previous


def timing(bridge, info) -> tuple[float, dict]:
    prompts = trials(bridge, 1000)
    n_new = [score(bridge, ids) for ids in prompts]  # warm-up, and the token counts to match
    for ids, n in zip(prompts, n_new, strict=True):
        plain(info, ids, n)
    scored, gen = [], []
    for i in range(REPEATS):
        start = time.perf_counter()
        for ids in prompts:
            score(bridge, ids)
        scored.append(time.perf_counter() - start)
        start = time.perf_counter()
        for ids, n in zip(prompts, n_new, strict=True):
            plain(info, ids, n)
        gen.append(time.perf_counter() - start)
        log(f"  repeat {i + 1}: scoring {scored[-1]:.2f} s, plain generation {gen[-1]:.2f} s")
    raw = {"trials": len(prompts), "prompt_tokens": [len(p) for p in prompts], "new_tokens": n_new,
           "scoring_s": scored, "generation_s": gen, "pair_ratios": [s / g for s, g in zip(scored, gen, strict=True)],
           "min_ratio": min(scored) / min(gen)}
    return statistics.median(scored) / statistics.median(gen), raw


def single_trial(bridge, info, length: int, repeats: int = REPEATS) -> tuple[float, dict]:
    """One trial of `length` tokens: scoring / plain generation, medians of interleaved repeats."""
    from workbench.analyses.retrieval_heads.score import _stream_keys
    from workbench.engine.decode import greedy_generate

    ids = trials(bridge, length)[0]
    n_new = score(bridge, ids)  # warm-up, and the token count to match
    plain(info, ids, n_new)
    scored, gen, split = [], [], []
    for i in range(repeats):
        start = time.perf_counter()
        run = greedy_generate(bridge, ids, max_new_tokens=NEW_TOKENS, stats=True, key_sets=_stream_keys(4, 128))
        scored.append(time.perf_counter() - start)
        split.append({"prefill_s": run.prefill_s, "decode_s": run.decode_s})
        start = time.perf_counter()
        plain(info, ids, n_new)
        gen.append(time.perf_counter() - start)
        log(f"  {length} tokens, repeat {i + 1}: scoring {scored[-1]:.2f} s (prefill {run.prefill_s:.2f} s), "
            f"plain generation {gen[-1]:.2f} s")
    raw = {"prompt_tokens": len(ids), "new_tokens": n_new, "scoring_s": scored, "generation_s": gen,
           "scoring_split": split, "pair_ratios": [s / g for s, g in zip(scored, gen, strict=True)],
           "min_ratio": min(scored) / min(gen)}
    return statistics.median(scored) / statistics.median(gen), raw


def child(mode: str, length: int) -> None:
    import torch

    from workbench.models.loading import load_model, model_info

    bridge = load_model(MODEL)
    info = model_info(bridge)
    ids = trials(bridge, length)[0]
    with torch.no_grad():
        for param in [*bridge.parameters(), *info.stream_model.parameters()]:
            param.sum()
    after_load, max_after_load = rss_bytes(), max_rss_bytes()
    reset = reset_peak_rss()
    start = time.perf_counter()
    if mode == "score":
        score(bridge, ids)
    else:
        plain(info, ids, NEW_TOKENS)
    seconds = time.perf_counter() - start
    peak = hwm_bytes() if reset else max(max_after_load, max_rss_bytes())
    print(json.dumps({"mode": mode, "tokens": len(ids), "seconds": seconds, "peak_reset_after_load": reset,
                      "rss_after_load_gb": after_load / GB, "forward_peak_rss_gb": peak / GB}))


def peak_memory(length: int) -> tuple[float, dict]:
    runs = {}
    for mode in ("plain", "score"):
        log(f"peak memory: child process, {mode} at {length} tokens …")
        runs[mode] = run_child(mode, length, __file__)
        log(f"  peak {runs[mode]['forward_peak_rss_gb']:.2f} GB (after load {runs[mode]['rss_after_load_gb']:.2f} GB),"
            f" {runs[mode]['seconds']:.1f} s")
    return runs["score"]["forward_peak_rss_gb"] / runs["plain"]["forward_peak_rss_gb"], runs


def default_run() -> tuple[float, dict]:
    """Wall time of the default `workbench retrieval score` in a fresh child (fresh cache and results dirs)."""
    loads, done = [os.getloadavg()], threading.Event()

    def sample():
        while not done.wait(15):
            loads.append(os.getloadavg())

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "WORKBENCH_CACHE_DIR": f"{tmp}/cache", "WORKBENCH_RESULTS_DIR": f"{tmp}/results",
               "PYTHONPATH": str(SOURCE_ROOT)}
        command = [sys.executable, "-c", "from workbench.cli.main import app; app()", "retrieval", "score", "-m", MODEL]
        threading.Thread(target=sample, daemon=True).start()
        start = time.perf_counter()
        proc = subprocess.run(command, env=env, cwd=tmp, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        done.set()
        if proc.returncode != 0:
            raise SystemExit(f"the default run failed:\n{proc.stderr[-3000:]}")
        rows = [json.loads(p.read_text())["row"] for p in sorted(Path(tmp, "cache").rglob("trial-*.json"))]
    trial_s = {}
    for row in rows:
        trial_s.setdefault(str(row["context_length"]), []).append(row.get("prefill_s", 0) + row.get("decode_s", 0))
    raw = {"trials": len(rows), "load_avg_1m": [round(x[0], 2) for x in loads],
           "load_avg_1m_mean": statistics.mean(x[0] for x in loads), "cpu_count": os.cpu_count(),
           "median_trial_s_by_length": {k: statistics.median(v) for k, v in trial_s.items()},
           "prefill_s": [r.get("prefill_s") for r in rows], "decode_s": [r.get("decode_s") for r in rows],
           "stdout_tail": proc.stdout[-1500:]}
    log(f"  default run: {seconds:.0f} s for {len(rows)} trials, mean 1-min load {raw['load_avg_1m_mean']:.1f}")
    return seconds, raw


def _keep_earlier(out: Path, metrics: dict, raw: dict) -> None:
    """Figures of an earlier run in `out` that this partial run did not measure (measured now wins)."""
    if not out.is_file():
        return
    earlier = json.loads(out.read_text())
    for name, value in earlier.get("metrics", {}).items():
        if name not in metrics and name in TARGETS:
            metrics[name], raw[name] = value, earlier.get("raw", {}).get(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--long", action="store_true", help="also measure peak memory at 8192 tokens")
    parser.add_argument("--only-trials", action="store_true",
                        help="only the one-trial timings (scoring_time_vs_generation_2048, _8192 with --long)")
    parser.add_argument("--only-default-run", action="store_true", help="only default_run_s")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]))
    if args.only_default_run:
        log("the default `workbench retrieval score` in a child (fresh cache) …")
        metrics, raw = {}, {}
        metrics["default_run_s"], raw["default_run_s"] = default_run()
        _keep_earlier(args.out, metrics, raw)
        return report(metrics, TARGETS, raw, args.out)
    from workbench.models.loading import load_model, model_info

    log(f"loading {MODEL} …")
    bridge = load_model(MODEL)
    metrics, raw = {}, {}
    for length, name, repeats in [(2048, "scoring_time_vs_generation_2048", REPEATS)] + (
            [(8192 - NEW_TOKENS, "scoring_time_vs_generation_8192", 2)] if args.long else []):
        log(f"one trial at {length} tokens: scoring vs plain greedy generation, {repeats} repeats …")
        metrics[name], raw[name] = single_trial(bridge, model_info(bridge), length, repeats)
    if args.only_trials:
        _keep_earlier(args.out, metrics, raw)
        return report(metrics, TARGETS, raw, args.out)
    log("scoring vs plain greedy generation, 3 trials at 1000 tokens …")
    metrics["scoring_time_vs_generation"], raw["scoring_time_vs_generation"] = timing(bridge, model_info(bridge))
    del bridge
    metrics["scoring_peak_mem_vs_generation"], raw["scoring_peak_mem_vs_generation"] = peak_memory(2000)
    if args.long:
        name = "scoring_peak_mem_vs_generation_8192"
        metrics[name], raw[name] = peak_memory(8192 - NEW_TOKENS)
    log("the default `workbench retrieval score` in a child (fresh cache) …")
    metrics["default_run_s"], raw["default_run_s"] = default_run()
    report(metrics, TARGETS, raw, args.out)


if __name__ == "__main__":
    main()
