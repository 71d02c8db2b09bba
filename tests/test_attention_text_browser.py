"""The attention text view in headless Chromium on SmolLM2 with a real model worker: a 4096-token prompt drawn as
tokens, hover colours what a token attends to and what attends to it, the head selector switches client-side, and
paging reaches the last token (one prefill; later pages reuse the cached q and k)."""

from __future__ import annotations

import pytest
from test_app_browser import no_error_page, text_of
from test_atlas_app_browser import wait_text

from workbench_app import browser

pytestmark = [pytest.mark.real_model,
              pytest.mark.skipif(None in browser.find_browser(),
                                 reason="needs chromium + chromedriver (scripts/setup.sh installs them)")]


@pytest.fixture(scope="module")
def live(tmp_path_factory, smol):
    from workbench import api
    from workbench.engine.probe import prompt_ids, token_labels
    from workbench.models.loading import model_info

    root = tmp_path_factory.mktemp("attention-browser")
    tok = model_info(smol).tokenizer
    text = tok.decode(prompt_ids(smol, api.public_domain_text()[:20_000])[1:4096])
    ids = prompt_ids(smol, text)
    with browser.live_app("smollm2-135m", root) as (url, driver, _worker):
        yield url, driver, text, len(ids), token_labels(tok, ids[-1:])[0]


def test_a_4096_token_prompt_pages_to_the_end_and_hover_colours_tokens(live):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url, driver, text, n_tokens, last = live
    assert n_tokens >= 4096
    pages = -(-n_tokens // 1024)
    driver.get(f"{url}/attention?prompt=custom&tokens=1024&layer=3")
    browser.wait_for(driver, "#ax-text")
    browser.set_react_value(driver, "ax-text", text)
    browser.wait_for(driver, "#ax-go").click()
    wait_text(driver, "#ax-view .att-where", f"page 1 of {pages}", timeout=600)  # a 4096-token prefill (CPU)
    assert f"of {n_tokens} " in text_of(driver, "#ax-view .att-where")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#ax-view .att-panel")) == 9  # every head of layer 3

    spans = driver.find_elements(By.CSS_SELECTOR, "#ax-view .att-panel[data-head='0'] .att-tok")
    assert len(spans) == 1024
    ActionChains(driver).move_to_element(spans[300]).perform()
    wait_text(driver, "#ax-view .att-info", "query #300")
    shades = driver.execute_script("""
        const s = [...document.querySelectorAll("#ax-view .att-panel[data-head='0'] .att-tok")];
        return [s.slice(0, 300).filter(e => e.style.background.includes('47, 111, 223')).length,
                s.slice(301).filter(e => e.style.background.includes('236, 128, 30')).length,
                s[300].classList.contains('att-query'), +s[299].dataset.w,
                window.attentionText.weight(0, 300, 299)];""")
    assert shades[0] == 300 and shades[1] == 1024 - 301 and shades[2]  # its row (blue) and its column (orange)
    assert shades[3] == pytest.approx(shades[4], abs=1e-4)
    assert "BOS 0." in text_of(driver, "#ax-view .att-panel-head")

    driver.find_element(By.XPATH, "//button[@class='att-head-btn' and text()='L3H4']").click()
    panels = driver.find_elements(By.CSS_SELECTOR, "#ax-view .att-panel")
    assert [p.get_attribute("data-head") for p in panels] == ["4"]  # switched in the browser, no request

    for page in range(2, pages + 1):
        driver.find_element(By.ID, "ax-next").click()
        wait_text(driver, "#ax-view .att-where", f"page {page} of {pages}", timeout=240)  # 1024 rows: 9.4 MB
    spans = driver.find_elements(By.CSS_SELECTOR, "#ax-view .att-tok")
    assert spans[-1].get_attribute("title").startswith(f"#{n_tokens - 1} ")  # the last page ends at the last token
    assert last.strip() in spans[-1].text or not last.strip()
    assert [p.get_attribute("data-head") for p in driver.find_elements(By.CSS_SELECTOR, "#ax-view .att-panel")] == ["4"]
    driver.find_element(By.ID, "ax-next").click()  # past the end stays on the last page
    wait_text(driver, "#ax-progress", f"page {pages} of {pages}")
    no_error_page(driver)
