"""Batch benchmark: wall time of one plan on the local executor vs on a local Ray instance with 2 workers.

Each executor gets fresh results and activation-cache directories, so both do all the work (model
loading included: Ray loads the model once per worker). On this 2-core machine Ray's two workers share
the cores with each other, so a speed-up is not expected; the point is the overhead of going distributed.

    python benchmarks/batch.py [--plan data/plans/smollm2_overview.toml]
Writes benchmarks/out/batch.json: local_wall_s, ray_2_workers_wall_s, ray_vs_local.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's workbench
from workbench.core.paths import SOURCE_ROOT  # noqa: E402  (the repository root)


def timed_batch(plan: Path, executor: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "WORKBENCH_RESULTS_DIR": f"{tmp}/results", "WORKBENCH_CACHE_DIR": f"{tmp}/cache"}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "workbench.cli", "batch", str(plan), "--executor", executor,
                        "--workers", "2"], env=env, cwd=SOURCE_ROOT, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", type=Path, default=SOURCE_ROOT / "data" / "plans" / "smollm2_overview.toml")
    parser.add_argument("--out", type=Path, default=SOURCE_ROOT / "benchmarks" / "out" / "batch.json")
    args = parser.parse_args()
    local = timed_batch(args.plan, "local")
    print(f"local executor: {local:.1f} s", flush=True)
    ray = timed_batch(args.plan, "ray")
    print(f"ray, 2 workers: {ray:.1f} s", flush=True)
    figures = {"plan": str(args.plan.relative_to(SOURCE_ROOT)), "local_wall_s": round(local, 2),
               "ray_2_workers_wall_s": round(ray, 2), "ray_vs_local": round(ray / local, 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
