"""Source-checkout alias for the Dash app in app/ (the wheel installs app/ itself under this name).

The app keeps its folder at the top of the repository; its package name is `workbench_app`, which cannot
collide with another project's `app`. pyproject's package-dir mapping does the same for installs.
"""

from pathlib import Path

__path__ = [str(Path(__file__).resolve().parent.parent / "app")]
