"""HTML report (issue 9): plots per family, colours, escaping, missing/failed cells,
manifest, self-containment. The browser test is in test_report_browser.py.

``synthetic_results`` builds result cells for all five families in the shapes their
evaluators write (metric names, tables, details), for any number of backends, with
known values, so every plot can be checked against the numbers it was given.
"""

from __future__ import annotations

import base64
import io
import itertools
import math
import json
import re
import zlib
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from ctxbench.report import backend_colors, esc, render_html, write_report
from ctxbench.report.colors import PALETTE
from ctxbench.name_registry import Registry
from ctxbench.registrations import FamilySpec
from ctxbench.report.drawing import TaskData
from ctxbench.report.plots import family_plots
from ctxbench.report.plots import make_plots as _make_plots


def make_plots(data):
    """The plots the installed family declares for ``data.family`` (headline plot if none)."""
    from ctxbench.plugin_host import load_plugins
    families = load_plugins(entry_points=False).families
    spec = families.get(data.family) if data.family in families else None
    return _make_plots(data, family_plots(spec))
from ctxbench.results import CellResult, MetricValue, write_result

LEVELS = ("L1", "L2", "L3", "L4")
PATTERNS = ("no_ctx", "query_ctx", "image_ctx", "both_ctx")
DOMAINS = ("clipart", "photo", "sketch")
CLASSES = ("amusement", "anger", "awe", "sadness")
TAGS = ("forest", "ocean", "portrait", "still life", "night")
XSS = "<script>alert(1)</script>"


# ----------------------------------------------------------------------------- fixtures
def cell(task: str, family: str, backend: str, status: str = "ok", **kw) -> CellResult:
    return CellResult(cell_id=f"{task}-{zlib.crc32(backend.encode()):08x}", status=status, task=task,
                      task_hash="hash-" + task, task_version=1, family=family, backend=backend,
                      backend_args={}, backend_label=backend, fingerprint=f"{backend}:v1",
                      timestamp="2026-01-01T00:00:00+00:00", seed=0,
                      versions={"ctxbench": "0.1.0", "numpy": "2"}, **kw)


def mv(value, half=0.05, p=None):
    return MetricValue(float(value), (float(value - half), float(value + half)), 100, p)


