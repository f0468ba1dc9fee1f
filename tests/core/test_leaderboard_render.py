"""The markdown leaderboard through a real CommonMark renderer (issue 17): every name
from a plugin, task file or dataset shows literally (no visible backslash inside code
spans, no raw ``&amp;``), every headline metric gets its direction, numbers have one
format, and a run's board shows only the cells that run asked for."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from ctxbench.leaderboard import (fmt_number, latest_results, legend_lines, md_code, md_escape,
                                  metric_direction, render_markdown, select_cells,
                                  write_leaderboard)
from ctxbench.name_registry import Registry
from ctxbench.registrations import MetricSpec
from ctxbench.results import CellResult, MetricValue, write_result

ROOT = Path(__file__).resolve().parents[2]
TRICKY = ["tag_aware/agree*ment*", "a|b", "<b>bold</b>", "Sugiura & Yamauchi &amp; co",
          "back`tick", "``fenced``", "$x^2$", "~strike~", "[link](x)", "under_score_", "&copy;",
          "\\backslash", " spaced "]


class _Text(HTMLParser):
    """The text a browser shows for an HTML fragment (entities decoded)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data):
        self.parts.append(data)


def rendered_text(markdown: str) -> str:
    html = MarkdownIt("commonmark").enable("table").render(markdown)
    parser = _Text()
    parser.feed(html)
    return "".join(parser.parts)


def result(task="t", backend="b", status="ok", metrics=None, headline=None, tables=None,
           family="fam", timestamp="2026-01-01T00:00:00+00:00") -> CellResult:
    metrics = metrics if metrics is not None else {"m/SRCC": MetricValue(0.25, (0.2, 0.3), 10)}
    return CellResult(cell_id=f"{task}-{backend}", status=status, task=task, task_hash="h",
                      task_version=1, family=family, backend=backend, backend_args={},
                      backend_label=backend, fingerprint="f", metrics=metrics,
                      headline=headline if headline is not None else list(metrics),
                      tables=tables or {}, timestamp=timestamp, n=10,
                      error={"type": "TypeError", "message": "boom"} if status == "failed" else None)


@pytest.mark.parametrize("name", TRICKY)
def test_code_span_and_text_render_literally(name):
    shown = name.strip() if name != " spaced " else name
    for md in (md_code(name, in_table=False), md_escape(name)):
        text = rendered_text(f"x {md} y")
        assert f"x {shown} y" == text.strip() or shown in text, (md, text)
    table = f"| h |\n|---|\n| {md_code(name)} |\n| {md_escape(name)} |\n"
    text = rendered_text(table)
    assert text.count(name.strip()) == 2, (table, text)


def test_every_name_on_the_board_renders_literally():
    metrics = {f"{m}/SRCC": MetricValue(0.5, (0.4, 0.6), 10) for m in TRICKY[:6]}
    rows = [{n: 0.25 for n in TRICKY[6:9]} | {"label": n} for n in TRICKY]
    results = [result(task=t, backend=b, metrics=metrics, family=TRICKY[2],
                      tables={TRICKY[9]: rows})
               for t in TRICKY[:3] for b in TRICKY[3:6]]
    results.append(result(task=TRICKY[10], backend=TRICKY[11], status="skipped", metrics={}))
    specs = Registry("metric")
    specs.add(TRICKY[4], MetricSpec(TRICKY[4], abs, "a & b < c", TRICKY[2]))
    md = render_markdown(results, title=TRICKY[7], metric_specs=specs)
    text = rendered_text(md)
    for name in TRICKY + list(metrics):
        assert name.strip() in text, f"{name!r} not literal in the rendered leaderboard"
    assert "&amp;" not in text.replace(TRICKY[3], "")     # the one name that contains it
    assert "\\_" not in text and "\\|" not in text


