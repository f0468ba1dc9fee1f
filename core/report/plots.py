"""Matplotlib plots of the HTML report, one registered function per family.

Every plot is drawn with matplotlib's object API on the Agg canvas (no pyplot, no
GUI backend, no hand-written SVG) and embedded in the page as a base64 PNG. Names
coming from plugins, tasks or datasets are drawn as plain text: mathtext
(``$...$``) and TeX are switched off while a plot function runs, so a backend
called ``$x$`` or ``_hidden`` appears literally.

Adding plots for a family (the one documented step)::

    from ctxbench.report.plots import Plot, TaskData, plot_for, new_figure, add_backend_legend

    @plot_for("my_family")
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

The module defining it must be imported before the report is built (a family
module loaded by ctxbench's plugin manager is). A family with no registered plot
gets :func:`headline_plot` (its headline metrics with 95% CIs). A plot function
that raises is reported in the page as a skipped plot with the error, never as a
broken report. Plots for the five built-in families are below; each reads only
the results JSON (metrics, tables, details) and skips with a note in the page
when what it needs is missing.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..results import CellResult, MetricValue
from .colors import NEUTRAL, SIGNIFICANT, TRUE_SCORES

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

    def metric(self, backend: str, name: str) -> MetricValue | None:
        r = self._by_backend.get(backend)
        return None if r is None else r.metrics.get(name)

    def value(self, backend: str, name: str) -> float | None:
        m = self.metric(backend, name)
        return _finite(m.value) if m is not None else None

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
PLOTS: dict[str, list[PlotFn]] = {}


def plot_for(family: str) -> Callable[[PlotFn], PlotFn]:
    """Register ``fn(TaskData) -> iterable of Plot`` for a family (several allowed)."""
    def register(fn: PlotFn) -> PlotFn:
        fns = PLOTS.setdefault(family, [])
        if fn not in fns:
            fns.append(fn)
        return fn
    return register


def make_plots(data: TaskData) -> list[Plot]:
    """Run every plot registered for the task's family (or the headline plot)."""
    out: list[Plot] = []
    for fn in PLOTS.get(data.family) or [headline_plot]:
        with matplotlib.rc_context(RC):
            try:
                out += list(fn(data))
            except Exception as exc:  # a broken plot is reported, the page still renders
                out.append(Plot.skip(getattr(fn, "__name__", "plot"),
                                     f"plot failed: {type(exc).__name__}: {exc}"))
    return out


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg)."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="png", facecolor="white")
    return buf.getvalue()


# ----------------------------------------------------------------------------- helpers
def _finite(x) -> float | None:
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
    lo, hi = _finite(m.ci[0]), _finite(m.ci[1])
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
            v = _finite(m.value) if m is not None else None
            p = x[j] - 0.4 + width * (i + 0.5)
            if v is None:
                missing.append((b, g))
                ax.plot([p], [0], marker="x", color=NEUTRAL, markersize=4, linestyle="none")
                continue
            ci = _ci(m)
            pos.append(p)
            vals.append(v * scale)
            cis.append(None if ci is None else (ci[0] * scale, ci[1] * scale))
            ps.append(_finite(m.p_value))
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


def _missing_note(missing: list[tuple[str, str]], what: str) -> str:
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
               "CI error bars." + _missing_note(missing, "these backend/metric pairs"))


# ----------------------------------------------------------------------------- context_retrieval
CR_PATTERNS = ("no_ctx", "query_ctx", "image_ctx", "both_ctx")
_CR_RECALL = re.compile(r"^(?P<level>[^/]+)/(?P<pattern>[^/]+)/R@1$")
_CR_DIFF = re.compile(r"^(?P<level>[^/]+)/(?P<pattern>[^/]+)-no_ctx/R@1$")


def _ordered(found: Iterable[str], preferred: tuple[str, ...]) -> list[str]:
    found = set(found)
    return [p for p in preferred if p in found] + sorted(found - set(preferred))


def _parse(names: Iterable[str], rx: re.Pattern) -> tuple[list[str], list[str]]:
    levels, patterns = set(), set()
    for name in names:
        m = rx.match(name)
        if m and not m.group("pattern").endswith("-no_ctx"):
            levels.add(m.group("level"))
            patterns.add(m.group("pattern"))
    return sorted(levels), _ordered(patterns, CR_PATTERNS)


