"""Self-contained HTML report of a results folder (``ctxbench report``).

    from ctxbench.report import write_report
    write_report("leaderboards/embedded", "leaderboards/embedded.html")

See :mod:`ctxbench.report.html` (page), :mod:`ctxbench.report.plots` (which plots a
task gets: those its family declares), :mod:`ctxbench.report.drawing` (shared
drawing helpers) and :mod:`ctxbench.report.colors` (one colour per backend).
"""

from .colors import backend_colors
from .drawing import Plot, TaskData
from .html import esc, read_manifest, render_html, write_report
from .plots import family_plots, make_plots

__all__ = ["write_report", "render_html", "read_manifest", "esc", "Plot", "TaskData",
           "make_plots", "family_plots", "backend_colors"]
