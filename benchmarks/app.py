"""Dashboard benchmarks in headless Chromium on a warm app with a real model worker (tmp catalog and cache).
One function per figure, `fn(url, driver, worker, repeats, **context) -> dict`; the run merges its figures into
benchmarks/out/app.json (figures already there stay). Times include the page's 0.4 s job poll.

- cancel_latency_s: click Cancel on a running 16 × 1,024-token intervention's progress line → the page reports it
  cancelled; median of `--repeats`.                                                            target <= 3
- head_click_to_pattern_s: click a head chip in Head map's top heads → that head's pattern drawn, on a 256-token
  prompt with a warm worker (one click first warms it); median of `--repeats`.                   target <= 1.0
  Also head_click_new_prompt_s: the same click right after the prompt changed (one prefill of every layer first).
- text_view_page_s: Attention text, one 512-token window of an 8192-token prompt: `next ▶` → the next page drawn,
  after the first page's prefill (reported as text_view_first_page_s); median of `--repeats`.   target <= 1.5
`--screenshots DIR` also saves DIR/queue_cancel.png (the Jobs page with a running and a queued job) and
DIR/text_view.png (the text view with a pinned token).

    python benchmarks/app.py [--model smollm2-135m] [--figures ...] [--repeats 3] [--screenshots DIR]
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


def cancel_latency_s(url, driver, worker, repeats: int = 3, **_) -> dict:
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


def _text_of(driver, css: str) -> str:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, css))
    except StaleElementReferenceException:
        return ""


def _wait_text(driver, css: str, needle: str, timeout: float = 60.0) -> float:
    """Seconds (perf_counter) at which `needle` appeared in `css`, polled every 20 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in _text_of(driver, css):
            return time.perf_counter()
        time.sleep(0.02)
    raise TimeoutError(f"{needle!r} never appeared in {css!r}; last text: {_text_of(driver, css)!r}")


def _prompt(model, n_tokens: int) -> str:
    """Bundled text whose tokenisation (with BOS) is exactly `n_tokens` long."""
    import workbench.api as wb
    from workbench.engine.probe import prompt_ids
    from workbench.models.loading import model_info

    ids = prompt_ids(model, wb.public_domain_text()[:n_tokens * 8])
    text = model_info(model).tokenizer.decode(ids[1:n_tokens])
    assert len(prompt_ids(model, text)) == n_tokens, "re-tokenising the decoded text changed its length"
    return text


def _click_head(driver, head: str) -> float:
    """Seconds from a click on `head`'s chip to its pattern drawn."""
    from selenium.webdriver.common.by import By

    started = time.perf_counter()
    driver.find_element(By.XPATH, f"//button[contains(@class, 'head-chip') and text()='{head}']").click()
    done = _wait_text(driver, "#hm-progress", f"✓ {head} on 256 tokens", timeout=900)
    browser.wait_for(driver, "#hm-pattern g.heatmaplayer")
    return round(done - started, 3)


def head_click_to_pattern_s(url, driver, worker, repeats: int = 3, *, model=None, run_id: str = "", **_) -> dict:
    driver.get(f"{url}/heads?run={run_id}&prompt=custom&tokens=256")
    browser.wait_for(driver, "button.head-chip")
    text = wb_text(model)
    browser.set_react_value(driver, "hm-text", text[:len(text) // 2])  # > 256 tokens: BOS + the last 255 are kept
    time.sleep(1.0)  # the new text re-renders the top-heads table: read the chips after that, in one script
    chips = driver.execute_script("return [...document.querySelectorAll('button.head-chip')].map(b => b.textContent)")
    seconds = [_click_head(driver, head) for head in chips[:repeats + 1]]
    new_prompt = []  # a click on a prompt not seen before: one prefill of every layer first
    for i in range(repeats):
        browser.set_react_value(driver, "hm-text", text[:(repeats + 2 + i) * len(text) // (2 * repeats + 2)])
        time.sleep(1.0)
        new_prompt.append(_click_head(driver, chips[i % len(chips)]))
    return {"head_click_to_pattern_s": statistics.median(seconds[1:]), "head_click_to_pattern_runs_s": seconds[1:],
            "head_click_to_pattern_first_s": seconds[0], "head_click_to_pattern_tokens": 256,
            "head_click_new_prompt_s": statistics.median(new_prompt), "head_click_new_prompt_runs_s": new_prompt}


def wb_text(model) -> str:
    """Bundled text of 1,200 tokens: each prefix used above is over 256 tokens long and ends somewhere else."""
    return _prompt(model, 1200)


def text_view_page_s(url, driver, worker, repeats: int = 3, *, model=None, screenshot: Path | None = None,
                     **_) -> dict:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    n_tokens, size = 8192, 512
    pages = n_tokens // size
    driver.get(f"{url}/attention?prompt=custom&tokens={size}&layer=3")
    browser.wait_for(driver, "#ax-text")
    browser.set_react_value(driver, "ax-text", _prompt(model, n_tokens))
    started = time.perf_counter()
    browser.wait_for(driver, "#ax-go").click()
    first = _wait_text(driver, "#ax-view .att-where", f"page 1 of {pages}", timeout=900) - started
    seconds = []
    for page in range(2, repeats + 2):
        started = time.perf_counter()
        driver.find_element(By.ID, "ax-next").click()
        seconds.append(round(_wait_text(driver, "#ax-view .att-where", f"page {page} of {pages}") - started, 3))
    if screenshot is not None:
        driver.find_element(By.XPATH, "//button[@class='att-head-btn' and text()='L3H0']").click()
        spans = driver.find_elements(By.CSS_SELECTOR, "#ax-view .att-tok")
        ActionChains(driver).move_to_element(spans[200]).click().perform()
        time.sleep(0.5)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
    return {"text_view_page_s": statistics.median(seconds), "text_view_page_runs_s": seconds,
            "text_view_first_page_s": round(first, 3), "text_view_tokens": n_tokens, "text_view_window": size}


FIGURES = {"cancel_latency_s": cancel_latency_s, "text_view_page_s": text_view_page_s,
           "head_click_to_pattern_s": head_click_to_pattern_s}
TARGETS = {"cancel_latency_s": "<= 3", "head_click_to_pattern_s": "<= 1.0", "text_view_page_s": "<= 1.5"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--figures", nargs="+", default=list(FIGURES), choices=list(FIGURES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshots", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    import workbench.api as wb

    figures = json.loads(args.out.read_text()) if args.out.is_file() else {}
    model = wb.load_model(args.model)  # for exact-length prompts; the worker loads its own copy
    with tempfile.TemporaryDirectory(prefix="wb-bench-app-") as root:
        run = wb.run("attention_profile", model, params={"n_prompts": 2, "n_tokens": 32},
                     results_dir=Path(root) / "results", progress=False)  # a saved run for Head map
        with browser.live_app(args.model, root, width=1300, height=900) as (url, driver, worker):
            driver.get(url + "/jobs")
            while not worker.info:  # the model is loaded before any clock starts
                time.sleep(0.1)
            shot = args.screenshots / "text_view.png" if args.screenshots else None
            for name in args.figures:
                figures.update(FIGURES[name](url, driver, worker, repeats=args.repeats, model=model,
                                             run_id=run.record.run_id, screenshot=shot))
            if args.screenshots:
                queue_screenshot(url, driver, worker, args.screenshots / "queue_cancel.png")
    figures.update(model=args.model, targets={**figures.get("targets", {}), **TARGETS})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
