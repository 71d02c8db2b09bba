"""The Atlas page and a head profile in headless Chromium, over a tiny-model atlas in a temporary catalog, with a real
model worker: the rank table and heatmap, a profile's metrics, its attention text (a clicked token becomes the
query), and the one-click ablation; a head outside the model gets a message, not a traceback."""

from __future__ import annotations

import pytest
from test_app_browser import click_map_cell, no_error_page, text_of

from workbench_app import browser

pytestmark = pytest.mark.skipif(None in browser.find_browser(),
                                reason="needs chromium + chromedriver (scripts/setup.sh installs them)")


wait_text = browser.wait_text  # retries while the page swaps an element out


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from workbench import api

    root = tmp_path_factory.mktemp("atlas-browser")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_CACHE_DIR", str(root / "cache"))
        tiny = api.load_model("tiny")
        run = api.run("attention_profile", tiny, params={"n_prompts": 2, "n_tokens": 32}, results_dir=root / "results",
                      progress=False)
        api.run("induction_heads", tiny, params={"n_prompts": 2, "half_len": 16}, results_dir=root / "results",
                progress=False)
        api.build_atlas("tiny", n_boot=50, results_dir=root / "results")
        api.run("attention_profile", "tiny-mha", params={"n_prompts": 2, "n_tokens": 32},
                results_dir=root / "results", progress=False)
        api.build_atlas("tiny-mha", n_boot=20, results_dir=root / "results")
    with browser.live_app("tiny", root) as (url, driver, _worker):
        yield url, driver, run.record.run_id, root / "results"


def test_atlas_page_shows_the_rank_table_and_links_heads_to_profiles(live):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from workbench import api
    from workbench_app import atlas_controllers as ac

    url, driver, _, results = live
    atlas = api.load_atlas("tiny", results)
    first = ac.heatmap_frame(ac.rank_matrix(atlas), list(atlas.metrics["metric"])).index[0]
    driver.get(f"{url}/atlas?model=tiny")
    browser.wait_for(driver, "#at-matrix .dash-spreadsheet")
    browser.wait_for(driver, "#at-heatmap g.heatmaplayer")
    assert "induction_heads.induction" in text_of(driver, "#at-metrics-table")
    cells = driver.find_elements(By.CSS_SELECTOR, "#at-matrix td[data-dash-column='head']")
    best = driver.find_elements(By.CSS_SELECTOR, "#at-matrix td[data-dash-column='best rank']")
    assert sorted(c.text for c in cells) == [f"L{layer}H{head}" for layer in range(2) for head in range(4)]
    assert [float(c.text) for c in best] == sorted(float(c.text) for c in best)  # strongest heads first
    drag = browser.wait_for(driver, "#at-heatmap .nsewdrag")  # the heatmap's top row: the best-ranked head
    ActionChains(driver).move_to_element_with_offset(drag, 0, -drag.size["height"] // 2 + 4).click().perform()
    wait_text(driver, "#at-profile-link", f"{first}: open its profile")
    cell = cells[5]
    head = cell.text
    cell.click()
    wait_text(driver, "#at-profile-link", f"{head}: open its profile")
    driver.find_element(By.CSS_SELECTOR, "#at-profile-link a").click()
    wait_text(driver, ".page-title", f"{head} · tiny")
    browser.wait_for(driver, "#hp-metrics-table")
    driver.get(f"{url}/atlas")
    browser.wait_for(driver, "#at-model").click()
    next(e for e in driver.find_elements(By.XPATH, "//*[text()='tiny-mha']") if e.is_displayed()).click()
    wait_text(driver, "#at-facts", "3 layers × 4 heads")
    assert "model=tiny-mha" in driver.current_url
    no_error_page(driver)


def test_head_profile_attention_query_click_and_one_click_ablation(live):
    from selenium.webdriver.common.by import By

    url, driver, _, _ = live
    driver.get(f"{url}/head?model=tiny&head=L1H2")
    ms = browser.first_paint_of(driver, "#hp-metrics-table")
    print(f"\nhead profile metrics table {ms:.0f} ms after navigation start (tiny)")
    assert "induction_heads.induction" in text_of(driver, "#hp-metrics-table")
    wait_text(driver, "#hp-probe-progress", "✓ L1H2's attention on 4 tasks", timeout=180)
    caption = "#hp-attention .tok-task:nth-of-type(2) .field-hint"
    assert "Attention from token 48" in text_of(driver, caption)  # repeated tokens: the last of 2 × 24 + BOS
    driver.find_elements(By.CSS_SELECTOR, "#hp-attention .tok-task:nth-of-type(2) .tok")[30].click()
    wait_text(driver, caption, "Attention from token 30")
    assert "greater-than" in text_of(driver, "#hp-attention").lower()
    driver.find_element(By.ID, "hp-ablate-button").click()
    wait_text(driver, "#hp-ablate-progress", "✓ L1H2 mean-ablated on 4 tasks", timeout=240)
    table = browser.wait_for(driver, "#hp-ablation-table")
    assert len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == 4
    assert "repeated_half_loss" in table.text and "Not run here: IOI" in text_of(driver, "#hp-ablation")
    no_error_page(driver)


def test_a_head_outside_the_model_gets_a_message_and_head_maps_link_to_profiles(live):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, driver, run_id, _ = live
    driver.get(f"{url}/head?model=tiny&head=L9H9")
    wait_text(driver, "#hp-message", "tiny has no head L9H9")
    browser.set_react_value(driver, "hp-head-input", "L0H3")
    driver.find_element(By.ID, "hp-head-input").send_keys(Keys.ENTER)
    wait_text(driver, ".page-title", "L0H3 · tiny")
    assert "no head" not in text_of(driver, "#hp-message")
    assert "head=L0H3" in driver.current_url
    driver.get(f"{url}/head?model=nope&head=L0H0")
    wait_text(driver, "#hp-message", "Unknown model 'nope'. Known models:")  # not a model at all: the known ones
    driver.get(f"{url}/heads?run={run_id}")
    click_map_cell(driver, "hm-map", 0, 1, n_layers=2, n_heads=4)
    wait_text(driver, "#hm-across", "L0H1: open its profile")
    driver.get(f"{url}/compare?a={run_id}&b={run_id}")
    browser.wait_for(driver, "#cm-map-a g.hm")
    click_map_cell(driver, "cm-map-a", 1, 3, n_layers=2, n_heads=4)
    wait_text(driver, "#cm-profile-link", "L1H3: open its profile")
    driver.get(f"{url}/circuits?a=smollm2-135m_ioi&b=smollm2-135m_colored_objects")  # the committed circuits
    browser.wait_for(driver, "#cc-map-a g.hm")
    click_map_cell(driver, "cc-map-a", 14, 4, n_layers=30, n_heads=9)  # (this tall map scrolls: any head will do)
    wait_text(driver, "#cc-profile-link", "H4: open its profile")
    assert "model=smollm2-135m" in driver.find_element(By.CSS_SELECTOR, "#cc-profile-link a").get_attribute("href")
    no_error_page(driver)