def synthetic_results(backends: list[str], seed: int = 0, bad: bool = True) -> list[CellResult]:
    """One cell per (task, backend); with ``bad`` a failed, a skipped and a missing cell."""
    rng = np.random.default_rng(seed)
    skill = {b: float(s) for b, s in zip(backends, rng.uniform(0.3, 0.95, len(backends)))}
    out = []
    for i, b in enumerate(backends):
        s = skill[b]
        # context_retrieval; the first backend takes no context (n/a patterns)
        metrics, head = {}, []
        for li, level in enumerate(LEVELS):
            base = s * (1.0 - 0.2 * li)
            for pi, pat in enumerate(PATTERNS):
                if i == 0 and pat != "no_ctx":
                    metrics[f"{level}/{pat}/R@1"] = MetricValue.not_applicable("no context")
                    continue
                metrics[f"{level}/{pat}/R@1"] = mv(min(base + 0.05 * pi, 1.0))
                if pat != "no_ctx":
                    diff = 0.05 * pi if li % 2 == 0 else -0.01
                    metrics[f"{level}/{pat}-no_ctx/R@1"] = mv(diff, 0.02, 0.001 if li % 2 == 0 else 0.6)
        head = [f"{lv}/no_ctx/R@1" for lv in LEVELS] + [f"{lv}/image_ctx/R@1" for lv in LEVELS]
        out.append(cell("context_retrieval_synthetic", "context_retrieval", b, metrics=metrics,
                        headline=head, tables={"Recall@1 by pattern and level": [
                            {"pattern": p, **{lv: round(s, 3) for lv in LEVELS}} for p in PATTERNS]},
                        details={"pool_size": 40}, n=160, seconds=1.5))
        # metadata_sentiment
        metrics = {}
        for pi, proto in enumerate(("zero_shot", "image_probe", "fusion_probe")):
            for m in ("accuracy", "macro_F1", "weighted_F1"):
                metrics[f"{proto}/{m}"] = mv(s * (0.6 + 0.15 * pi))
        metrics["fusion_gain/accuracy"] = mv(0.15 * s, 0.03, 0.01)
        k = len(CLASSES)
        conf = (np.eye(k) * 20 * s + rng.integers(0, 5, (k, k))).round().astype(int).tolist()
        gates = rng.dirichlet(np.ones(3))
        fields = ("image", "caption", "scene_objects")
        for f, drop in zip(fields, rng.uniform(-0.02, 0.3, 3)):
            metrics[f"fusion_probe/contribution/{f}"] = mv(float(drop), 0.05, 0.02)
        out.append(cell("metadata_sentiment_synthetic", "metadata_sentiment", b, metrics=metrics,
                        headline=["image_probe/accuracy", "fusion_probe/accuracy"],
                        tables={"field contribution": [
                            {"source": src, "gate_mean": round(float(g), 4), "uniform_gate": 0.3333,
                             "coverage": 1.0} for src, g in zip(fields, gates)]},
                        details={"classes": list(CLASSES), "confusion": {"fusion_probe": conf}}, n=80))
        # domain_adaptation: every ordered pair of 3 domains
        metrics = {}
        for src, tgt in itertools.permutations(DOMAINS, 2):
            for pi, proto in enumerate(("zero_shot", "source_only", "adapt")):
                top1 = s * (0.5 + 0.1 * pi) * (0.9 if tgt == "sketch" else 1.0)
                src_top1 = s * 0.8
                metrics[f"{src}->{tgt}/{proto}/top1"] = mv(top1)
                metrics[f"{src}->{tgt}/{proto}/mpca"] = mv(top1 * 0.95)
                metrics[f"{src}->{tgt}/{proto}/source_top1"] = mv(src_top1)
                metrics[f"{src}->{tgt}/{proto}/drop"] = mv(src_top1 - top1, 0.02)
        for proto in ("zero_shot", "source_only", "adapt"):
            metrics[f"mean/{proto}/top1"] = mv(s * 0.6)
        if bad and i == 1:
            out.append(cell("domain_adaptation_synthetic", "domain_adaptation", b, status="failed",
                            error={"type": "RuntimeError", "message": "CUDA out of memory <b>here</b>",
                                   "traceback": "Traceback (most recent call last):\n  boom"}))
        else:
            out.append(cell("domain_adaptation_synthetic", "domain_adaptation", b, metrics=metrics,
                            headline=["mean/source_only/top1", "mean/adapt/top1"],
                            tables={"pairs": [{"source": "clipart", "target": "photo", "top1": s}]},
                            details={"pairs": [f"{a}->{c}" for a, c in itertools.permutations(DOMAINS, 2)]},
                            n=300))
        # aesthetics (quality)
        mos = rng.uniform(3, 8, 60)
        preds = {"tag_aware": (mos * s + rng.normal(0, 1 - s, 60) + 5 * (1 - s)).tolist(),
                 "image_only": (mos * s * 0.9 + 5 * (1 - s * 0.9)).tolist()}
        edges = np.arange(0.5, 11.0, 1.0)
        hist = lambda x: (np.histogram(np.clip(x, 0.5, 10.5), edges)[0] / len(x)).tolist()  # noqa: E731
        metrics = {f"{kind}/{m}": mv(s * 0.8) for kind in preds for m in ("LCC", "SRCC")}
        metrics.update({f"{kind}/Error": mv(1 - s) for kind in preds})
        out.append(cell("aesthetics_synthetic", "aesthetics", b, metrics=metrics,
                        headline=["tag_aware/SRCC", "tag_aware/LCC", "tag_aware/Error"],
                        tables={"per_tag": [{"tag": t, "n": 12, "MOS_mean": 5.0,
                                             "tag_aware/SRCC": round(s - 0.1 * j, 4),
                                             "image_only/SRCC": round(s - 0.2 * j, 4)}
                                            for j, t in enumerate(TAGS)]},
                        details={"true_histogram": hist(mos),
                                 "predicted_histograms": {kd: hist(np.array(v)) for kd, v in preds.items()},
                                 "predictions": {"mos": mos.tolist(), **preds}}, n=60))
        # multi_instance_retrieval (the last backend did not run it)
        if not (bad and i == len(backends) - 1):
            metrics = {f"{m}_{d}": mv(s * (0.5 if m == "map" else 0.7) + 0.02 * j, 0.01)
                       for m in ("map", "ndcg") for j, d in enumerate(("v2t", "t2v", "avg"))}
            out.append(cell("multi_instance_retrieval_synthetic", "multi_instance_retrieval", b,
                            metrics=metrics, headline=["map_avg", "ndcg_avg"], n=200))
        # a real-data task skipped for every backend
        if bad:
            out.append(cell("ava", "aesthetics", b, status="skipped",
                            error={"type": "DataNotFound", "message": "download AVA to ~/ctxbench-data/ava"}))
    return sorted(out, key=lambda r: (r.task, r.backend_label))