def _panels(fig, n: int):
    cols = 2 if n > 1 else 1
    rows = math.ceil(n / cols)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return axes[:n]


@plot_for("context_retrieval")
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
                   + _missing_note(missing, "these backend/pattern/levels (n/a: the backend takes "
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
               + _missing_note(missing, "these backend/pattern/levels"))


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


def _grid(fig, n: int, cols: int):
    rows = math.ceil(n / cols)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return axes[:n]


def _row_metric(row: dict, key: str) -> MetricValue | None:
    v = _finite(row.get(key)) if isinstance(row.get(key), (int, float)) else None
    return None if v is None else MetricValue(v)


MAX_SMALL_MULTIPLES = 12


def _capped(backends: list[str]) -> tuple[list[str], str]:
    if len(backends) <= MAX_SMALL_MULTIPLES:
        return backends, ""
    return backends[:MAX_SMALL_MULTIPLES], (f" Showing the {MAX_SMALL_MULTIPLES} best of "
                                            f"{len(backends)} backends; the tables list all.")


# ----------------------------------------------------------------------------- metadata_sentiment
MS_PROTOCOLS = ("zero_shot", "image_probe", "fusion_probe")


@plot_for("metadata_sentiment")
def metadata_sentiment_plots(data: TaskData) -> Iterator[Plot]:
    names = data.metric_names()
    backends = data.backends()
    protocols = _ordered({n.split("/")[0] for n in names if n.endswith("/accuracy")
                          and n.split("/")[0] != "fusion_gain"}, MS_PROTOCOLS)
    title = "Accuracy and F1 per protocol"
    if not protocols:
        yield Plot.skip(title, "no <protocol>/accuracy metric in the results")
    else:
        kinds = [m for m in ("accuracy", "macro_f1", "weighted_f1") if any(n.endswith("/" + m) for n in names)]
        fig = new_figure(3.3 * len(kinds) + 2.8, max(3.0, legend_height(len(backends))))
        missing = []
        for ax, m in zip(_grid(fig, len(kinds), len(kinds)), kinds):
            missing += grouped_bars(ax, data, backends, protocols,
                                    lambda b, g, m=m: data.metric(b, f"{g}/{m}"), scale=100)
            ax.set_title(m.replace("_", " "))
            ax.set_xlabel("protocol")
            ax.set_ylabel(f"{m.replace('_', ' ')} (%)")
            ax.set_ylim(0, 102)
            ax.tick_params(axis="x", labelrotation=15)
        add_backend_legend(fig, data, backends)
        yield Plot(title, fig, "Test-split accuracy and F1 (%) per protocol, 95% bootstrap CIs over "
                   "test items." + _missing_note(missing, "these backend/protocols"))
    yield from _ms_confusion(data, backends)
    yield from _ms_relevance(data, backends)


def _confusions(r: CellResult) -> dict[str, Any]:
    for key in ("confusion", "confusion_matrix", "confusion_matrices"):
        c = r.details.get(key)
        if isinstance(c, dict) and c:
            return c
        if isinstance(c, list) and c:
            return {"": c}
    return {}


def _ms_confusion(data: TaskData, backends: list[str]) -> Iterator[Plot]:
    title = "Confusion matrix"
    have = [b for b in backends if _confusions(data.result(b))]
    if not have:
        yield Plot.skip(title, "the results hold no confusion matrix (expected in details['confusion'] "
                        "as {protocol: K x K counts, rows = true class, columns = predicted})")
        return
    shown, cap = _capped(have)
    cols = min(len(shown), 4)
    rows = math.ceil(len(shown) / cols)
    k = max(len(data.result(b).details.get("classes") or ()) for b in shown)
    side = max(3.0, 0.36 * k + 1.4)
    fig = new_figure(side * cols + 1.0, side * rows + 0.3)
    axes = _grid(fig, len(shown), cols)
    used = set()
    for ax, b in zip(axes, shown):
        r = data.result(b)
        conf = _confusions(r)
        proto = next((p for p in ("fusion_probe", "image_probe", "zero_shot") if p in conf), next(iter(conf)))
        used.add(proto)
        counts = np.asarray(conf[proto], dtype=float)
        classes = list(r.details.get("classes") or range(counts.shape[0]))
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = 100 * counts / counts.sum(1, keepdims=True)
        im = heatmap(fig, ax, rate, [str(c) for c in classes], [str(c) for c in classes], vmin=0,
                     vmax=100, cmap="Blues", label="", annotate=len(classes) <= 10, colorbar=False)
        ax.set_title(short(f"{b} · {proto}", 40) if proto else short(b, 40))
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    fig.colorbar(im, ax=list(axes), label="share of the true class (%)", shrink=0.8)
    yield Plot(title, fig, "Rows: true class, columns: predicted class, cells: % of the true "
               f"class's test items (rows sum to 100), for protocol {', '.join(sorted(used))}." + cap)


