"""Report plots for the context_retrieval family (declared in the family's FamilySpec)."""

from __future__ import annotations

import math
import re
from typing import Iterable, Iterator

from matplotlib.lines import Line2D

from ...report.colors import NEUTRAL
from ...report.drawing import (Plot, TaskData, add_backend_legend, grouped_bars, legend_height, missing_note, new_figure,
                    ordered, significance_marker)


CR_PATTERNS = ("no_ctx", "query_ctx", "image_ctx", "both_ctx")
_CR_RECALL = re.compile(r"^(?P<level>[^/]+)/(?P<pattern>[^/]+)/R@1$")
_CR_DIFF = re.compile(r"^(?P<level>[^/]+)/(?P<pattern>[^/]+)-no_ctx/R@1$")


def _parse(names: Iterable[str], rx: re.Pattern) -> tuple[list[str], list[str]]:
    levels, patterns = set(), set()
    for name in names:
        m = rx.match(name)
        if m and not m.group("pattern").endswith("-no_ctx"):
            levels.add(m.group("level"))
            patterns.add(m.group("pattern"))
    return sorted(levels), ordered(patterns, CR_PATTERNS)


def _panels(fig, n: int):
    cols = 2 if n > 1 else 1
    rows = math.ceil(n / cols)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return axes[:n]


def context_retrieval_plots(data: TaskData) -> Iterator[Plot]:
    names = data.metric_names()
    levels, patterns = _parse(names, _CR_RECALL)
    backends = data.backends()
    title = "Recall@1 per level and injection pattern"
    if not levels or not backends:
        yield Plot.skip(title, "no metric named <level>/<pattern>/R@1 in the results")
    else:
        rows = math.ceil(len(patterns) / 2)
        fig = new_figure(11.5, max(2.6 * rows + 0.4, legend_height(len(backends))))
        missing = []
        for ax, pattern in zip(_panels(fig, len(patterns)), patterns):
            missing += [(b, f"{pattern} {g}") for b, g in grouped_bars(
                ax, data, backends, levels, lambda b, g, p=pattern: data.metric(b, f"{g}/{p}/R@1"))]
            ax.set_title(f"pattern: {pattern}")
            ax.set_xlabel("query level")
            ax.set_ylabel("Recall@1 (fraction of queries)")
            ax.set_ylim(0, 1.02)
            ax.tick_params(labelleft=True)
        add_backend_legend(fig, data, backends)
        yield Plot(title, fig, "Recall@1 (0-1) per query level, one panel per context injection "
                   "pattern, one bar per backend with its 95% cluster-bootstrap CI."
                   + missing_note(missing, "these backend/pattern/levels (n/a: the backend takes "
                                   "no context on a side the pattern needs)"))

    dlevels, dpatterns = _parse(names, _CR_DIFF)
    title = "Recall@1 difference: pattern minus no_ctx"
    if not dlevels or not backends:
        yield Plot.skip(title, "no metric named <level>/<pattern>-no_ctx/R@1 in the results "
                        "(the backends take no context, or no_ctx alone was run)")
        return
    rows = math.ceil(len(dpatterns) / 2)
    fig = new_figure(11.5, max(2.6 * rows + 0.4, legend_height(len(backends))))
    missing = []
    for ax, pattern in zip(_panels(fig, len(dpatterns)), dpatterns):
        missing += [(b, f"{pattern} {g}") for b, g in grouped_bars(
            ax, data, backends, dlevels, lambda b, g, p=pattern: data.metric(b, f"{g}/{p}-no_ctx/R@1"),
            significance=True)]
        ax.axhline(0, color=NEUTRAL, linewidth=0.8)
        ax.set_title(f"{pattern} − no_ctx")
        ax.set_xlabel("query level")
        ax.set_ylabel("ΔRecall@1 (fraction of queries)")
        ax.tick_params(labelleft=True)
    stars = [(Line2D([], [], linestyle="none", **significance_marker(0.02, 1)), "p < 0.05"),
             (Line2D([], [], linestyle="none", **significance_marker(0.001, 1)), "p < 0.01")]
    add_backend_legend(fig, data, backends, extra=stars)
    yield Plot(title, fig, "Difference in Recall@1 between each pattern and no_ctx (paired, same "
               "queries), with the 95% CI of the difference; a hollow star marks a two-sided "
               "cluster-bootstrap p < 0.05, a filled star p < 0.01."
               + missing_note(missing, "these backend/pattern/levels"))


PLOTS = (context_retrieval_plots,)
