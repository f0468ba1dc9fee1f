"""Report plots for the image_text_retrieval family (declared in the family's FamilySpec)."""

from __future__ import annotations

import re
from typing import Iterator

from ...report.drawing import (Plot, TaskData, add_backend_legend, grouped_bars, legend_height,
                               missing_note, new_figure)
from .protocol import DIRECTION_NAMES, DIRECTIONS

_RECALL = re.compile(r"^(?P<direction>t2i|i2t)/R@(?P<k>\d+)$")


def image_text_retrieval_plots(data: TaskData) -> Iterator[Plot]:
    found: dict[str, set[int]] = {}
    for name in data.metric_names():
        m = _RECALL.match(name)
        if m:
            found.setdefault(m.group("direction"), set()).add(int(m.group("k")))
    backends = data.backends()
    title = "Recall@K per retrieval direction"
    if not found or not backends:
        yield Plot.skip(title, "no metric named t2i/R@K or i2t/R@K in the results")
        return
    directions = [d for d in DIRECTIONS if d in found]
    fig = new_figure(4.2 * len(directions) + 2.8, max(3.2, legend_height(len(backends))))
    axes = fig.subplots(1, len(directions), squeeze=False, sharey=True)[0]
    missing = []
    for ax, d in zip(axes, directions):
        ks = sorted(found[d])
        missing += [(b, f"{d} {g}") for b, g in grouped_bars(
            ax, data, backends, [f"R@{k}" for k in ks],
            lambda b, g, d=d: data.metric(b, f"{d}/{g}"))]
        ax.set_title(DIRECTION_NAMES[d])
        ax.set_xlabel("K")
        ax.set_ylabel("Recall@K (fraction of queries)")
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelleft=True)
    add_backend_legend(fig, data, backends)
    yield Plot(title, fig, "Recall@K of text -> image (each caption finds its image) and image -> "
               "text (any of the image's captions in the top K), one bar per backend with its 95% "
               "cluster-bootstrap CI over images." + missing_note(missing, "these backend/metrics"))


PLOTS = (image_text_retrieval_plots,)
