"""Formatting of the dashboard's figures, applied in the views."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    """850 ms, 12.3 s, 4 min 05 s, 2 h 03 min; an em dash when unknown."""
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def rate(value: float | None) -> str:
    """A success rate: 97.5 %; an em dash without decided runs."""
    return "—" if value is None else f"{value:g} %"
