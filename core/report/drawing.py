"""Shared drawing helpers for the report's matplotlib plots.

Every plot is drawn with matplotlib's object API on the Agg canvas (no pyplot, no
GUI backend, no hand-written SVG) and embedded in the page as a base64 PNG. Names
coming from plugins, tasks or datasets are drawn as plain text: mathtext
(``$...$``) and TeX are switched off while a plot function runs (:data:`RC`), so a
backend called ``$x$`` or ``_hidden`` appears literally.

A family's plots live in its own package (``families/<family>/plots.py``) and are
declared in its ``FamilySpec(plots=...)``; see :mod:`ctxbench.report.plots`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..results import CellResult, MetricValue
from .colors import NEUTRAL, SIGNIFICANT

RC: dict[str, Any] = {
    "text.parse_math": False,      # names are text, never mathtext
    "text.usetex": False,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.alpha": 0.3,
    "figure.dpi": 100,
    "savefig.dpi": 100,
}
LEGEND_LABEL_MAX = 36
ALPHA = 0.05


# ----------------------------------------------------------------------------- data model
@dataclass
class Plot:
    """A drawn figure with its caption, or (``figure is None``) a skipped plot and why."""

    title: str
    figure: Figure | None = None
    note: str = ""

    @classmethod
    def skip(cls, title: str, why: str) -> "Plot":
        return cls(title, None, why)

    @property
    def skipped(self) -> bool:
        return self.figure is None


@dataclass
class TaskData:
    """What a plot function sees: the task's successful cells and the report's colours."""

    task: str
    family: str
    results: list[CellResult]
    colors: dict[str, str]
    score_metric: str | None = None
    _by_backend: dict[str, CellResult] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        self.results = [r for r in self.results if r.status == "ok"]
        self._by_backend = {r.backend_label: r for r in self.results}
        if self.score_metric is None:
            self.score_metric = next((r.headline[0] for r in self.results if r.headline), None)

    def result(self, backend: str) -> CellResult | None:
        return self._by_backend.get(backend)

    def table_rows(self, name: str, backends: list[str]) -> dict[str, list[dict]]:
        """{backend: the row dicts of its family table ``name``} ([] where absent)."""
        out = {}
        for b in backends:
            r = self._by_backend.get(b)
            rows = (r.tables.get(name) or []) if r is not None else []
            out[b] = [row for row in rows if isinstance(row, dict)]
        return out

    def metric(self, backend: str, name: str) -> MetricValue | None:
        r = self._by_backend.get(backend)
        return None if r is None else r.metrics.get(name)

    def value(self, backend: str, name: str) -> float | None:
        m = self.metric(backend, name)
        return finite(m.value) if m is not None else None

    def metric_names(self) -> list[str]:
        names: list[str] = []
        for r in self.results:
            names += [n for n in r.metrics if n not in names]
        return names

    def score(self, backend: str) -> float | None:
        return self.value(backend, self.score_metric) if self.score_metric else None

    def backends(self, having: Callable[[CellResult], bool] | None = None) -> list[str]:
        """Backends with an ok result (and ``having(result)``), best score first;
        backends without a score last, then by name."""
        names = [r.backend_label for r in self.results if having is None or having(r)]

        def key(b):
            s = self.score(b)
            return (s is None, -(s or 0.0), b)
        return sorted(names, key=key)


PlotFn = Callable[[TaskData], Iterable[Plot]]


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg)."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="png", facecolor="white")
    return buf.getvalue()


# ----------------------------------------------------------------------------- helpers
def finite(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


MAX_WIDTH = 12.0   # inches: 1200 px at 100 dpi, the page column shows it unscaled


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on the Agg canvas, at most MAX_WIDTH wide."""
    fig = Figure(figsize=(min(width, MAX_WIDTH), height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def legend_height(n_backends: int) -> float:
    """Inches a one-column legend of n entries needs (a figure is at least this tall)."""
    return 0.6 + 0.19 * n_backends


def short(label: str, n: int = LEGEND_LABEL_MAX) -> str:
    label = str(label).replace("\n", " ")
    return label if len(label) <= n else label[: n - 1] + "…"


def add_backend_legend(fig: Figure, data: TaskData, backends: list[str], extra=()) -> None:
    """Legend outside the axes (right), one entry per backend in ranked order."""
    handles = [Patch(facecolor=data.colors[b], edgecolor="none") for b in backends]
    labels = [short(b) for b in backends]
    for handle, label in extra:
        handles.append(handle)
        labels.append(label)
    title = "backend"
    if data.score_metric and len(backends) > 1:
        title += f"\n(best first by {short(data.score_metric, 28)})"
    fig.legend(handles, labels, loc="outside right upper", title=title,
               ncols=1 if len(handles) <= 30 else 2, frameon=False)


def _errs(values, cis) -> np.ndarray:
    lo = [max(v - c[0], 0.0) if c else 0.0 for v, c in zip(values, cis)]
    hi = [max(c[1] - v, 0.0) if c else 0.0 for v, c in zip(values, cis)]
    return np.array([lo, hi])


def _ci(m: MetricValue | None):
    if m is None or m.ci is None:
        return None
    lo, hi = finite(m.ci[0]), finite(m.ci[1])
    return None if lo is None or hi is None else (lo, hi)


def grouped_bars(ax, data: TaskData, backends: list[str], groups: list[str],
                 get: Callable[[str, str], MetricValue | None], *, significance: bool = False,
                 group_labels: list[str] | None = None, scale: float = 1.0) -> list[tuple[str, str]]:
    """Bars per group (x) and backend (colour), 95% CI error bars; with
    ``significance`` a star beyond the CI of bars whose p-value is < 0.05 (filled: < 0.01).
    Values and CIs are multiplied by ``scale`` (100: fractions shown as %).
    Missing / n/a values are drawn as a grey x on the baseline and returned."""
    n = max(len(backends), 1)
    width = 0.8 / n
    x = np.arange(len(groups), dtype=float)
    missing: list[tuple[str, str]] = []
    span: list[float] = [0.0]
    stars: list[tuple[float, float, bool, float]] = []
    for i, b in enumerate(backends):
        pos, vals, cis, ps = [], [], [], []
        for j, g in enumerate(groups):
            m = get(b, g)
            v = finite(m.value) if m is not None else None
            p = x[j] - 0.4 + width * (i + 0.5)
            if v is None:
                missing.append((b, g))
                ax.plot([p], [0], marker="x", color=NEUTRAL, markersize=4, linestyle="none")
                continue
            ci = _ci(m)
            pos.append(p)
            vals.append(v * scale)
            cis.append(None if ci is None else (ci[0] * scale, ci[1] * scale))
            ps.append(finite(m.p_value))
            span += [v] + list(cis[-1] or ())
        if not pos:
            continue
        ax.bar(pos, vals, width * 0.92, color=data.colors[b], label=b,
               yerr=_errs(vals, cis) if any(cis) else None,
               error_kw={"elinewidth": 0.7, "capsize": 1.5 if n <= 10 else 0, "ecolor": NEUTRAL})
        if significance:
            for p, v, c, pv in zip(pos, vals, cis, ps):
                if pv is not None and pv < ALPHA:
                    up = v >= 0
                    stars.append((p, (c[1] if c else v) if up else (c[0] if c else v), up, pv))
    gap = 0.05 * (max(span) - min(span) or 1.0)
    for p, y, up, pv in stars:    # beyond the CI, in data units so autoscaling keeps them in view
        ax.plot([p], [y + gap if up else y - gap], linestyle="none", gid="significance",
                **significance_marker(pv, n))
    ax.set_xticks(x, group_labels or groups)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    return missing


def significance_marker(p_value: float, n_backends: int) -> dict:
    """A star above/below the bar: hollow for p < 0.05, filled for p < 0.01; smaller
    when bars are narrow (many backends) so neighbours' stars do not merge."""
    size = 6 if n_backends <= 8 else 4.5 if n_backends <= 14 else 3.5
    return {"marker": "*", "markersize": size, "markeredgewidth": 0.6, "markeredgecolor": SIGNIFICANT,
            "markerfacecolor": SIGNIFICANT if p_value < 0.01 else "white"}


def missing_note(missing: list[tuple[str, str]], what: str) -> str:
    """' Not available ... for <what>: b1 (g1, g2); b2 (g3).' (at most 6 backends named)."""
    if not missing:
        return ""
    by: dict[str, list[str]] = {}
    for b, g in missing:
        by.setdefault(b, []).append(g)
    shown = "; ".join(f"{b} ({', '.join(gs)})" for b, gs in list(by.items())[:6])
    more = f"; and {len(by) - 6} more backends" if len(by) > 6 else ""
    return f" Not available (x on the baseline) for {what}: {shown}{more}."


# ----------------------------------------------------------------------------- generic
def headline_plot(data: TaskData) -> Iterator[Plot]:
    """Any family without its own plot: each headline metric per backend, 95% CI."""
    heads: list[str] = []
    for r in data.results:
        heads += [h for h in r.headline if h not in heads]
    heads = heads[:8]
    backends = data.backends()
    if not heads or not backends:
        yield Plot.skip("Headline metrics", "no successful result with headline metrics")
        return
    cols = min(len(heads), 4)
    rows = math.ceil(len(heads) / cols)
    fig = new_figure(2.6 * cols + 2.6, max(2.2 * rows, legend_height(len(backends))))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    missing = []
    for ax, h in zip(axes, heads):
        missing += [(b, h) for b, _ in grouped_bars(ax, data, backends, [h],
                                                    lambda b, g: data.metric(b, g))]
        ax.set_xticks([])
        ax.set_title(short(h, 40))
        ax.set_ylabel("value (metric units)")
    for ax in axes[len(heads):]:
        ax.set_visible(False)
    add_backend_legend(fig, data, backends)
    yield Plot("Headline metrics", fig, "Each headline metric of the task per backend, with 95% "
               "CI error bars." + missing_note(missing, "these backend/metric pairs"))



def ordered(found: Iterable[str], preferred: tuple[str, ...]) -> list[str]:
    found = set(found)
    return [p for p in preferred if p in found] + sorted(found - set(preferred))



# ----------------------------------------------------------------------------- shared pieces
def heatmap(fig, ax, matrix: np.ndarray, rows: list[str], cols: list[str], *, vmin: float, vmax: float,
            cmap: str, label: str, annotate: bool = True, fmt: str = "{:.0f}", colorbar: bool = True):
    """A heatmap with NaN cells in light grey (marked n/a when annotated)."""
    cm = matplotlib.colormaps[cmap].with_extremes(bad="#e6e6e6")
    im = ax.imshow(np.ma.masked_invalid(matrix), cmap=cm, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), [short(c, 14) for c in cols], rotation=45 if len(cols) > 3 else 0,
                  ha="right" if len(cols) > 3 else "center")
    ax.set_yticks(range(len(rows)), [short(r, 18) for r in rows])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if annotate and matrix.size <= 144:
        for (i, j), v in np.ndenumerate(matrix):
            if np.isfinite(v):
                r, g, b, _ = cm(im.norm(v))
                colour = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7, color=colour)
            else:
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=6, color="#777777")
    if colorbar:
        fig.colorbar(im, ax=ax, label=label, shrink=0.9)
    return im


def grid(fig, n: int, cols: int):
    rows = math.ceil(n / cols)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return axes[:n]


def row_metric(row: dict, key: str) -> MetricValue | None:
    v = finite(row.get(key)) if isinstance(row.get(key), (int, float)) else None
    return None if v is None else MetricValue(v)


MAX_SMALL_MULTIPLES = 12


def small_multiples(backends: list[str], max_cols: int = 4) -> tuple[list[str], str, int, int]:
    """(backends shown, cap note, columns, rows) of a grid with one panel per backend."""
    shown, cap = capped(backends)
    cols = min(len(shown), max_cols)
    return shown, cap, cols, math.ceil(len(shown) / cols)


def capped(backends: list[str]) -> tuple[list[str], str]:
    if len(backends) <= MAX_SMALL_MULTIPLES:
        return backends, ""
    return backends[:MAX_SMALL_MULTIPLES], (f" Showing the {MAX_SMALL_MULTIPLES} best of "
                                            f"{len(backends)} backends; the tables list all.")
