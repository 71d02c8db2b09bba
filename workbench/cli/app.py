"""`workbench app`: the Dash dashboard on one model (127.0.0.1, debug off), and `workbench app screenshots`.

The app process never imports torch; it starts a model worker (`python -m workbench.worker`) in a child
process for patterns, token traces, interventions and running analyses.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import typer

from workbench.cli.common import DEVICE, DTYPE, MODEL, check_device_names, console, err, friendly
from workbench.core.errors import WorkbenchError
from workbench.models import DEFAULT_MODEL
from workbench.models.loading import resolve_spec

app_app = typer.Typer(help="The Dash dashboard: head maps, patterns, comparisons, interventions, tokens.",
                      invoke_without_command=True)

PAGES = (("head-map", "/heads?head={head}"), ("compare", "/compare"),
         ("circuits", f"/circuits?a={DEFAULT_MODEL}_ioi&b={DEFAULT_MODEL}_colored_objects"),
         ("interventions", "/interventions?heads={head}&edit=uniform&n=4&tokens=64"), ("tokens", "/tokens"),
         ("atlas", "/atlas"), ("head_profile", "/head?head={head}"),
         ("overview", "/"))  # overview last: by then the worker has loaded the model


def _check_host(host: str) -> str:
    if host == "localhost":
        return host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise WorkbenchError(f"--host must be an IP address like 127.0.0.1, got {host!r}.") from None
    return host


@app_app.callback()
@friendly
def app(ctx: typer.Context,
        port: int = typer.Option(8050, min=1, max=65535, help="port to serve on"),
        host: str = typer.Option("127.0.0.1", help="address to bind (default: this machine only)"),
        model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE):
    """Start the dashboard (debug off) on the bundled default model; Ctrl-C stops it."""
    if ctx.invoked_subcommand is not None:
        return

    resolve_spec(model)
    _check_host(host)
    check_device_names(device, dtype)  # availability is the worker's to say (the app process has no torch)
    from workbench_app.main import create_app

    dash_app = create_app(model, start_worker=True, device=device, dtype=dtype)
    err.print(f"workbench app: http://{host}:{port}/  (model {model}; Ctrl-C to stop)")
    try:
        dash_app.run(host=host, port=port, debug=False)
    finally:
        dash_app.workbench_context.worker.stop()


@app_app.command("screenshots")
@friendly(out_dirs=("out",))
def screenshots(out: Path = typer.Option(Path("docs/screenshots"), help="directory for the PNGs"),
                model: str = MODEL,
                head: str = typer.Option("L3H0", help="head to select on the head map and intervene on"),
                width: int = typer.Option(1500, min=800, max=3000)):
    """Save a PNG of each page (headless Chromium), after running attention_profile if no run exists."""
    from workbench_app import browser
    from workbench_app.main import create_app

    out.mkdir(parents=True, exist_ok=True)
    dash_app = create_app(model, start_worker=True)
    ctx = dash_app.workbench_context
    try:
        if ctx.model_runs().empty:
            console.print(f"no saved run for {model}: running attention_profile (n_prompts=2, n_tokens=128)")
            job = ctx.worker.submit("run_analysis", {"analysis": "attention_profile",
                                                     "params": {"n_prompts": "2", "n_tokens": "128"}})
            _wait(ctx.worker, job, 600)
        with browser.serve(dash_app) as url, browser.chromium(width=width) as driver:
            for name, path in PAGES:
                driver.set_window_size(width, 1000)
                driver.get(url + path.format(head=head))
                browser.wait_for(driver, ".page-title", 30)
                _settle(driver)
                target = out / f"{name}.png"
                browser.full_page_screenshot(driver, str(target), width)
                console.print(f"saved {target}")
    finally:
        ctx.worker.stop()


def _wait(worker, job: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = worker.status(job)
        if status["status"] == "done":
            return status
        if status["status"] == "error":
            raise WorkbenchError(status["message"])
        time.sleep(0.5)
    raise WorkbenchError(f"the worker did not finish within {timeout:.0f} s")


def _settle(driver, timeout: float = 180.0) -> None:
    """Wait until no job is running on the page (no spinner) and plots are drawn."""
    from selenium.webdriver.common.by import By

    time.sleep(1.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.find_elements(By.CSS_SELECTOR, ".spinner"):
        time.sleep(0.5)
    time.sleep(1.0)
