"""Sizes for people: one formatter shared by messages, errors and the headless output.

Imports nothing of ours.  (The form's size column uses ``tui.model.human_size``,
which trades decimals for a fixed width.)
"""

from __future__ import annotations


def human_bytes(n: int | float | None) -> str:
    """``4.27 GB`` style (decimal units, as download sizes are usually given); ``?`` when unknown."""
    if n is None or n < 0:
        return "?"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000
    return f"{value:.2f} TB"
