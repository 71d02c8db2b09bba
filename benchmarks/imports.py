"""Import-time benchmark: `import workbench.api` (torch-free) vs `import torch`, each timed in fresh subprocesses.

    python benchmarks/imports.py [--repeats 5]
Writes benchmarks/out/imports.json: api_import_s and torch_import_s (medians), their ratio, and which heavy
modules `import workbench.api` loaded (none expected).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the subprocesses import this checkout's workbench
HEAVY = ("torch", "transformers", "transformer_lens", "pandas", "plotly", "duckdb")
TIMER = """
import sys, time
t = time.perf_counter()
import {module}
print(time.perf_counter() - t)
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def timed_import(module: str) -> tuple[float, list[str]]:
    """Seconds to import `module` in a fresh interpreter, and the heavy modules it loaded."""
    out = subprocess.run([sys.executable, "-c", TIMER.format(module=module, heavy=HEAVY)], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout.splitlines()
    return float(out[0]), [m for m in out[1].split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "imports.json")
    args = parser.parse_args()
    api = [timed_import("workbench.api") for _ in range(args.repeats)]
    torch = [timed_import("torch")[0] for _ in range(args.repeats)]
    api_s, torch_s = statistics.median(t for t, _ in api), statistics.median(torch)
    figures = {"repeats": args.repeats, "api_import_s": round(api_s, 4), "torch_import_s": round(torch_s, 3),
               "torch_vs_api": round(torch_s / api_s, 1), "api_loaded_heavy": api[0][1]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