def task_data(results, task, colors=None) -> TaskData:
    rs = [r for r in results if r.task == task]
    colors = colors or backend_colors(r.backend_label for r in results)
    return TaskData(task, rs[0].family, rs, colors)


def bars(ax) -> dict[str, list[float]]:
    """{backend: bar heights} of an axes drawn by grouped_bars."""
    return {c.get_label(): [p.get_height() for p in c.patches] for c in ax.containers
            if hasattr(c, "patches")}


def error_segments(ax, label) -> list[tuple[float, float]]:
    c = next(c for c in ax.containers if hasattr(c, "patches") and c.get_label() == label)
    segs = c.errorbar.lines[2][0].get_segments()
    return [(float(s[0][1]), float(s[1][1])) for s in segs]


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> _Collect:
    p = _Collect()
    p.feed(page)
    return p


# ----------------------------------------------------------------------------- colours
def _lab(hex_colour: str) -> np.ndarray:
    """sRGB -> CIELAB (D65), written out here as the independent reference."""
    rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    lin = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ lin / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_colours_deterministic_from_sorted_list_and_distinct():
    names = [f"model-{i:02d}" for i in range(20)]
    shuffled = list(np.random.default_rng(1).permutation(names))
    a, b = backend_colors(names), backend_colors(shuffled + names[:3])
    assert a == b
    assert a["model-00"] == PALETTE[0] and a["model-19"] == PALETTE[19]
    labs = [_lab(c) for c in a.values()]
    min_de = min(np.linalg.norm(x - y) for x, y in itertools.combinations(labs, 2))
    assert min_de >= 27.0, min_de   # every pair of the 20 at least as far apart as tab10's closest
    many = backend_colors(f"b{i:03d}" for i in range(40))
    assert len(set(many.values())) == 40
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in many.values())


# ----------------------------------------------------------------------------- plots
def test_context_retrieval_plot_draws_the_numbers_with_cis_and_stars():
    backends = ["alpha", "beta", "gamma"]
    results = synthetic_results(backends, bad=False)
    data = task_data(results, "context_retrieval_synthetic")
    plots = make_plots(data)
    assert [p.skipped for p in plots] == [False, False]
    recall, diff = plots[0].figure, plots[1].figure
    panels = [ax for ax in recall.axes if ax.get_visible() and ax.get_title().startswith("pattern")]
    assert [ax.get_title() for ax in panels] == [f"pattern: {p}" for p in PATTERNS]
    for ax, pat in zip(panels, PATTERNS):
        drawn = bars(ax)
        for b in backends:
            r = data.result(b)
            ms = [r.metrics[f"{lv}/{pat}/R@1"] for lv in LEVELS]
            if ms[0].value is None:          # n/a: no bar at all for that backend
                assert b not in drawn
                continue
            assert drawn[b] == pytest.approx([m.value for m in ms])
            assert np.array(error_segments(ax, b)) == pytest.approx(np.array([m.ci for m in ms]))
            c = next(c for c in ax.containers if hasattr(c, "patches") and c.get_label() == b)
            assert all(np.allclose(p.get_facecolor()[:3], _rgb(data.colors[b])) for p in c.patches)
        assert "Recall@1" in ax.get_ylabel() and ax.get_xlabel() == "query level"
    # stars exactly on the significant differences (p < 0.05: levels L1 and L3 here)
    n_sig = sum(1 for b in backends for lv in LEVELS for pat in PATTERNS[1:]
                if (m := data.metric(b, f"{lv}/{pat}-no_ctx/R@1")) and m.p_value < 0.05)
    stars = [ln for ax in diff.axes for ln in ax.lines if ln.get_gid() == "significance"]
    assert len(stars) == n_sig > 0
    filled = sum(1 for ln in stars if ln.get_markerfacecolor() != "white")
    assert filled == sum(1 for b in backends for lv in LEVELS for pat in PATTERNS[1:]
                         if (m := data.metric(b, f"{lv}/{pat}-no_ctx/R@1")) and m.p_value < 0.01)
    # n/a cells are named in the caption
    assert "alpha" in plots[0].note and "Not available" in plots[0].note