def _ms_relevance(data: TaskData, backends: list[str]) -> Iterator[Plot]:
    title = "Learned relevance of each metadata field"
    rows_of = {b: [row for row in data.result(b).tables.get("field relevance") or [] if isinstance(row, dict)]
               for b in backends}
    have = [b for b in backends if rows_of[b]]
    if not have:
        yield Plot.skip(title, "no 'field relevance' table (the fusion probe did not run, or the "
                        "dataset has no metadata)")
        return
    sources: list[str] = []
    for b in have:
        sources += [str(row.get("source")) for row in rows_of[b] if str(row.get("source")) not in sources]
    lookup = {b: {str(row.get("source")): row for row in rows_of[b]} for b in have}
    fig = new_figure(max(6.0, 1.2 * len(sources) + 3.5), max(3.2, legend_height(len(have))))
    ax = fig.add_subplot()
    missing = grouped_bars(ax, data, have, sources,
                           lambda b, g: _row_metric(lookup[b].get(g, {}), "relevance"))
    uniform = Line2D([], [], color=NEUTRAL, linestyle="--", linewidth=1)
    for j, s in enumerate(sources):
        shares = [lookup[b][s]["uniform_share"] for b in have
                  if isinstance(lookup[b].get(s, {}).get("uniform_share"), (int, float))]
        if shares:
            ax.hlines(float(np.mean(shares)), j - 0.45, j + 0.45, colors=NEUTRAL, linestyles="--",
                      linewidth=1)
    ax.set_xlabel("source (image and metadata fields)")
    ax.set_ylabel("learned relevance (mean gate, 0-1)")
    ax.set_ylim(0, 1.02)
    add_backend_legend(fig, data, have, extra=[(uniform, "uniform gate share")])
    yield Plot(title, fig, "Mean relevance gate of each source over the test items where it is "
               "present (fusion probe); the dashed line is the share a uniform gate would give. A "
               "field below it is down-weighted." + _missing_note(missing, "these backend/fields"))


# ----------------------------------------------------------------------------- domain_adaptation
DA_PROTOCOLS = ("zero_shot", "source_only", "adapt")
_DA = re.compile(r"^(?P<s>[^/]+)->(?P<t>[^/]+)/(?P<proto>[^/]+)/(?P<m>[^/]+)$")


def _da_structure(data: TaskData):
    pairs, protos, domains = [], set(), []
    for name in data.metric_names():
        m = _DA.match(name)
        if not m:
            continue
        pair = (m.group("s"), m.group("t"))
        if pair not in pairs:
            pairs.append(pair)
        protos.add(m.group("proto"))
        domains += [d for d in pair if d not in domains]
    return pairs, _ordered(protos, DA_PROTOCOLS), domains


