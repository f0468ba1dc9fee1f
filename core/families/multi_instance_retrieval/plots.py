"""Report plots for the multi_instance_retrieval family (declared in the family's FamilySpec)."""

from __future__ import annotations

import re
from typing import Iterator


from ...report.drawing import (Plot, TaskData, add_backend_legend, grouped_bars, legend_height, missing_note, new_figure)


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
               + missing_note(missing, "these backend/metrics"))


PLOTS = (multi_instance_retrieval_plots,)
