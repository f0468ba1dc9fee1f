"""Report plots for the metadata_sentiment family (declared in the family's FamilySpec)."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
from matplotlib.lines import Line2D

from ...results import CellResult
from ...report.colors import NEUTRAL
from ...report.drawing import (small_multiples, Plot, TaskData, add_backend_legend, grid, grouped_bars, heatmap, legend_height,
                    missing_note, new_figure, ordered, row_metric, short)


MS_PROTOCOLS = ("zero_shot", "image_probe", "fusion_probe")


def metadata_sentiment_plots(data: TaskData) -> Iterator[Plot]:
    names = data.metric_names()
    backends = data.backends()
    protocols = ordered({n.split("/")[0] for n in names if n.endswith("/accuracy")
                          and n.split("/")[0] != "fusion_gain"}, MS_PROTOCOLS)
    title = "Accuracy and F1 per protocol"
    if not protocols:
        yield Plot.skip(title, "no <protocol>/accuracy metric in the results")
    else:
        kinds = [m for m in ("accuracy", "macro_F1", "weighted_F1", "F1_positive")
                 if any(n.endswith("/" + m) for n in names)]
        fig = new_figure(3.3 * len(kinds) + 2.8, max(3.0, legend_height(len(backends))))
        missing = []
        for ax, m in zip(grid(fig, len(kinds), len(kinds)), kinds):
            missing += grouped_bars(ax, data, backends, protocols,
                                    lambda b, g, m=m: data.metric(b, f"{g}/{m}"), scale=100)
            ax.set_title(m.replace("_", " "))
            ax.set_xlabel("protocol")
            ax.set_ylabel(f"{m.replace('_', ' ')} (%)")
            ax.set_ylim(0, 102)
            ax.tick_params(axis="x", labelrotation=15)
        add_backend_legend(fig, data, backends)
        yield Plot(title, fig, "Test-split accuracy and F1 (%) per protocol, 95% bootstrap CIs over "
                   "test items." + missing_note(missing, "these backend/protocols"))
    yield from _ms_confusion(data, backends)
    yield from _ms_contribution(data, backends)
    yield from _ms_gates(data, backends)


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
    shown, cap, cols, rows = small_multiples(have)
    k = max(len(data.result(b).details.get("classes") or ()) for b in shown)
    side = max(3.0, 0.36 * k + 1.4)
    fig = new_figure(side * cols + 1.4, side * rows + 0.3)
    axes = grid(fig, len(shown), cols)
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
    # the bar's label is drawn inside the figure by constrained layout only when it
    # is part of the colour bar's own axes: set it there, and leave room on the right
    bar = fig.colorbar(im, ax=list(axes), shrink=0.8, pad=0.02)
    bar.set_label("share of the true class (%)", labelpad=6)
    bar.ax.yaxis.set_label_position("right")
    yield Plot(title, fig, "Rows: true class, columns: predicted class, cells: % of the true "
               f"class's test items (rows sum to 100), for protocol {', '.join(sorted(used))}." + cap)


def _field_rows(data: TaskData, backends: list[str]) -> tuple[list[str], dict[str, dict[str, dict]]]:
    """Backends with a "field contribution" table: their field names (in order) and
    backend -> field -> row."""
    rows_of = data.table_rows("field contribution", backends)
    have = [b for b in backends if rows_of[b]]
    sources: list[str] = []
    for b in have:
        sources += [str(row.get("source")) for row in rows_of[b] if str(row.get("source")) not in sources]
    return sources, {b: {str(row.get("source")): row for row in rows_of[b]} for b in have}


def _field_bars(data: TaskData, backends: list[str], title: str, value, **bar_options):
    """One bar group per metadata field, one bar per backend with a "field contribution"
    table (``value(backend, field, lookup)`` gives the MetricValue): returns (figure,
    axes, fields, lookup, backends drawn, missing), or a skipped Plot when no backend
    has the table."""
    sources, lookup = _field_rows(data, backends)
    if not lookup:
        return Plot.skip(title, "no 'field contribution' table (the fusion probe did not run, or "
                         "the dataset has no metadata)")
    have = list(lookup)
    fig = new_figure(max(6.0, 1.2 * len(sources) + 3.5), max(3.2, legend_height(len(have))))
    ax = fig.add_subplot()
    missing = grouped_bars(ax, data, have, sources, lambda b, g: value(b, g, lookup), **bar_options)
    ax.set_xlabel("metadata field")
    return fig, ax, sources, lookup, have, missing


def _ms_contribution(data: TaskData, backends: list[str]) -> Iterator[Plot]:
    title = "Contribution of each metadata field"
    made = _field_bars(data, backends, title,
                       lambda b, g, _: data.metric(b, f"fusion_probe/contribution/{g}"),
                       significance=True, scale=100)
    if isinstance(made, Plot):
        yield made
        return
    fig, ax, sources, lookup, have, missing = made
    ax.axhline(0, color=NEUTRAL, linewidth=0.8)
    ax.set_ylabel("accuracy drop when masked (points)")
    add_backend_legend(fig, data, have)
    yield Plot(title, fig, "Fusion-probe test accuracy minus its accuracy with the field masked as "
               "absent on every test item (the trained model, no retraining), in accuracy points; "
               "95% paired-bootstrap CIs over test items, a star where p < 0.05. Near 0: the "
               "model does not use the field." + missing_note(missing, "these backend/fields"))


def _ms_gates(data: TaskData, backends: list[str]) -> Iterator[Plot]:
    title = "Learned gate of each metadata field"
    made = _field_bars(data, backends, title,
                       lambda b, g, lookup: row_metric(lookup[b].get(g, {}), "gate_mean"))
    if isinstance(made, Plot):
        yield made
        return
    fig, ax, sources, lookup, have, missing = made
    uniform = Line2D([], [], color=NEUTRAL, linestyle="--", linewidth=1)
    for j, s in enumerate(sources):
        shares = [lookup[b][s]["uniform_gate"] for b in have
                  if isinstance(lookup[b].get(s, {}).get("uniform_gate"), (int, float))]
        if shares:
            ax.hlines(float(np.mean(shares)), j - 0.45, j + 0.45, colors=NEUTRAL, linestyles="--",
                      linewidth=1)
    ax.set_ylabel("mean learned gate (0-1)")
    ax.set_ylim(0, 1.02)
    add_backend_legend(fig, data, have, extra=[(uniform, "uniform gate share")])
    yield Plot(title, fig, "Mean relevance gate of each field over the test items that have every "
               "field (fusion probe); the dashed line is the share a uniform gate would give. A gate "
               "is the weight the head puts on a field, not what the field contributes (see the "
               "contribution plot)." + missing_note(missing, "these backend/fields"))


PLOTS = (metadata_sentiment_plots,)