def _rgb(hex_colour):
    return [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]


def test_twenty_backends_every_family_legible():
    """20 backends: every family's plots draw, the legend lists all 20 best-first, in
    the report's colours, outside every axes."""
    backends = [f"backend-{i:02d}" for i in range(20)]
    results = synthetic_results(backends, bad=False)
    colors = backend_colors(backends)
    tasks = sorted({r.task for r in results})
    assert len(tasks) == 5
    for task in tasks:
        data = task_data(results, task, colors)
        ranked = sorted(backends, key=lambda b: -data.score(b))
        assert data.backends() == ranked
        plots = make_plots(data)
        assert plots and not [p for p in plots if p.skipped], [(p.title, p.note) for p in plots]
        for k, plot in enumerate(plots):
            fig = plot.figure
            if k == 0:   # layout is computed on draw; one figure per family keeps this fast
                fig.canvas.draw()
            for legend in fig.legends if k == 0 else []:
                labels = [t.get_text() for t in legend.get_texts()]
                if labels[:20] == ranked:
                    handles = legend.legend_handles[:20]
                    assert np.array([h.get_facecolor()[:3] for h in handles]) == pytest.approx(
                        np.array([_rgb(colors[b]) for b in ranked]))
                    box = legend.get_window_extent()
                    right = max(ax.get_window_extent().x1 for ax in fig.axes if ax.get_visible()
                                and not ax.get_label() == "<colorbar>")
                    assert box.x0 >= right - 1, plot.title
            for ax in fig.axes:
                if ax.get_visible() and ax.get_label() != "<colorbar>":
                    assert ax.get_xlabel() and ax.get_ylabel(), (plot.title, ax.get_title())
        # plots with a backend legend put all 20 there, best first
        with_legend = [p for p in plots if p.figure.legends]
        assert with_legend, task
        assert any([t.get_text() for t in p.figure.legends[0].get_texts()][:20] == ranked
                   for p in with_legend), task


