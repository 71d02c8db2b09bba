"""The head profile page in headless Chromium, for benchmarks/atlas.py: seconds from navigation start to the profile's
metrics table being in the page (checked every animation frame), on a warm app (one navigation first loads the
atlas and warms the browser cache); the median of `repeats` navigations. The app reads the saved atlas of `model`
from the default catalog (or `results_dir`) and starts no model worker: the metrics table needs none.

    from _atlas_browser import measure_profile_render
    measure_profile_render("smollm2-135m", "L17H4")   # -> 0.4 (seconds)
"""

from __future__ import annotations

import statistics


def measure_profile_render(model: str = "smollm2-135m", head: str = "L17H4", *, repeats: int = 3,
                           results_dir=None) -> float:
    import workbench.api as wb
    from workbench_app import atlas_controllers, browser
    from workbench_app.main import create_app

    dash_app = create_app(model, results_dir=results_dir, start_worker=False)
    atlas_controllers.profile(dash_app.workbench_context.atlas(model), head)  # no atlas / no such head: say so now
    url_path = atlas_controllers.profile_href(model, head)
    with browser.serve(dash_app) as url, browser.chromium() as driver:
        times = []
        for _ in range(repeats + 1):
            driver.get(url + url_path)
            ms = browser.first_paint_of(driver, "#hp-metrics-table")
            if ms < 0:
                raise wb.WorkbenchError(f"the profile of {head} never showed its metrics table")
            times.append(ms / 1000.0)
    return statistics.median(times[1:])  # the first navigation warms the app and the browser
