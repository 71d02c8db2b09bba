"""Head-atlas benchmark: build time from saved runs, intervals from stored values vs re-running, profile render.

- atlas_build_s: `build_atlas(model, save=False)` from the catalog's saved runs (no model forward: the build runs in
  a fresh child that must not import torch), per model with runs, and their sum.                target <= 10 (sum)
- bootstrap_vs_rerun_speedup: intervals for every attention_profile metric from the stored per-prompt values
  (B = 200 resamples, `workbench.atlas.bootstrap`), vs re-running attention_profile on B resampled prompt sets
  (its default prompts drawn with replacement; each run in a fresh activation cache, model loaded once and not
  timed); the rerun cost is the mean of `--reruns` measured runs × B, both measured side by side here.  target >= 50
- head_profile_render_s: benchmarks/_atlas_browser.py:measure_profile_render (the app's head profile page in
  Chromium), or null with the reason when it is not available.                                  target <= 1.5

    python benchmarks/atlas.py [--models smollm2-135m gemma3-270m] [--reruns 2] [--out benchmarks/out/atlas.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's workbench

from workbench.core.paths import SOURCE_ROOT  # noqa: E402  (the repository root)

DEFAULT_OUT = SOURCE_ROOT / "benchmarks" / "out" / "atlas.json"
N_BOOT = 200
TARGETS = {"atlas_build_s": ("<=", 10.0), "bootstrap_vs_rerun_speedup": (">=", 50.0),
           "head_profile_render_s": ("<=", 1.5)}
_BUILD = """
import json, sys, time
from workbench.atlas.build import build_atlas
started = time.perf_counter()
atlas = build_atlas({model!r}, save=False)
print(json.dumps({{"seconds": time.perf_counter() - started, "metrics": len(atlas.metrics),
                  "runs": len(atlas.params["runs"]), "torch_imported": "torch" in sys.modules}}))
"""


def build_seconds(model: str) -> dict:
    """One atlas build in a fresh child (its imports counted apart: only the build is timed)."""
    out = subprocess.run([sys.executable, "-c", _BUILD.format(model=model)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SOURCE_ROOT)}, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def models_with_runs(models: list[str]) -> list[str]:
    from workbench.results.runs import find_runs

    catalog = find_runs()
    return [m for m in models if not catalog[(catalog["model"] == m) & (catalog["kind"] == "run")].empty]


def bootstrap_vs_rerun(model_name: str, reruns: int) -> dict:
    """(seconds for intervals from stored values, seconds per attention_profile re-run, speedup)."""
    import numpy as np

    from workbench import api
    from workbench.analyses import get_analysis
    from workbench.analyses.base import resolve
    from workbench.atlas import bootstrap as bs
    from workbench.models.loading import model_info

    spec = get_analysis("attention_profile")
    params = spec.make_params({})
    model = api.load_model(model_name)
    info = model_info(model)
    prompts = resolve(spec.default_prompts)(model, params)
    base = api.run("attention_profile", model, prompts, params, save=False, progress=False)
    rng = np.random.default_rng(0)
    rerun_s = []
    for i in range(reruns):
        draw = rng.integers(0, len(prompts), size=len(prompts))
        def pick(seq, draw=draw):
            return tuple(seq[j] for j in draw) if seq else seq

        resampled = dataclasses.replace(prompts, name=f"{prompts.name}-boot{i}", texts=pick(prompts.texts),
                                        metadata=pick(prompts.metadata), token_ids=pick(prompts.token_ids))
        with tempfile.TemporaryDirectory() as cache:
            os.environ["WORKBENCH_CACHE_DIR"] = cache  # a fresh activation cache: nothing reused
            started = time.perf_counter()
            api.run("attention_profile", model, resampled, params, save=False, progress=False)
            rerun_s.append(time.perf_counter() - started)
    started = time.perf_counter()
    mats = bs.prompt_matrices(base.per_prompt, info.n_layers, info.n_heads)[1]
    scores = base.scores.sort_values(["layer", "head"])
    for column in ("score", "distance", "bos_mass", "max_attention", "prev_token", "non_sink_queries"):
        value = scores[column].to_numpy(float)
        stat = bs.find_statistic(column, value, mats)
        bs.bootstrap(stat, mats, value, signed=False, n_boot=N_BOOT, seed=0)
    stored_s = time.perf_counter() - started
    per_rerun = float(np.mean(rerun_s))
    return {"bootstrap_from_stored_s": stored_s, "rerun_one_s": per_rerun, "reruns_measured": reruns,
            "rerun_all_s_estimated": per_rerun * N_BOOT, "speedup": per_rerun * N_BOOT / stored_s}


def profile_render(model: str) -> tuple[float | None, str | None]:
    try:
        sys.path.insert(0, str(SOURCE_ROOT / "benchmarks"))
        from _atlas_browser import measure_profile_render
    except ImportError as exc:
        return None, f"benchmarks/_atlas_browser.py is not importable ({exc})"
    wanted = inspect.signature(measure_profile_render).parameters
    kwargs = {k: v for k, v in {"model": model}.items() if k in wanted}
    try:
        return float(measure_profile_render(**kwargs)), None
    except Exception as exc:  # noqa: BLE001  (a browser that cannot start: record why, keep the other numbers)
        return None, f"{type(exc).__name__}: {exc}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument("--reruns", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    present = models_with_runs(args.models)
    builds = {m: build_seconds(m) for m in present}
    ok = [b["seconds"] for b in builds.values() if "seconds" in b]
    speed = bootstrap_vs_rerun(present[0] if present else args.models[0], args.reruns)
    render_s, why = profile_render(present[0] if present else args.models[0])
    figures = {"atlas_build_s": sum(ok) if ok else None, "atlas_build_per_model": builds,
               "models_without_runs": sorted(set(args.models) - set(present)),
               "bootstrap_vs_rerun_speedup": speed["speedup"], "bootstrap_vs_rerun": speed,
               "head_profile_render_s": render_s, "head_profile_render_note": why, "n_boot": N_BOOT,
               "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
