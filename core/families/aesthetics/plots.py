"""Report plots for the aesthetics family (declared in the family's FamilySpec)."""

from __future__ import annotations

import re
from typing import Iterator

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ...results import CellResult
from ...report.colors import NEUTRAL, TRUE_SCORES
from ...report.drawing import (small_multiples, Plot, TaskData, add_backend_legend, finite, grid, grouped_bars, heatmap,
                    legend_height, missing_note, new_figure, ordered, row_metric, short)


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
    kinds = ordered({k for b in have for k in data.result(b).details["predicted_histograms"]}, AE_KINDS)
    first = data.result(have[0]).details
    true = np.asarray(first["true_histogram"], dtype=float)
    lo, hi = _hist_range(first, len(true))
    centres = lo + (np.arange(len(true)) + 0.5) * (hi - lo) / len(true)
    width = (hi - lo) / len(true)
    fig = new_figure(4.2 * len(kinds) + 2.8, max(3.2, legend_height(len(have))))
    for ax, kind in zip(grid(fig, len(kinds), len(kinds)), kinds):
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
    shown, cap, cols, rows = small_multiples(have)
    fig = new_figure(3.0 * cols + 0.4, 2.9 * rows + 0.3)
    used = set()
    for ax, b in zip(grid(fig, len(shown), cols), shown):
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


def _tilt_crowded_labels(ax, labels: list[str], axes_inches: float) -> None:
    """Tick labels that would touch side by side (about 0.085 in per character at the
    report's font size) are tilted 40 degrees and anchored at their right end, so each
    ends under its own group instead of running into the next one."""
    per_group = axes_inches / max(len(labels), 1)
    if max((len(t) for t in labels), default=0) * 0.085 + 0.1 > per_group:
        for lab in ax.get_xticklabels():
            lab.set_rotation(40)
            lab.set_horizontalalignment("right")
            lab.set_rotation_mode("anchor")


def _ae_tags(data: TaskData, backends: list[str]) -> Iterator[Plot]:
    title = "SRCC per tag"
    rows_of = data.table_rows("per_tag", backends)
    have = [b for b in backends if rows_of[b]]
    kinds = ordered({k.split("/")[0] for b in have for row in rows_of[b] for k in row
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
                               lambda b, g: row_metric(lookup[b].get(g, {}), f"{kind}/SRCC"))
        ax.axhline(0, color=NEUTRAL, linewidth=0.8)
        ax.set_ylim(-1.02, 1.02)
        ax.set_xlabel("tag")
        ax.set_ylabel("SRCC (Spearman ρ, -1 to 1)")
        ax.set_title(f"probe: {kind}")
        _tilt_crowded_labels(ax, tags, fig.get_figwidth() - legend_height(0) - 2.5)
        add_backend_legend(fig, data, have)
        note = missing_note(missing, "these backend/tags")
    else:
        mat = np.array([[finite(lookup[b].get(t, {}).get(f"{kind}/SRCC")) if isinstance(
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
    rows_of = data.table_rows("score_by_param", backends)
    have = [b for b in backends if rows_of[b]]
    param = next((data.result(b).details.get("param_name") for b in have), None)
    if not have or not param:
        yield Plot.skip(title, "no 'score_by_param' table in the results")
        return
    kinds = ordered({k[:-5] for b in have for row in rows_of[b] for k in row if k.endswith("/mean")},
                     AE_KINDS)
    fig = new_figure(3.8 * len(kinds) + 2.8, max(3.0, legend_height(len(have))))
    for ax, kind in zip(grid(fig, len(kinds), len(kinds)), kinds):
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


PLOTS = (aesthetics_plots,)
