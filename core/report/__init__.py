"""Self-contained HTML report of a results folder (``ctxbench report``).

    from ctxbench.report import write_report
    write_report("leaderboards/embedded", "leaderboards/embedded.html")

See :mod:`ctxbench.report.html` (page), :mod:`ctxbench.report.plots` (one plot
function per family, registered with ``@plot_for("family")``) and
:mod:`ctxbench.report.colors` (one colour per backend across the report).
"""

from .colors import backend_colors
from .html import esc, read_manifest, render_html, write_report
from .plots import PLOTS, Plot, TaskData, make_plots, plot_for

__all__ = ["write_report", "render_html", "read_manifest", "esc", "plot_for", "Plot", "TaskData",
           "make_plots", "PLOTS", "backend_colors"]
