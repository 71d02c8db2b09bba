"""Interventions in a real headless Chromium with the real SmolLM2 worker and a temporary results catalog:
IOI, patch the top heads of the committed circuit clean ← corrupted twin, logit_diff per prompt and in aggregate;
the URL of the result, opened in a new tab, shows the request filled in and runs nothing until Run is clicked."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from test_app_browser import text_of

from workbench_app import browser

pytestmark = pytest.mark.skipif(None in browser.find_browser(),
                                reason="needs chromium + chromedriver (scripts/setup.sh installs them)")
HEADS = "L23H3, L20H0, L17H4"  # the largest |score| heads of circuits/smollm2-135m_ioi.toml's score map
DOC_SCREENSHOT = Path(__file__).parents[1] / "docs" / "screenshots" / "ioi_patching.png"  # UPDATE_SCREENSHOTS=1


def test_ioi_logit_diff_patching_end_to_end_and_its_url(tmp_path):
    from selenium.webdriver.common.by import By

    from workbench import api

    results = tmp_path / "results"
    started = time.monotonic()
    with browser.live_app("smollm2-135m", tmp_path, height=1400) as (url, driver, worker):
        driver.get(f"{url}/interventions?edit=patch&metric=logit_diff&source=ioi&n=8")
        browser.wait_for(driver, "#iv-heads").send_keys(HEADS)
        driver.find_element(By.ID, "iv-go").click()
        table = browser.wait_for(driver, "#iv-result-table, #iv-progress .alert", timeout=420)
        assert table.get_attribute("id") == "iv-result-table", text_of(driver, "#iv-progress")
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        header = text_of(driver, "#iv-result-table thead")
        assert len(rows) == 8 and "clean logit_diff" in header and "edited logit_diff" in header
        aggregate = text_of(driver, "#iv-aggregate-table")
        assert "patch" in aggregate and "ioi-8-s0" in aggregate
        assert "saved run" in text_of(driver, "#iv-progress")
        assert "Saved interventions (1)" in text_of(driver, "#iv-history")  # redrawn after the run
        shot = DOC_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path / "ioi_patching.png"
        browser.full_page_screenshot(driver, str(shot))  # a test run leaves the checkout as it was
        assert shot.stat().st_size > 10_000
        print(f"\nIOI patching ({HEADS}): {aggregate}")
        saved = api.find_results(kind="intervention", results_dir=results)
        assert len(saved) == 1 and "heads=L17H4,L20H0,L23H3" in saved["params"].iloc[0]

        link = driver.current_url  # the whole request, as the Run button wrote it
        assert "source=ioi" in link and "metric=logit_diff" in link and "heads=" in link
        driver.switch_to.new_window("tab")
        driver.get(link)
        heads = browser.wait_for(driver, "#iv-heads")
        assert heads.get_attribute("value") == "L17H4,L20H0,L23H3"
        assert "IOI" in text_of(driver, "#iv-source") and "logit_diff" in text_of(driver, "#iv-metric")
        assert browser.wait_for(driver, "#iv-n-prompts").get_attribute("value") == "8"
        time.sleep(3)  # a job started on open would be queued or running by now
        assert not driver.find_elements(By.CSS_SELECTOR, "#iv-result-table") and worker.pending() == 0
        assert len(api.find_results(kind="intervention", results_dir=results)) == 1
        assert "Saved interventions (1)" in text_of(driver, "#iv-history")
    print(f"browser test took {time.monotonic() - started:.1f} s")
