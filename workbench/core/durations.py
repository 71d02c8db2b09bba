"""One way to write a duration for people (progress lines, ETAs, job tables): 6 s, 2 min 5 s, 1 h 3 min."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """Whole seconds under a minute, minutes and seconds under an hour, then hours and minutes."""
    s = max(0, int(round(float(seconds))))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"
