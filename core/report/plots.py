"""Which plots a task gets: those its family declares, else the headline plot.

A family declares its plots in ``FamilySpec(plots=...)``: a zero-argument function
returning plot functions ``fn(TaskData) -> iterable of Plot`` (lazy, so matplotlib
is imported only when a report is built)::

    # my_family/plots.py
    from ctxbench.report.drawing import Plot, TaskData, new_figure, add_backend_legend

    def my_family_plots(data: TaskData):
        backends = data.backends()              # ranked by the task's score, best first
        if not backends:
            yield Plot.skip("My plot", "no backend reported metric X")
            return
        fig = new_figure(6, 3)
        ax = fig.add_subplot()
        ...                                     # colour each backend with data.colors[b]
        add_backend_legend(fig, data, backends)  # outside the axes, in ranked order
        yield Plot("My plot", fig, "what it shows, units, how to read it")

    PLOTS = (my_family_plots,)

    # my_family/__init__.py
    FamilySpec(..., plots=lambda: __import__("my_family.plots").plots.PLOTS)

A family with no plots gets :func:`headline_plot` (its headline metrics with 95%
CIs). A plot function that raises is reported in the page as a skipped plot with
the error, never as a broken report. Plots read only the results JSON (metrics,
tables, details) and skip with a note when what they need is missing.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

from .drawing import RC, Plot, PlotFn, TaskData, headline_plot


def family_plots(family_spec) -> Sequence[PlotFn]:
    """The plot functions a family declares (empty when it declares none)."""
    if family_spec is None or family_spec.plots is None:
        return ()
    return tuple(family_spec.plots())


def make_plots(data: TaskData, plot_fns: Sequence[PlotFn] = ()) -> list[Plot]:
    """Run ``plot_fns`` (the family's, or the headline plot when there are none)."""
    out: list[Plot] = []
    for fn in plot_fns or (headline_plot,):
        with matplotlib.rc_context(RC):
            try:
                out += list(fn(data))
            except Exception as exc:  # a broken plot is reported, the page still renders
                out.append(Plot.skip(getattr(fn, "__name__", "plot"),
                                     f"plot failed: {type(exc).__name__}: {exc}"))
    return out