@plot_for("domain_adaptation")
def domain_adaptation_plots(data: TaskData) -> Iterator[Plot]:
    pairs, protos, domains = _da_structure(data)
    backends = data.backends()
    if not pairs:
        yield Plot.skip("Source x target accuracy", "no metric named <source>-><target>/<protocol>/top1")
        return
    sources = list(dict.fromkeys(s for s, _ in pairs))
    shown, cap = _capped(backends)
    # one protocol's matrices (source_only shows the shift itself; zero_shot does not
    # depend on the source); every protocol is in the drop plot and the tables
    for proto in [next(p for p in ("source_only", "adapt", *protos) if p in protos)]:
        title = f"Source x target top-1 accuracy ({proto})"
        cols = min(len(shown), 4)
        rows = math.ceil(len(shown) / cols)
        side = 0.45 * len(domains) + 1.4
        fig = new_figure(max(side, 2.6) * cols + 1.2, max(side, 2.4) * rows + 0.3)
        axes = _grid(fig, len(shown), cols)
        for ax, b in zip(axes, shown):
            mat = np.full((len(sources), len(domains)), np.nan)
            for i, s in enumerate(sources):
                for j, t in enumerate(domains):
                    if s == t:
                        if proto == "adapt":
                            continue
                        v = next((data.value(b, f"{s}->{t2}/{proto}/source_top1") for s2, t2 in pairs
                                  if s2 == s and data.value(b, f"{s}->{t2}/{proto}/source_top1") is not None),
                                 None)
                    else:
                        v = data.value(b, f"{s}->{t}/{proto}/top1")
                    if v is not None:
                        mat[i, j] = 100 * v
            im = heatmap(fig, ax, mat, sources, domains, vmin=0, vmax=100, cmap="viridis", label="",
                         annotate=len(domains) <= 8, colorbar=False)
            ax.set_title(short(b, 34))
            ax.set_xlabel("target domain (test)")
            ax.set_ylabel("source domain (train)")
        fig.colorbar(im, ax=list(axes), label="top-1 accuracy (%)", shrink=0.8)
        diag = ("the diagonal is left empty (the adapted model depends on the pair)" if proto == "adapt"
                else "the diagonal is the in-domain accuracy on the source's own test split")
        others = [p for p in protos if p != proto]
        yield Plot(title, fig, f"Top-1 accuracy (%) on the target test split of the {proto} model "
                   f"trained on each source; {diag}; grey: pair not evaluated."
                   + (f" Protocols {', '.join(others)}: see the drop plot and the tables." if others else "")
                   + cap)

    title = "Accuracy drop per pair (source - target)"
    drop_protos = [p for p in protos if any(data.metric(b, f"{s}->{t}/{p}/drop") for b in backends
                                            for s, t in pairs)]
    if not drop_protos:
        yield Plot.skip(title, "no <source>-><target>/<protocol>/drop metric in the results")
        return
    labels = [f"{s}→{t}" for s, t in pairs]
    fig = new_figure(max(7.0, 0.06 * len(pairs) * len(backends) + 0.5 * len(pairs) + 3.5),
                     max(2.5 * len(drop_protos) + 0.3, legend_height(len(backends))))
    missing = []
    for ax, proto in zip(_grid(fig, len(drop_protos), 1), drop_protos):
        missing += [(b, f"{proto} {g}") for b, g in grouped_bars(
            ax, data, backends, [f"{s}->{t}" for s, t in pairs],
            lambda b, g, p=proto: data.metric(b, f"{g}/{p}/drop"), scale=100, group_labels=labels)]
        ax.axhline(0, color=NEUTRAL, linewidth=0.8)
        ax.set_title(f"protocol: {proto}")
        ax.set_ylabel("drop (percentage points)")
        ax.set_xlabel("source → target pair")
        if len(pairs) > 3:
            ax.tick_params(axis="x", labelrotation=25)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
    add_backend_legend(fig, data, backends)
    yield Plot(title, fig, "Source-test top-1 minus target-test top-1 of the same model, in "
               "percentage points, with 95% bootstrap CIs; above zero the model loses accuracy "
               "under the shift." + _missing_note(missing, "these backend/pairs"))


# ----------------------------------------------------------------------------- aesthetics
AE_KINDS = ("tag_aware", "image_only", "zero_shot")


def _hist_range(details: dict, n_bins: int) -> tuple[float, float]:
    rng = details.get("hist_range")
    if isinstance(rng, (list, tuple)) and len(rng) == 2:
        return float(rng[0]), float(rng[1])
    text = str((details.get("definitions") or {}).get("KL", ""))
    m = re.search(r"edges \[([^\]]*)\]", text)
    if m:
        nums = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", m.group(1))]
        if len(nums) >= 2:
            return nums[0], nums[-1]
    return 0.5, 0.5 + n_bins


@plot_for("aesthetics")
def aesthetics_plots(data: TaskData) -> Iterator[Plot]:
    backends = data.backends()
    if any("param_name" in r.details for r in data.results):
        yield from _ae_sweep(data, backends)
        return
    yield from _ae_histograms(data, backends)
    yield from _ae_scatter(data, backends)
    yield from _ae_tags(data, backends)


