"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver via selenium).

The app runs in a thread of this process on a free port, over a temporary results catalog; its model
worker is a real child process. Most tests use the tiny model; one uses the real SmolLM2.
"""

from __future__ import annotations

import time

import pytest

from workbench_app import browser

pytestmark = pytest.mark.skipif(None in browser.find_browser(),
                                reason="needs chromium + chromedriver (scripts/setup.sh installs them)")


def _saved_runs(model_name: str, root, n_tokens: tuple[int, ...]) -> list[str]:
    from workbench import api

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_CACHE_DIR", str(root / "cache"))
        model = api.load_model(model_name)
        return [api.run_analysis("attention_profile", model, params={"n_prompts": 1, "n_tokens": n},
                                 results_dir=root / "results", progress=False)[1].run_id for n in n_tokens]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """(base url, driver, run ids) for an app on the tiny model with two saved runs."""
    root = tmp_path_factory.mktemp("app")
    run_ids = _saved_runs("tiny", root, (48, 24))
    with browser.live_app("tiny", root) as (url, driver, _worker):
        yield url, driver, run_ids


def text_of(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, css))


wait_text = browser.wait_text


def click_map_cell(driver, graph_id: str, layer: int, head: int, n_layers: int, n_heads: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    drag = browser.wait_for(driver, f"#{graph_id} .nsewdrag")
    width, height = drag.size["width"], drag.size["height"]
    dx = (head + 0.5) / n_heads * width - width / 2
    dy = (layer + 0.5) / n_layers * height - height / 2  # L0 is the top row
    ActionChains(driver).move_to_element_with_offset(drag, int(dx), int(dy)).click().perform()


def no_error_page(driver) -> None:
    source = driver.page_source
    assert "Traceback" not in source and "Internal Server Error" not in source


def test_every_page_loads(live):
    url, driver, run_ids = live
    checks = {"/": ("#ov-runs-table", run_ids[0]), "/heads": ("#hm-map g.hm", None),
              "/compare": ("#cm-stats .stat-value", None), "/circuits": ("#cc-overlap-table", "shared heads"),
              "/interventions": ("#iv-map g.hm", None),
              "/tokens": ("#tk-progress .progress-done", None)}
    for path, (css, needle) in checks.items():
        driver.get(url + path)
        element = browser.wait_for(driver, css, timeout=90)
        if needle:
            assert needle in element.text
        assert not text_of(driver, ".alert-error"), (path, text_of(driver, ".alert-error"))
        no_error_page(driver)
    driver.get(url + "/compare")
    assert "/ 8" in wait_text(driver, "#cm-stats", "/ 8")  # tiny has 8 heads, so top-10 = 8


def test_circuits_page_shows_the_committed_overlap(live):
    url, driver, _ = live
    driver.get(f"{url}/circuits?a=smollm2-135m_ioi&b=smollm2-135m_colored_objects")
    text = wait_text(driver, "#cc-overlap-table", "shared heads")
    assert "smollm2-135m_colored_objects" in text and "P(≥" in text
    browser.wait_for(driver, "#cc-map-a g.hm")
    driver.get(f"{url}/circuits?a=no_such_circuit")  # an unknown name in the URL falls back to a saved one
    wait_text(driver, "#cc-overlap-table", "shared heads")
    assert not text_of(driver, ".alert-error")
    no_error_page(driver)


def test_head_map_click_shows_pattern_and_other_analyses(live):
    url, driver, run_ids = live
    driver.get(f"{url}/heads?run={run_ids[0]}")
    ms = browser.first_paint_of(driver, "#hm-map g.hm")
    print(f"\nhead map of a stored run rendered {ms:.0f} ms after navigation start (tiny, 2x4 heads)")
    assert ms > 0
    click_map_cell(driver, "hm-map", 1, 2, n_layers=2, n_heads=4)
    wait_text(driver, "#hm-head-title", "L1H2: attention pattern")
    wait_text(driver, "#hm-progress", "✓ L1H2 on", timeout=120)
    browser.wait_for(driver, "#hm-pattern g.hm")
    across = text_of(driver, "#hm-across")
    assert across.count("attention_profile") == 2
    assert "head=L1H2" in driver.current_url  # the view is linkable
    driver.get(driver.current_url)  # … and the link restores it
    wait_text(driver, "#hm-head-title", "L1H2: attention pattern")


def test_intervention_from_map_clicks(live):
    from selenium.webdriver.common.by import By

    url, driver, _ = live
    driver.get(f"{url}/interventions?n=2&tokens=16&edit=scale&alpha=0")
    browser.wait_for(driver, "#iv-map g.hm")
    click_map_cell(driver, "iv-map", 1, 2, n_layers=2, n_heads=4)
    deadline = time.monotonic() + 20
    heads = driver.find_element(By.ID, "iv-heads")
    while heads.get_attribute("value") != "L1H2" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert heads.get_attribute("value") == "L1H2"
    driver.find_element(By.ID, "iv-go").click()
    table = browser.wait_for(driver, "#iv-result-table", timeout=120)
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 2
    assert "scale[α=0] L1H2" in text_of(driver, "#iv-summary")
    assert "heads=L1H2" in driver.current_url


def test_bad_input_shows_messages_and_the_server_keeps_serving(live):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, driver, run_ids = live
    driver.get(f"{url}/heads?run=../../etc&head=zzz&col=nope&tokens=-5")  # malformed URL state
    browser.wait_for(driver, "#hm-map g.hm")
    assert "showing the newest run" in text_of(driver, "#hm-url-message")
    wait_text(driver, "#hm-head-message", "malformed head label 'zzz'")
    box = driver.find_element(By.ID, "hm-head-input")
    box.clear()
    box.send_keys("L9H9", Keys.ENTER)
    wait_text(driver, "#hm-head-message", "do not exist")

    driver.get(f"{url}/interventions")
    browser.wait_for(driver, "#iv-heads").send_keys("L3H")
    driver.find_element(By.ID, "iv-go").click()
    wait_text(driver, "#iv-message", "malformed head label")

    driver.get(f"{url}/tokens?prompt=custom")
    wait_text(driver, "#tk-message", "empty")
    browser.set_react_value(driver, "tk-text", "word " * 6000)  # 30,000 characters
    driver.find_element(By.ID, "tk-go").click()
    wait_text(driver, "#tk-message", "at most 20,000")
    browser.set_react_value(driver, "tk-text", "x" * 900)  # longer than tiny's 512-token context: the last window
    browser.wait_for_value(driver, "tk-text", 900)
    driver.find_element(By.ID, "tk-go").click()
    wait_text(driver, "#tk-progress", "BOS + the last 511 of 901", timeout=120)

    driver.get(f"{url}/no-such-page")
    wait_text(driver, ".page-title", "Not found")
    driver.get(url + "/")
    assert run_ids[0] in browser.wait_for(driver, "#ov-runs-table").text
    no_error_page(driver)


@pytest.mark.real_model
def test_real_smollm2_pattern_click_and_intervention(tmp_path):
    from selenium.webdriver.common.by import By

    (run_id,) = _saved_runs("smollm2-135m", tmp_path, (32,))
    with browser.live_app("smollm2-135m", tmp_path) as (url, driver, _worker):
        driver.get(f"{url}/heads?run={run_id}&tokens=64")
        ms = browser.first_paint_of(driver, "#hm-map g.hm")
        print(f"\nhead map of a stored SmolLM2 run (30x9 heads), first load while the worker loads the model: "
              f"rendered {ms:.0f} ms after navigation start")
        click_map_cell(driver, "hm-map", 3, 5, n_layers=30, n_heads=9)
        wait_text(driver, "#hm-head-title", "L3H5: attention pattern")
        done = wait_text(driver, "#hm-progress", "✓ L3H5 on 64 tokens", timeout=240)
        print(f"pattern: {done}")
        browser.wait_for(driver, "#hm-pattern g.hm")
        driver.get(f"{url}/heads?run={run_id}")
        ms = browser.first_paint_of(driver, "#hm-map g.hm")
        print(f"head map again (model loaded, browser cache warm): rendered {ms:.0f} ms after navigation start")
        driver.get(f"{url}/interventions?heads=L3H5&edit=ablate&n=2&tokens=32")  # a linked view: Run starts it
        browser.wait_for(driver, "#iv-go").click()
        table = browser.wait_for(driver, "#iv-result-table", timeout=240)
        assert len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == 2
        summary = text_of(driver, "#iv-summary")
        assert "ablate[zero] L3H5" in summary
        print(f"intervention: {summary}")


def test_run_an_analysis_from_the_overview(live):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, driver, run_ids = live
    driver.get(url + "/")
    wait_text(driver, "#ov-worker-status", "tiny loaded", timeout=120)
    params = browser.wait_for(driver, "#ov-params")
    params.send_keys("n_prompts=1, n_tokens=16", Keys.TAB)
    time.sleep(0.3)
    driver.find_element(By.ID, "ov-run-button").click()
    done = wait_text(driver, "#ov-progress", "saved run", timeout=120)
    new_id = done.split("saved run ")[1].split()[0]
    assert new_id not in run_ids
    wait_text(driver, "#ov-runs-table", new_id)
    params.clear()
    params.send_keys("n_prompts=oops", Keys.TAB)
    time.sleep(0.3)
    driver.find_element(By.ID, "ov-run-button").click()
    wait_text(driver, "#ov-message", "n_prompts must be a whole number", timeout=60)
    time.sleep(1.0)  # the refused job's clean-up poll has run: it blanks the last result, not this message
    assert "n_prompts must be a whole number" in text_of(driver, "#ov-message")
