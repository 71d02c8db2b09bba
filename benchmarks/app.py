"""Dashboard benchmarks in headless Chromium on a warm app with a real model worker (tmp catalog and cache).
One function per figure; the run merges its figures into benchmarks/out/app.json (figures already there stay).

- cancel_latency_s: click Cancel on a running 16 × 1,024-token intervention's progress line → the page reports it
  cancelled (includes the page's 0.4 s poll); median of `--repeats`.                          target <= 3
`--screenshots DIR` also saves DIR/queue_cancel.png: the Jobs page with a running and a queued job.

    python benchmarks/app.py [--model smollm2-135m] [--figures cancel_latency_s] [--repeats 3] [--screenshots DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's workbench

from workbench.core.paths import SOURCE_ROOT  # noqa: E402  (the repository root)
from workbench_app import browser  # noqa: E402

DEFAULT_OUT = SOURCE_ROOT / "benchmarks" / "out" / "app.json"
LONG = dict(heads="L3H5,L10H2", n=16, tokens=1024)


def _running(worker, op: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(j["op"] == op and j["status"] == "running" for j in worker.jobs()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {op} job started within {timeout:.0f} s: {worker.jobs()}")
        time.sleep(0.05)


def cancel_latency_s(url, driver, worker, repeats: int = 3) -> dict:
    seconds = []
    for _ in range(repeats):
        browser.start_intervention(driver, url, **LONG)
        _running(worker, "intervene")
        time.sleep(2.0)  # well inside the model's forwards
        started = time.perf_counter()
        browser.click(driver, "#iv-progress .job-cancel")
        browser.wait_text(driver, "#iv-progress", "cancelled", timeout=60)
        seconds.append(round(time.perf_counter() - started, 3))
    return {"cancel_latency_s": statistics.median(seconds), "cancel_latency_runs_s": seconds,
            "cancel_latency_job": f"intervene scale α=0 {LONG['heads']} on {LONG['n']} × {LONG['tokens']} tokens"}


def queue_screenshot(url, driver, worker, path: Path) -> None:
    """The Jobs page with a running intervention, a Tokens job queued behind it, and their Cancel buttons."""
    browser.start_intervention(driver, url, **LONG)
    _running(worker, "intervene")
    driver.get(url + "/tokens")  # runs its default prompt on open: queued behind the intervention
    browser.wait_text(driver, "#tk-progress", "in queue", timeout=30)
    driver.get(url + "/jobs")
    browser.wait_text(driver, "#jobs-table", "token_traces", timeout=30)
    time.sleep(1.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    for job in worker.jobs():
        if job["status"] in ("queued", "running"):
            worker.cancel(job["id"])


FIGURES = {"cancel_latency_s": cancel_latency_s}
TARGETS = {"cancel_latency_s": "<= 3"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--figures", nargs="+", default=list(FIGURES), choices=list(FIGURES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshots", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    figures = json.loads(args.out.read_text()) if args.out.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="wb-bench-app-") as root, \
            browser.live_app(args.model, root, width=1300, height=760) as (url, driver, worker):
        driver.get(url + "/jobs")
        while not worker.info:  # the model is loaded before any clock starts
            time.sleep(0.1)
        for name in args.figures:
            figures.update(FIGURES[name](url, driver, worker, repeats=args.repeats))
        if args.screenshots:
            queue_screenshot(url, driver, worker, args.screenshots / "queue_cancel.png")
    figures.update(model=args.model, targets={**figures.get("targets", {}), **TARGETS})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