def test_metric_direction_rule():
    up = ["tag_aware/SRCC", "image_only/LCC", "gain/SRCC", "L1/no_ctx/R@1", "L2/image_ctx-no_ctx/R@5",
          "map_avg", "ndcg_t2v", "mean/adapt/top1", "mean/source_only/mpca", "zero_shot/accuracy",
          "fusion_probe/macro_F1", "x/weighted_F1", "tag_aware/agreement", "mean/adapt/gain",
          "fusion_probe/contribution/caption", "zero_shot/class_accuracy/awe"]
    down = ["tag_aware/Error", "x/Error_var", "x/Error_std", "fusion_probe/KL", "tag_aware/EMD",
            "gain/Error", "mean/source_only/drop", "gain/NIMA_EMD"]
    none = ["tag_aware/rho", "L1/query_divergence", "fusion_probe/gate_mean/objects", "whatever"]
    assert [metric_direction(n) for n in up] == [True] * len(up)
    assert [metric_direction(n) for n in down] == [False] * len(down)
    assert [metric_direction(n) for n in none] == [None] * len(none)


def test_every_committed_headline_metric_has_a_direction_but_rho():
    heads = set()
    for path in (ROOT / "leaderboards" / "embedded").rglob("*.json"):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            heads |= set(data.get("headline") or [])
    assert heads, "no committed results under leaderboards/embedded"
    unknown = {h for h in heads if metric_direction(h) is None and not h.endswith("/rho")}
    assert not unknown, f"headline metrics with no direction rule: {sorted(unknown)}"


def test_summary_has_arrows_and_a_sign_legend():
    sweep = {"tag_aware/agreement": MetricValue(0.6), "tag_aware/rho": MetricValue(-0.6)}
    md = render_markdown([result(task="sweep", metrics=sweep),
                          result(task="q", metrics={"tag_aware/Error": MetricValue(0.1)})])
    assert "`tag_aware/agreement` ↑" in md and "`tag_aware/Error` ↓" in md
    assert "tag\\_aware/rho" in md and "tag\\_aware/rho ↑" not in md
    assert "`agreement` is positive when the score falls as degradation rises" in md
    assert "`rho`: the raw Spearman" in md
    assert legend_lines(["map_avg"]) == legend_lines([])       # no sign notes without their metrics


def test_one_number_format():
    assert [fmt_number(x) for x in (0.25, -0.000373, 0.0, 7, 1234.5, -3.7e-9, 999.9996)] == \
        ["0.250", "-3.73e-04", "0.000", "7", "1.23e+03", "-3.70e-09", "1000.000"]
    rows = [{"v": 0.25, "w": -0.000373, "s": "a&b"}, {"v": 0.7, "w": 0.0004, "s": None}]
    md = render_markdown([result(tables={"tab": rows})])
    assert "0.250" in md and "0.700" in md and "-3.73e-04" in md and "4.00e-04" in md
    assert "| 0.25 " not in md and "| 0.7 " not in md and "&amp;" not in md


def _folder(tmp_path):
    out = tmp_path / "run"
    write_result(out, result(task="t", backend="old_backend", timestamp="2025-01-01T00:00:00+00:00"))
    write_result(out, result(task="t", backend="typo", status="failed", metrics={},
                             timestamp="2025-01-01T00:00:00+00:00"))
    write_result(out, result(task="t", backend="b"))
    write_result(out, result(task="u", backend="b"))
    return out


def test_a_run_shows_only_its_cells(tmp_path):
    out = _folder(tmp_path)
    board = write_leaderboard(out, tmp_path / "run.md", cells={("t", "b")}).read_text()
    assert "old\\_backend" not in board and "typo" not in board and "FAILED" not in board
    assert "## u" not in board and "## t" in board and "(older run)" not in board
    everything = write_leaderboard(out, tmp_path / "all.md").read_text()   # None: the whole folder
    assert "old\\_backend" in everything and "FAILED: TypeError" in everything
    assert "(older run)" not in everything


def test_older_cells_only_when_asked_and_marked(tmp_path):
    out = _folder(tmp_path)
    board = write_leaderboard(out, tmp_path / "run.md", cells={("t", "b")},
                              include_older=True).read_text()
    assert "FAILED: TypeError (older run)" in board
    assert "0.250 [0.200, 0.300] (older run)" in board            # old_backend on t, u's b
    assert re.search(r"0\.250 \[0\.200, 0\.300\] +\|", board)              # the current cell unmarked
    assert "a cell from an earlier run in this folder" in board
    results, _ = latest_results(out)
    shown, older = select_cells(results, {("t", "b")}, include_older=True)
    assert len(shown) == 4 and older == {("t", "old_backend"), ("t", "typo"), ("u", "b")}