def _ae_histograms(data: TaskData, backends: list[str]) -> Iterator[Plot]:
    title = "Predicted vs true score distribution"
    have = [b for b in backends if data.result(b).details.get("predicted_histograms")
            and data.result(b).details.get("true_histogram")]
    if not have:
        yield Plot.skip(title, "no details['predicted_histograms'] / details['true_histogram'] in the "
                        "results (no probe on the MOS scale ran)")
        return
    kinds = _ordered({k for b in have for k in data.result(b).details["predicted_histograms"]}, AE_KINDS)
    first = data.result(have[0]).details
    true = np.asarray(first["true_histogram"], dtype=float)
    lo, hi = _hist_range(first, len(true))
    centres = lo + (np.arange(len(true)) + 0.5) * (hi - lo) / len(true)
    width = (hi - lo) / len(true)
    fig = new_figure(4.2 * len(kinds) + 2.8, max(3.2, legend_height(len(have))))
    for ax, kind in zip(_grid(fig, len(kinds), len(kinds)), kinds):
        ax.bar(centres, true, width * 0.95, color=TRUE_SCORES, label="true MOS", gid="true")
        for b in have:
            h = data.result(b).details["predicted_histograms"].get(kind)
            if h is not None and len(h) == len(true):
                ax.step(centres, np.asarray(h, dtype=float), where="mid", color=data.colors[b],
                        linewidth=1.4, label=b)
        ax.set_title(f"probe: {kind}")
        ax.set_xlabel("score (MOS scale)")
        ax.set_ylabel("fraction of test images")
        ax.set_xlim(lo, hi)
    true_patch = Patch(facecolor=TRUE_SCORES, edgecolor="none")
    add_backend_legend(fig, data, have, extra=[(true_patch, "true MOS")])
    yield Plot(title, fig, f"Histogram of predicted scores (lines, one per backend) over the test "
               f"images against the histogram of true MOS (grey bars), {len(true)} bins over "
               f"[{lo:g}, {hi:g}]; the KL and EMD metrics compare exactly these histograms.")


def _predictions(r: CellResult) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    d = r.details.get("predictions") or r.details.get("test_predictions")
    if not isinstance(d, dict):
        return None, {}
    true = d.get("mos", d.get("true"))
    if not isinstance(true, list):
        return None, {}
    true = np.asarray(true, dtype=float)
    preds = {k: np.asarray(v, dtype=float) for k, v in d.items()
             if k not in ("mos", "true") and isinstance(v, list) and len(v) == len(true)}
    return true, preds


def _ae_scatter(data: TaskData, backends: list[str]) -> Iterator[Plot]:
    title = "Predicted score vs MOS"
    have = [b for b in backends if _predictions(data.result(b))[1]]
    if not have:
        yield Plot.skip(title, "the results hold no per-image predictions (expected in "
                        "details['predictions'] as {'mos': [...], '<probe>': [...]})")
        return
    shown, cap = _capped(have)
    cols = min(len(shown), 4)
    rows = math.ceil(len(shown) / cols)
    fig = new_figure(3.0 * cols + 0.4, 2.9 * rows + 0.3)
    used = set()
    for ax, b in zip(_grid(fig, len(shown), cols), shown):
        true, preds = _predictions(data.result(b))
        kind = next((k for k in AE_KINDS if k in preds), next(iter(preds)))
        used.add(kind)
        pred = preds[kind]
        ax.scatter(true, pred, s=6, alpha=0.6, color=data.colors[b], edgecolors="none")
        lims = [float(np.nanmin([true.min(), pred.min()])), float(np.nanmax([true.max(), pred.max()]))]
        ax.plot(lims, lims, color=NEUTRAL, linestyle="--", linewidth=0.8)
        lcc, srcc = data.value(b, f"{kind}/LCC"), data.value(b, f"{kind}/SRCC")
        label = "LCC " + ("n/a" if lcc is None else f"{lcc:.3f}") + ", SRCC " + \
                ("n/a" if srcc is None else f"{srcc:.3f}")
        ax.legend([Line2D([], [], marker="o", linestyle="none", color=data.colors[b])], [label],
                  loc="upper left", fontsize=7, frameon=False, handletextpad=0.2)
        ax.set_title(short(f"{b} · {kind}", 40))
        ax.set_xlabel("true MOS (1-10)")
        ax.set_ylabel("predicted score (MOS scale)")
    yield Plot(title, fig, "One point per test image; the dashed line is perfect agreement; LCC "
               f"(Pearson) and SRCC (Spearman) of probe {', '.join(sorted(used))} in each legend." + cap)


