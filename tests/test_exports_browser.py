"""Exports and catalog operations in a real headless Chromium: a map's PNG button and a table's CSV button write
files, a head click gives links to its profile and to Interventions, and Overview labels and deletes a run.

The app runs without a model worker (nothing here needs one) over two real tiny-model runs in a temporary catalog.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from workbench_app import browser

pytestmark = pytest.mark.skipif(None in browser.find_browser(),
                                reason="needs chromium + chromedriver (scripts/setup.sh installs them)")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """(base url, driver, run ids, download dir) for an app over two attention_profile runs of the tiny model."""
    from workbench import api
    from workbench_app.main import create_app

    root = tmp_path_factory.mktemp("exports")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_CACHE_DIR", str(root / "cache"))
        run_ids = [api.run("attention_profile", "tiny", params={"n_prompts": 1, "n_tokens": n}, progress=False,
                           results_dir=root / "results").record.run_id for n in (24, 32)]
    downloads = root / "downloads"
    downloads.mkdir()
    dash_app = create_app("tiny", results_dir=root / "results", start_worker=False)
    with browser.serve(dash_app) as url, browser.chromium() as driver:
        for command in ("Browser.setDownloadBehavior", "Page.setDownloadBehavior"):
            driver.execute_cdp_cmd(command, {"behavior": "allow", "downloadPath": str(downloads)})
        yield url, driver, run_ids, downloads, root / "results"


def downloaded(directory: Path, name: str, timeout: float = 20.0) -> Path:
    path = directory / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.stat().st_size > 0:
            return path
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded; the folder holds {sorted(p.name for p in directory.iterdir())}")


def test_png_and_csv_buttons_write_files_and_a_head_click_gives_both_links(live):
    from selenium.webdriver.common.by import By

    from tests.test_app_browser import click_map_cell, wait_text

    url, driver, run_ids, downloads, _ = live
    driver.get(f"{url}/heads?run={run_ids[0]}")
    browser.wait_for(driver, "#hm-map .main-svg")
    assert "tokens" in wait_text(driver, "#hm-definition", "score:")  # the spec's definition, unit, direction
    png = f"attention_profile_score_{run_ids[0]}.png"
    browser.wait_for(driver, "#hm-map .modebar-btn[data-title^='Download plot']").click()
    assert downloaded(downloads, png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    browser.wait_for(driver, "#hm-top-table .csv-link").click()
    csv = downloaded(downloads, f"attention_profile_score_{run_ids[0]}.csv").read_text()
    assert csv.splitlines()[0].startswith("head_label,rank,score") and len(csv.splitlines()) == 1 + 8  # tiny: 8 heads

    click_map_cell(driver, "hm-map", 1, 2, 2, 4)
    wait_text(driver, "#hm-across", "L1H2")
    hrefs = {a.get_attribute("href").removeprefix(url)
             for a in driver.find_elements(By.CSS_SELECTOR, "#hm-across .head-links a")}
    assert hrefs == {"/head?model=tiny&head=L1H2", "/interventions?heads=L1H2"}


def test_overview_shows_params_labels_and_deletes_a_run(live):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from tests.test_app_browser import wait_text
    from workbench import api

    url, driver, run_ids, _, results_dir = live
    driver.get(url + "/")
    wait_text(driver, "#ov-runs-table", "n_tokens=32")  # the run's parameters, from its run.json
    label = browser.wait_for(driver, "#ov-label")
    label.send_keys(Keys.CONTROL, "a", Keys.DELETE)
    label.send_keys("short prompts")
    driver.find_element(By.ID, "ov-label-save").click()
    wait_text(driver, "#ov-manage-message", "labelled")
    assert "short prompts" in wait_text(driver, "#ov-runs-table", "short prompts")
    newest = run_ids[1]  # the first in the list
    assert api.find_results(results_dir=results_dir).set_index("run_id").loc[newest, "label"] == "short prompts"
    driver.find_element(By.ID, "ov-delete").click()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            driver.switch_to.alert.accept()
            break
        except Exception:  # noqa: BLE001 - the confirm dialog is not open yet
            time.sleep(0.1)
    wait_text(driver, "#ov-manage-message", "deleted")
    assert newest not in driver.find_element(By.ID, "ov-runs-table").text
    assert run_ids[0] in driver.find_element(By.ID, "ov-runs-table").text
