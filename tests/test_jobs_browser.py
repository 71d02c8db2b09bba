"""The worker's job queue in headless Chromium on the real SmolLM2 worker (tmp results dir): a long intervention
cancelled from its own progress line while a Tokens job waits behind it (its place shown), the queue page, and a
refused request that leaves no stale result. Each test stays under ~60 s."""

from __future__ import annotations

import time

import pytest

from workbench_app import browser

pytestmark = pytest.mark.skipif(None in browser.find_browser(),
                                reason="needs chromium + chromedriver (scripts/setup.sh installs them)")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with browser.live_app("smollm2-135m", tmp_path_factory.mktemp("jobs")) as app:
        url, driver, worker = app
        driver.get(url + "/jobs")
        deadline = time.monotonic() + 60
        while not worker.info and time.monotonic() < deadline:  # the model is loaded before the clock starts
            time.sleep(0.1)
        yield app


def running(worker, op: str) -> dict | None:
    return next((j for j in worker.jobs() if j["op"] == op and j["status"] == "running"), None)


def test_cancel_a_long_intervention_and_the_next_job_starts_within_5_s(live):
    url, driver, worker = live
    first = driver.current_window_handle
    browser.start_intervention(driver, url, "L3H5,L10H2", n=16, tokens=1024)
    browser.wait_for(driver, "#iv-progress .job-cancel", timeout=20)
    driver.switch_to.new_window("tab")
    driver.get(url + "/tokens")  # the page runs its default prompt on open: it waits behind the intervention
    assert "1st in queue, behind intervene" in browser.wait_text(driver, "#tk-progress", "in queue", timeout=20)
    driver.get(url + "/jobs")
    rows = browser.wait_text(driver, "#jobs-table", "token_traces", timeout=10)
    assert "intervene L3H5,L10H2 scale" in rows
    assert len(driver.find_elements("css selector", "#jobs-table .job-cancel")) == 2
    driver.switch_to.window(first)
    browser.click(driver, "#iv-progress .job-cancel")
    clicked = time.monotonic()
    browser.wait_text(driver, "#iv-progress", "cancelled", timeout=10)
    while running(worker, "token_traces") is None and worker.status(_job(worker, "token_traces"))["status"] != "done":
        assert time.monotonic() - clicked < 5.0, worker.jobs()
        time.sleep(0.05)
    assert time.monotonic() - clicked < 5.0
    assert driver.find_elements("css selector", "#iv-table tr") == []  # the cancelled job shows no result
    driver.switch_to.window(driver.window_handles[1])  # the queue page: cancel the Tokens job from there
    if worker.pending():
        browser.wait_text(driver, "#jobs-table tr.job-running", "token_traces", timeout=10)
        browser.click(driver, "#jobs-table tr.job-running .job-cancel")
        deadline = time.monotonic() + 5
        while worker.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not worker.pending(), [(j["label"], j["status"], j["message"], j["cancelling"]) for j in worker.jobs()]
        assert "✕ cancelled" in browser.wait_text(driver, "#jobs-table", "cancelled")
    driver.close()
    driver.switch_to.window(first)


def _job(worker, op: str) -> str:
    return next(j["id"] for j in worker.jobs(finished=10) if j["op"] == op)


def test_a_refused_request_shows_no_stale_result(live):
    url, driver, _ = live
    browser.start_intervention(driver, url, "L3H5", n=1, tokens=8)
    browser.wait_text(driver, "#iv-progress", "✓", timeout=50)  # ~2 × 8 s here, on a machine shared 8 ways
    assert driver.find_elements("css selector", "#iv-table tr")
    browser.type_into(driver, "#iv-heads", "L99H0")
    browser.click(driver, "#iv-go")
    browser.wait_text(driver, "#iv-message", "L99H0", timeout=10)
    deadline = time.monotonic() + 5
    while driver.find_elements("css selector", "#iv-table tr") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert driver.find_elements("css selector", "#iv-table tr") == []
    assert "✓" not in browser.wait_for(driver, "#iv-progress").text
    assert browser.wait_for(driver, "#iv-summary").text == ""
    assert "L99H0" in browser.wait_for(driver, "#iv-message").text  # the clean-up poll keeps the refusal's message