def _ae_tags(data: TaskData, backends: list[str]) -> Iterator[Plot]:
    title = "SRCC per tag"
    rows_of = {b: [r for r in data.result(b).tables.get("per_tag") or [] if isinstance(r, dict)]
               for b in backends}
    have = [b for b in backends if rows_of[b]]
    kinds = _ordered({k.split("/")[0] for b in have for row in rows_of[b] for k in row
                      if k.endswith("/SRCC")}, AE_KINDS)
    if not have or not kinds:
        yield Plot.skip(title, "no 'per_tag' table with <probe>/SRCC columns (no tag has enough "
                        "test images)")
        return
    kind = kinds[0]
    tags: list[str] = []
    for b in have:
        tags += [str(row.get("tag")) for row in rows_of[b] if str(row.get("tag")) not in tags]
    lookup = {b: {str(row.get("tag")): row for row in rows_of[b]} for b in have}
    if len(tags) * len(have) <= 160:
        fig = new_figure(max(6.5, 0.05 * len(tags) * len(have) + 0.35 * len(tags) + 3.5),
                         max(3.2, legend_height(len(have))))
        ax = fig.add_subplot()
        missing = grouped_bars(ax, data, have, tags,
                               lambda b, g: _row_metric(lookup[b].get(g, {}), f"{kind}/SRCC"))
        ax.axhline(0, color=NEUTRAL, linewidth=0.8)
        ax.set_ylim(-1.02, 1.02)
        ax.set_xlabel("tag")
        ax.set_ylabel("SRCC (Spearman ρ, -1 to 1)")
        ax.set_title(f"probe: {kind}")
        ax.tick_params(axis="x", labelrotation=30 if len(tags) > 6 else 0)
        add_backend_legend(fig, data, have)
        note = _missing_note(missing, "these backend/tags")
    else:
        mat = np.array([[_finite(lookup[b].get(t, {}).get(f"{kind}/SRCC")) if isinstance(
            lookup[b].get(t, {}).get(f"{kind}/SRCC"), (int, float)) else np.nan for t in tags]
            for b in have], dtype=float)
        fig = new_figure(min(0.28 * len(tags) + 4.0, 24), 0.26 * len(have) + 2.2)
        ax = fig.add_subplot()
        heatmap(fig, ax, mat, have, tags, vmin=-1, vmax=1, cmap="RdBu_r", label="SRCC (Spearman ρ)",
                annotate=False)
        for lab, b in zip(ax.get_yticklabels(), have):
            lab.set_color(data.colors[b])
        ax.set_xlabel("tag")
        ax.set_ylabel("backend (best first)")
        note = ""
    yield Plot(title, fig, f"Spearman correlation between the {kind} probe's score and MOS on "
               f"the test images of each tag (tags with enough test images)." + note)


def _ae_sweep(data: TaskData, backends: list[str]) -> Iterator[Plot]:
    title = "Score against the swept parameter"
    rows_of = {b: [r for r in data.result(b).tables.get("score_by_param") or [] if isinstance(r, dict)]
               for b in backends}
    have = [b for b in backends if rows_of[b]]
    param = next((data.result(b).details.get("param_name") for b in have), None)
    if not have or not param:
        yield Plot.skip(title, "no 'score_by_param' table in the results")
        return
    kinds = _ordered({k[:-5] for b in have for row in rows_of[b] for k in row if k.endswith("/mean")},
                     AE_KINDS)
    fig = new_figure(3.8 * len(kinds) + 2.8, max(3.0, legend_height(len(have))))
    for ax, kind in zip(_grid(fig, len(kinds), len(kinds)), kinds):
        for b in have:
            pts = sorted((float(r[param]), float(r[f"{kind}/mean"]), float(r.get(f"{kind}/std") or 0.0))
                         for r in rows_of[b] if isinstance(r.get(param), (int, float))
                         and isinstance(r.get(f"{kind}/mean"), (int, float)))
            if not pts:
                continue
            x, y, s = (np.array(v) for v in zip(*pts))
            ax.plot(x, y, marker="o", markersize=3, color=data.colors[b], linewidth=1.3)
            ax.fill_between(x, y - s, y + s, color=data.colors[b], alpha=0.12, linewidth=0)
        ax.set_title(f"scorer: {kind}")
        ax.set_xlabel(f"{param} (swept parameter)")
        ax.set_ylabel("mean score (scorer units)")
    add_backend_legend(fig, data, have)
    yield Plot(title, fig, f"Mean score of the images at each value of {param} (band: ± 1 std over "
               "the images); the agreement metric is the Spearman correlation with the expected sign.")