def test_family_plots_show_the_numbers_they_were_given():
    backends = ["a", "b"]
    results = synthetic_results(backends, bad=False)
    # domain_adaptation heatmap: top1 off the diagonal, source_top1 on it, in %
    data = task_data(results, "domain_adaptation_synthetic")
    plots = {p.title: p for p in make_plots(data)}
    fig = plots["Source x target top-1 accuracy (source_only)"].figure
    ax = next(ax for ax in fig.axes if ax.get_title() == data.backends()[0])
    b = data.backends()[0]
    grid = ax.images[0].get_array()
    for i, s in enumerate(DOMAINS):
        for j, t in enumerate(DOMAINS):
            name = f"{s}->{DOMAINS[(i + 1) % 3]}/source_only/source_top1" if s == t else \
                f"{s}->{t}/source_only/top1"
            assert grid[i, j] == pytest.approx(100 * data.value(b, name))
    # without source_only the adapt matrices are drawn, with no diagonal
    only_adapt = [cell(r.task, r.family, r.backend_label, metrics={
        k: v for k, v in r.metrics.items() if "/adapt/" in k}, headline=r.headline) for r in data.results]
    adapt = make_plots(TaskData("t", "domain_adaptation", only_adapt, data.colors))[0]
    assert adapt.title == "Source x target top-1 accuracy (adapt)"
    ax = next(ax for ax in adapt.figure.axes if ax.get_title() == b)
    grid = ax.images[0].get_array()
    assert np.ma.getmaskarray(grid).diagonal().all()   # no diagonal for adapt
    assert grid[0, 1] == pytest.approx(100 * data.value(b, f"{DOMAINS[0]}->{DOMAINS[1]}/adapt/top1"))
    drop = plots["Accuracy drop per pair (source - target)"].figure
    ax = drop.axes[0]
    pairs = list(itertools.permutations(DOMAINS, 2))
    assert bars(ax)[b] == pytest.approx([100 * data.value(b, f"{s}->{t}/zero_shot/drop") for s, t in pairs])
    # aesthetics: histogram lines, scatter points, per-tag bars
    data = task_data(results, "aesthetics_synthetic")
    plots = {p.title: p for p in make_plots(data)}
    hist = plots["Predicted vs true score distribution"].figure.axes[0]
    assert hist.get_title() == "probe: tag_aware"
    line = next(ln for ln in hist.lines if ln.get_color() == data.colors["a"])
    assert list(line.get_ydata()) == pytest.approx(data.result("a").details["predicted_histograms"]["tag_aware"])
    assert [p.get_height() for p in hist.patches] == pytest.approx(data.result("a").details["true_histogram"])
    scatter = plots["Predicted score vs MOS"].figure
    ax = next(ax for ax in scatter.axes if ax.get_title().startswith("a ·"))
    pts = ax.collections[0].get_offsets()
    pr = data.result("a").details["predictions"]
    assert np.asarray(pts) == pytest.approx(np.column_stack([pr["mos"], pr["tag_aware"]]))
    legend = [t.get_text() for t in ax.get_legend().get_texts()][0]
    assert legend == f"LCC {data.value('a', 'tag_aware/LCC'):.3f}, SRCC {data.value('a', 'tag_aware/SRCC'):.3f}"
    tags = plots["SRCC per tag"].figure.axes[0]
    assert bars(tags)["a"] == pytest.approx([r["tag_aware/SRCC"] for r in data.result("a").tables["per_tag"]])
    # metadata_sentiment: confusion rows normalised to %, relevance bars
    data = task_data(results, "metadata_sentiment_synthetic")
    plots = {p.title: p for p in make_plots(data)}
    ax = next(ax for ax in plots["Confusion matrix"].figure.axes if ax.get_title().startswith("a ·"))
    conf = np.array(data.result("a").details["confusion"]["fusion_probe"], float)
    assert np.asarray(ax.images[0].get_array()) == pytest.approx(100 * conf / conf.sum(1, keepdims=True))
    gate = plots["Learned gate of each metadata field"].figure.axes[0]
    assert bars(gate)["a"] == pytest.approx([r["gate_mean"] for r in data.result("a").tables["field contribution"]])
    contribution = plots["Contribution of each metadata field"].figure.axes[0]
    assert bars(contribution)["a"] == pytest.approx(
        [100 * data.result("a").metrics[f"fusion_probe/contribution/{f}"].value
         for f in ("image", "caption", "scene_objects")])
    # multi_instance_retrieval: mAP and nDCG per direction, in %
    data = task_data(results, "multi_instance_retrieval_synthetic")
    fig = make_plots(data)[0].figure
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["mAP", "nDCG"]
    assert bars(fig.axes[0])["b"] == pytest.approx(
        [100 * data.value("b", f"map_{d}") for d in ("v2t", "t2v", "avg")])
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["video → text", "text → video", "average"]


def test_mir_metric_names():
    from ctxbench.families.multi_instance_retrieval.plots import _mir_parse
    assert _mir_parse("map_v2t") == ("", "mAP", "v2t")
    assert _mir_parse("ndcg_avg") == ("", "nDCG", "avg")
    assert _mir_parse("tta/t2v/mAP") == ("tta", "mAP", "t2v")
    assert _mir_parse("recall_v2t") is None and _mir_parse("map") is None


