"""One colour per backend, the same in every plot of a report.

The colour of a backend is a function of its position in the *sorted* list of all
backend labels of the report, so it does not depend on which task, plot or
ranking shows it. The first ten colours are matplotlib's ``tab10`` (Vega's
category10); the next ten were picked greedily from candidate palettes (tab20's
light tones, Kelly's colours of maximum contrast) to maximise the smallest
CIELAB distance to the colours already taken: every pair of the 20 is at least
as far apart (Delta E 1976 >= 27) as the closest pair inside tab10. Beyond 20
backends, colours continue along a golden-ratio hue walk with alternating
lightness (distinct hues, no guarantee of contrast); the legend stays the key.
"""

from __future__ import annotations

import colorsys
from typing import Iterable

PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#000000", "#00ffd0", "#ffbb78", "#637939", "#ff9896",
    "#98df8a", "#aec7e8", "#5b0f00", "#2b3d26", "#393b79",
)

# Colours for things that are not backends (so they never clash with one).
NEUTRAL = "#4d4d4d"
TRUE_SCORES = "#bdbdbd"
SIGNIFICANT = "#000000"


def extra_colour(i: int) -> str:
    """The i-th colour after the fixed palette (i >= 0): golden-ratio hue walk."""
    hue = (0.13 + i * 0.618033988749895) % 1.0
    light = (0.38, 0.55, 0.70)[i % 3]
    r, g, b = colorsys.hls_to_rgb(hue, light, 0.75)
    return "#{:02x}{:02x}{:02x}".format(round(r * 255), round(g * 255), round(b * 255))


def backend_colors(backends: Iterable[str]) -> dict[str, str]:
    """``{backend: "#rrggbb"}``, deterministic from the sorted set of labels."""
    names = sorted(set(backends))
    return {name: PALETTE[i] if i < len(PALETTE) else extra_colour(i - len(PALETTE))
            for i, name in enumerate(names)}