# ----------------------------------------------------------------------------- multi_instance_retrieval
MIR_DIRECTIONS = {"v2t": "video → text", "t2v": "text → video", "avg": "average",
                  "mean": "average", "average": "average"}
MIR_METRICS = {"map": "mAP", "ndcg": "nDCG"}


def _mir_parse(name: str):
    """(variant, metric, direction) of a metric name made of '/'- or '_'-separated
    tokens, one of which is mAP / nDCG and one a direction (v2t, t2v, avg), as the
    family writes them (``map_v2t``, ``ndcg_avg``); else None."""
    tokens = re.split(r"[/_]", name)
    metric = next((t for t in tokens if t.lower() in MIR_METRICS), None)
    direction = next((t for t in tokens if t.lower() in MIR_DIRECTIONS), None)
    if metric is None or direction is None:
        return None
    rest = "/".join(t for t in tokens if t not in (metric, direction))
    return rest, MIR_METRICS[metric.lower()], direction


@plot_for("multi_instance_retrieval")
def multi_instance_retrieval_plots(data: TaskData) -> Iterator[Plot]:
    found: dict[str, dict[str, dict[str, str]]] = {}   # variant -> metric -> direction -> name
    for name in data.metric_names():
        parsed = _mir_parse(name)
        if parsed:
            variant, metric, direction = parsed
            found.setdefault(variant, {}).setdefault(metric, {})[direction] = name
    backends = data.backends()
    title = "mAP and nDCG per direction"
    if not found:
        yield Plot.skip(title, "no metric with an mAP/nDCG token and a direction token (v2t, t2v, "
                        "avg) in its name")
        return
    head = set(h for r in data.results for h in r.headline)
    variants = sorted(found, key=lambda v: (not any(n in head for m in found[v].values()
                                                    for n in m.values()), v))[:3]
    metrics = [m for m in ("mAP", "nDCG") if any(m in found[v] for v in variants)]
    values = [data.value(b, n) for v in variants for m in found[v].values() for n in m.values()
              for b in backends]
    scale = 100.0 if all(v is None or abs(v) <= 1.0 for v in values) else 1.0
    fig = new_figure(3.8 * len(metrics) + 2.8, max(2.7 * len(variants) + 0.3, legend_height(len(backends))))
    axes = fig.subplots(len(variants), len(metrics), squeeze=False)
    missing = []
    for i, v in enumerate(variants):
        for j, m in enumerate(metrics):
            ax = axes[i, j]
            dirs = found[v].get(m, {})
            order = sorted(dirs, key=lambda d: (list(MIR_DIRECTIONS).index(d.lower())
                                                if d.lower() in MIR_DIRECTIONS else 99, d))
            if not order:
                ax.set_visible(False)
                continue
            missing += [(b, f"{m} {g}") for b, g in grouped_bars(
                ax, data, backends, order, lambda b, g, dirs=dirs: data.metric(b, dirs[g]), scale=scale,
                group_labels=[MIR_DIRECTIONS.get(d.lower(), d) for d in order])]
            ax.set_title(f"{m}" + (f" · {v}" if v else ""))
            ax.set_xlabel("retrieval direction")
            ax.set_ylabel(f"{m} (%)" if scale == 100 else m)
    add_backend_legend(fig, data, backends)
    yield Plot(title, fig, "mAP and nDCG (official EPIC-KITCHENS-100 MIR definitions) per "
               "retrieval direction and their average, with 95% CIs where reported."
               + _missing_note(missing, "these backend/metrics"))