def test_missing_inputs_skip_with_a_note_and_broken_plots_never_break_the_page():
    # metadata_sentiment without confusion matrix / relevance: notes, not errors
    r = cell("ms", "metadata_sentiment", "m", metrics={"image_probe/accuracy": mv(0.5)},
             headline=["image_probe/accuracy"])
    plots = {p.title: p for p in make_plots(TaskData("ms", "metadata_sentiment", [r], {"m": "#000000"}))}
    assert not plots["Accuracy and F1 per protocol"].skipped
    assert plots["Confusion matrix"].skipped and "details['confusion']" in plots["Confusion matrix"].note
    assert plots["Learned gate of each metadata field"].skipped
    assert plots["Contribution of each metadata field"].skipped
    # aesthetics without predictions: the scatter skips, naming what it needs
    r = cell("ae", "aesthetics", "m", metrics={"tag_aware/SRCC": mv(0.5)}, headline=["tag_aware/SRCC"])
    plots = {p.title: p for p in make_plots(TaskData("ae", "aesthetics", [r], {"m": "#000000"}))}
    assert plots["Predicted score vs MOS"].skipped and "details['predictions']" in plots["Predicted score vs MOS"].note
    # an unknown family gets the headline plot
    r = cell("x", "third_party_family", "m", metrics={"score": mv(0.7)}, headline=["score"])
    (plot,) = make_plots(TaskData("x", "third_party_family", [r], {"m": "#000000"}))
    assert plot.title == "Headline metrics" and bars(plot.figure.axes[0]) == {"m": pytest.approx([0.7])}

    # a plot function that raises is reported in the page; the rest still renders
    def explode(data):
        raise ValueError("boom <b>")
        yield  # pragma: no cover

    families = Registry("family")
    families.add("exploding_family", FamilySpec("exploding_family", evaluate=lambda req: None,
                                                plots=lambda: (explode,)))
    r = cell("t", "exploding_family", "m", metrics={"s": mv(0.3)}, headline=["s"])
    page = render_html([r], families=families)
    assert "plot failed: ValueError: boom &lt;b&gt;" in page
    assert "0.300 [0.250, 0.350]" in page


def test_names_render_literally_in_plots():
    """mathtext is off: '$x$' and '_hidden' are drawn as written, legend included."""
    names = ["$x^2$", "_hidden", "a" * 60]
    results = [cell("t", "third_party_family", b, metrics={"s": mv(0.1 * (i + 1))}, headline=["s"])
               for i, b in enumerate(names)]
    (plot,) = make_plots(TaskData("t", "third_party_family", results, backend_colors(names)))
    plot.figure.canvas.draw()
    labels = [t.get_text() for t in plot.figure.legends[0].get_texts()]
    assert labels == ["a" * 35 + "…", "_hidden", "$x^2$"]   # best first, long names shortened
    assert all(not t._parse_math for t in plot.figure.legends[0].get_texts())


# ----------------------------------------------------------------------------- page
EVIL_TASK = '<img src=x onerror="alert(2)">'


@pytest.fixture(scope="module")
def bundle():
    """One page for several tests (rendering is the slow part): backends XSS (takes no
    context), b1 (fails domain_adaptation), b2 (never ran multi_instance_retrieval);
    hostile names in a task, a table, a fingerprint, the manifest and a problem."""
    results = synthetic_results([XSS, "b1", "b2"])
    for r in results:
        if r.task == "context_retrieval_synthetic":
            r.task = EVIL_TASK
            r.tables["<i>table</i>"] = [{"<u>col</u>": "<b>v</b>"}]
            r.fingerprint = "fp\"><script>alert(3)</script>"
    manifest = {"versions": {"<s>pkg</s>": "1"}, "tasks": {EVIL_TASK: {"hash": "h", "family": "f"}},
                "backends": [{"name": XSS, "args": {"k": "</pre><script>"}}],
                "cells": [{"task": EVIL_TASK, "backend": XSS, "status": "ok"}]}
    page = render_html(results, manifest, title="<title>t", problems=["bad <file>.json"])
    return results, page


