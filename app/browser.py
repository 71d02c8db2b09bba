"""Serving the app in a thread and driving Debian's headless Chromium (selenium + chromedriver): shared by
the browser tests and the screenshot command. Never downloads a browser: it uses /usr/bin/chromium."""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
import time
from contextlib import contextmanager

CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_browser() -> tuple[str | None, str | None]:
    """(chromium, chromedriver) paths, or None where missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return chromium, driver


@contextmanager
def serve(dash_app, port: int | None = None, host: str = "127.0.0.1"):
    """Serve a Dash app on a background thread; yields its base URL; shuts down on exit."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = port or free_port()
    server = make_server(host, port, dash_app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@contextmanager
def chromium(width: int = 1500, height: int = 1000):
    """A headless Chromium WebDriver with a fresh profile directory."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = find_browser()
    if browser is None or driver_path is None:
        raise RuntimeError("Chromium and chromedriver are needed: apt-get install -y chromium chromium-driver "
                           "(scripts/setup.sh does this).")
    profile = tempfile.mkdtemp(prefix="wb-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, css: str, timeout: float = 30.0, poll: float = 0.05):
    """The first element matching `css`, waiting up to `timeout` seconds; TimeoutError otherwise."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        if found:
            return found[0]
        time.sleep(poll)
    raise TimeoutError(f"no element {css!r} after {timeout:.0f} s on {driver.current_url}")


def first_paint_of(driver, css: str, timeout_ms: int = 30000) -> float:
    """Milliseconds from navigation start until an element matching `css` exists (checked every frame)."""
    return float(driver.execute_async_script(
        """const [css, limit, done] = arguments;
        function check() {
          if (document.querySelector(css)) { done(performance.now()); return; }
          if (performance.now() > limit) { done(-1); return; }
          requestAnimationFrame(check);
        }
        check();""", css, timeout_ms))


def full_page_screenshot(driver, path: str, width: int = 1500) -> None:
    """Resize the window to the page's height, then save a PNG."""
    height = driver.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    height = min(max(int(height) + 20, 800), 4000)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    time.sleep(0.5)
    driver.save_screenshot(path)
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


# ---- a live app on a real model worker (jobs tests and benchmarks/app.py) ----------------------------------------
@contextmanager
def live_app(model: str, root, *, width: int = 1500, height: int = 1000):
    """(base url, driver, worker): the app on `model` with a real worker process, its activation cache and results
    under `root` (a temporary directory: nothing is written into the user's catalog)."""
    import os
    from pathlib import Path

    from workbench_app.main import create_app
    from workbench_app.worker_client import WorkerClient

    root = Path(root)
    env = {**os.environ, "WORKBENCH_CACHE_DIR": str(root / "cache"), "WORKBENCH_RESULTS_DIR": str(root / "results")}
    worker = WorkerClient(model, env=env)
    worker.start()
    try:
        dash_app = create_app(model, results_dir=root / "results", worker=worker)
        with serve(dash_app) as url, chromium(width, height) as driver:
            yield url, driver, worker
    finally:
        worker.stop()


def type_into(driver, css: str, text: str) -> None:
    """Replace the value of a (React-controlled) input: select all, then type."""
    from selenium.webdriver.common.keys import Keys

    field = wait_for(driver, css)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(text)


def wait_text(driver, css: str, needle: str, timeout: float = 60.0) -> str:
    """The text of the elements matching `css` once it contains `needle`; TimeoutError otherwise."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    deadline, text = time.monotonic() + timeout, ""
    while True:
        try:
            text = " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, css))
        except StaleElementReferenceException:  # re-rendered while read
            continue
        if needle in text:
            return text
        if time.monotonic() > deadline:
            raise TimeoutError(f"{needle!r} never appeared in {css!r} on {driver.current_url}; last text: {text!r}")
        time.sleep(0.05)


def start_intervention(driver, url: str, heads: str, *, n: int, tokens: int, edit: str = "scale") -> None:
    """Open Interventions, type `heads`, run `edit` on n bundled prompts × `tokens` tokens (clicks Run)."""
    driver.get(f"{url}/interventions?edit={edit}&n={n}&tokens={tokens}")
    type_into(driver, "#iv-heads", heads)
    click(driver, "#iv-go")


def click(driver, css: str, timeout: float = 30.0) -> None:
    """Click the first element matching `css`, again if a re-render replaced it meanwhile (a live progress line)."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            wait_for(driver, css, timeout=max(0.1, deadline - time.monotonic())).click()
            return
        except StaleElementReferenceException:
            if time.monotonic() > deadline:
                raise


def set_react_value(driver, element_id: str, value: str) -> None:
    """Set a React-controlled input or textarea to `value` at once (typing 8k tokens would take minutes)."""
    driver.execute_script("""
        const el = document.getElementById(arguments[0]);
        const proto = el.tagName === 'TEXTAREA' ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
        Object.getOwnPropertyDescriptor(proto, 'value').set.call(el, arguments[1]);
        el.dispatchEvent(new Event('input', {bubbles: true}));
        el.dispatchEvent(new Event('change', {bubbles: true}));""", element_id, value)


def wait_for_value(driver, element_id: str, length: int, timeout: float = 30.0) -> None:
    """Wait until the field `element_id` holds `length` characters and the page has had a frame to send the change
    to Dash (a click right after `set_react_value` on a loaded machine could otherwise submit the old value)."""
    deadline = time.monotonic() + timeout
    while driver.execute_script("return document.getElementById(arguments[0]).value.length", element_id) != length:
        if time.monotonic() > deadline:
            raise TimeoutError(f"#{element_id} never held {length} characters")
        time.sleep(0.05)
    driver.execute_async_script("const done = arguments[0]; requestAnimationFrame(() => setTimeout(done, 0));")