def test_page_is_self_contained(bundle):
    _, page = bundle
    p = parse(page)
    tags = [t for t, _ in p.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    assert "object" not in tags and "embed" not in tags
    csp = next(a for t, a in p.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert csp["content"].startswith("default-src 'none'")
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == 12   # every plot of the five families drawn (none skipped)
    for a in imgs:
        assert a["src"].startswith("data:image/png;base64,")
        png = Image.open(io.BytesIO(base64.b64decode(a["src"].split(",", 1)[1])))
        assert png.format == "PNG" and png.width > 300
        assert a["alt"]
    for t, a in p.tags:
        for key in ("href", "src", "srcset", "poster", "data"):
            if key in a:
                assert a[key].startswith(("#", "data:")), (t, a)
    assert "url(" not in page and "@import" not in page and "@font-face" not in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", page)


def test_names_from_plugins_and_tasks_are_escaped(bundle):
    _, page = bundle
    p = parse(page)
    assert [t for t, _ in p.tags if t == "script"] == []
    assert all(a["src"].startswith("data:") for t, a in p.tags if t == "img")
    assert not any(k.startswith("on") for _, a in p.tags for k in a)
    for raw in (XSS, EVIL_TASK, "<i>table</i>", "<u>col</u>", "<b>v</b>", "<s>pkg</s>", "<title>t",
                "bad <file>.json", "</pre><script>"):
        assert raw not in page
        assert esc(raw) in page or esc(json.dumps(raw))[1:-1] in page, raw
    text = "".join(p.text)
    assert XSS in text and EVIL_TASK in text        # shown to the reader as text
    assert esc('fp"><script>alert(3)</script>') in page


def test_failed_skipped_and_missing_cells_are_visible(bundle):
    results, page = bundle
    text = re.sub(r"\s+", " ", "".join(parse(page).text))
    # summary: b1 failed domain_adaptation, ava skipped everywhere, b2 never ran MIR
    summary = page[page.index('id="summary"'):page.index('id="task-0"')]
    assert 'class="failed" title="CUDA out of memory &lt;b&gt;here&lt;/b&gt;">FAILED: RuntimeError' in summary
    # tasks are rows, backends columns; ava (skipped for every backend) folded into one line
    assert 'class="skipped"' not in summary
    assert re.search(r'<b>Skipped, data not found</b> \(1 task\(s\);[^<]*<a href="#task-\d+">ava</a>\.', summary)
    head = summary[summary.index("<thead>"):summary.index("</thead>")]
    assert head.count("<th>") == 2 + 3 and "ava" not in head and "b1</th>" in head
    assert summary.count("<tr>") == 1 + len({r.task for r in results}) - 1
    assert summary.count('<td><a href="#task-') == len({r.task for r in results}) - 1
    assert summary.count('class="missing"') == 1
    assert "download AVA to ~/ctxbench-data/ava" in text            # the skip instructions
    assert "b1 failed: RuntimeError: CUDA out of memory <b>here</b>" in text
    assert "Traceback (most recent call last): boom" in text
    # n/a metrics (the XSS backend takes no context) show as n/a with the reason as tooltip
    assert 'class="na" title="n/a: no context">n/a<' in page
    # failed cells are not drawn: the domain plots see only the two ok backends
    data = TaskData("domain_adaptation_synthetic", "domain_adaptation",
                    [r for r in results if r.task == "domain_adaptation_synthetic"],
                    backend_colors([XSS, "b1", "b2"]))
    assert sorted(data.backends()) == sorted([XSS, "b2"])


def test_manifest_section(tmp_path):
    backends = ["a", "b"]
    for r in synthetic_results(backends):
        if r.task in ("multi_instance_retrieval_synthetic", "ava"):   # cheap to plot
            write_result(tmp_path / "res", r)
    manifest = {"versions": {"ctxbench": "0.1.0", "torch": "2.15.0"}, "timestamp": "2026-02-02T00:00:00",
                "seconds": 12.5, "seed": 7, "limit": None, "device": "cpu",
                "tasks": {"ava": {"hash": "hash-ava", "version": 1, "family": "aesthetics",
                                  "file": "tasks/x.yaml"},
                          "multi_instance_retrieval_synthetic": {
                              "hash": "stale-hash", "version": 1, "family": "multi_instance_retrieval",
                              "file": "tasks/y.yaml"}},
                "backends": [{"name": "a", "args": {"dim": 64}}],
                "cells": [{"cell_id": "c1", "task": "ava", "backend": "a",
                           "status": "failed", "seconds": 3.25, "fingerprint": "a:v1"}]}
    (tmp_path / "res" / "manifest.json").write_text(json.dumps(manifest))
    out = write_report(tmp_path / "res", tmp_path / "report.html")
    page = out.read_text()
    man = page[page.index('id="manifest"'):]
    for needle in ("2.15.0", "2026-02-02T00:00:00", "12.500", ">7<", "hash-ava",
                   "tasks/x.yaml", "{&quot;dim&quot;: 64}", "3.250", "a:v1", ">c1<"):
        assert needle in man, needle
    assert ('class="failed" title="results carry other task hashes: '
            'hash-multi_instance_retrieval_synthetic">stale-hash') in man
    # without a manifest: said so, and versions/tasks rebuilt from the results
    (tmp_path / "res" / "manifest.json").unlink()
    page = write_report(tmp_path / "res").read_text()
    assert (tmp_path / "res.html").is_file()
    man = page[page.index('id="manifest"'):]
    assert "No manifest.json in" in man and "hash-multi_instance_retrieval_synthetic" in man
    assert "0.1.0" in man
    # unreadable manifest / result files are reported, not fatal
    (tmp_path / "res" / "manifest.json").write_text("{not json")
    (tmp_path / "res" / "broken.json").write_text("[")
    page = write_report(tmp_path / "res").read_text()
    assert "manifest.json is unreadable" in page
    assert "Unreadable result files" in page and "broken.json" in page


@pytest.mark.slow   # ~15 s: a real embedded run, then the report; CI's second step (.ci/run)
def test_report_from_a_real_run(tmp_path):
    """End to end: ctxbench run on the embedded context_retrieval task, then the report."""
    from ctxbench.cli import main
    out = tmp_path / "run"
    rc = main(["run", "--task", "context_retrieval_synthetic", "--output-dir", str(out), "--no-cache",
               "--no-progress", "--leaderboard", str(tmp_path / "lb.md")])
    assert rc == 0
    page = write_report(out).read_text()
    p = parse(page)
    assert sum(1 for t, _ in p.tags if t == "img") == 2       # recall + difference plots
    text = "".join(p.text)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tasks"]["context_retrieval_synthetic"]["hash"] in text
    assert manifest["cells"][0]["fingerprint"] in text
    assert "Recall@1 per level and injection pattern" in text and "not drawn" not in text


def test_write_report_rejects_a_missing_folder(tmp_path):
    from ctxbench.errors import CtxbenchError
    with pytest.raises(CtxbenchError, match="not a folder of results JSON"):
        write_report(tmp_path / "nope")


def test_empty_results_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    page = write_report(tmp_path / "empty").read_text()
    assert "No results found in" in page


def _text_boxes(fig, artists):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [a.get_window_extent(renderer) for a in artists if a.get_text()]


def test_labels_do_not_overlap_or_leave_the_figure():
    """Issue 17: per-tag SRCC tick labels (long tag names) never overlap each other, and
    the confusion matrices' colour-bar label lies inside the figure."""
    long_tags = ["kitchen counter", "studio", "photographic style", "textured style", "night sky",
                 "line drawing", "flat style", "snowfield", "meadow", "ocean", "desert", "forest"]
    results = [r for r in synthetic_results(["a", "b"], bad=False)
               if r.family in ("aesthetics", "metadata_sentiment")]
    for r in results:
        if "per_tag" in r.tables:
            base = r.tables["per_tag"][0]
            r.tables["per_tag"] = [dict(base, tag=t) for t in long_tags]
    for task in sorted({r.task for r in results}):
        rs = [r for r in results if r.task == task]
        plots = {p.title: p for p in make_plots(TaskData(task, rs[0].family, rs,
                                                         backend_colors(["a", "b"])))}
        if "SRCC per tag" in plots and not plots["SRCC per tag"].skipped:
            fig = plots["SRCC per tag"].figure
            labels = fig.axes[0].get_xticklabels()
            boxes = _text_boxes(fig, labels)
            assert len(boxes) == len(long_tags)
            angle = math.radians(labels[0].get_rotation())
            if angle == 0:
                for b1, b2 in itertools.combinations(boxes, 2):
                    assert not b1.overlaps(b2), "per-tag tick labels overlap"
            else:   # parallel tilted lines: their perpendicular gap must hold a line of text
                step = (boxes[1].x1 - boxes[0].x1)
                line = labels[0].get_fontsize() * fig.dpi / 72
                assert step * math.sin(angle) >= line, "tilted per-tag tick labels overlap"
                assert all(lab.get_horizontalalignment() == "right" for lab in labels)
        if "Confusion matrix" in plots and not plots["Confusion matrix"].skipped:
            fig = plots["Confusion matrix"].figure
            bar = fig.axes[-1]
            (box,) = _text_boxes(fig, [bar.yaxis.label])
            assert "share of the true class" in bar.yaxis.label.get_text()
            assert 0 <= box.x0 and box.x1 <= fig.bbox.width and 0 <= box.y0 and box.y1 <= fig.bbox.height
