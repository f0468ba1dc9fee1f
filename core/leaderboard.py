"""Markdown leaderboards (tabulate) from a folder of results JSON.

One section per task: a headline table (backend rows, the task's headline metric
columns, "value [lo, hi]"), then the family's breakdown tables, with a backend
column. Failed and skipped cells appear as such, never averaged over. A summary
table gives each backend's first headline metric per task. Every name that
comes from a plugin, task file or dataset is escaped for markdown.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tabulate import tabulate

from .io.atomic import write_text
from .results import CellResult, MetricValue, iter_results

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")


def md_escape(text: Any) -> str:
    """Escape markdown/HTML-significant characters and flatten newlines."""
    s = str(text).replace("\r", " ").replace("\n", " ")
    s = s.replace("&", "&amp;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def fmt_metric(m: MetricValue | None, digits: int = 3) -> str:
    if m is None:
        return "–"
    if m.value is None:
        return "n/a"
    text = f"{m.value:.{digits}f}"
    if m.ci is not None and m.ci[0] is not None and m.ci[1] is not None:
        text += f" [{m.ci[0]:.{digits}f}, {m.ci[1]:.{digits}f}]"
    if m.p_value is not None:
        text += f" (p={m.p_value:.2g})"
    return text


def _fmt_cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}"
    return md_escape(value)


def latest_results(results_dir: Path) -> tuple[list[CellResult], list[str]]:
    """The newest result per (task, backend label); plus unreadable-file messages."""
    best: dict[tuple[str, str], CellResult] = {}
    problems = []
    for path, result, error in iter_results(results_dir):
        if result is None:
            problems.append(error)
            continue
        key = (result.task, result.backend_label)
        if key not in best or result.timestamp >= best[key].timestamp:
            best[key] = result
    return sorted(best.values(), key=lambda r: (r.task, r.backend_label)), problems


def _status_text(r: CellResult) -> str:
    if r.status == "failed":
        return f"FAILED: {md_escape(r.error['type'] if r.error else '?')}"
    if r.status == "skipped":
        return "skipped (data not found)"
    return ""


def _value_text(r: CellResult, metric: str) -> str:
    """A metric cell; a result computed with --limit is marked partial."""
    text = fmt_metric(r.metrics.get(metric))
    return f"{text} (partial: --limit {r.limit})" if r.limit is not None else text


def metric_definitions(metric_specs, families: set[str]) -> list[str]:
    """Markdown lines: each registered metric of ``families`` with its direction,
    definition and reference (the metric registry's own words)."""
    rows = []
    for name in metric_specs.names():
        spec = metric_specs.get(name)
        if spec.family in families or spec.family == "any":
            arrow = "higher is better" if spec.higher_is_better else "lower is better"
            rows.append([md_escape(spec.family), f"`{name}`", arrow, md_escape(spec.description),
                         md_escape(spec.reference)])
    if not rows:
        return []
    return ["## Metric definitions", "", "From the metric registry (`ctxbench list metrics`); "
            "docs/families.md gives each family's metric names and conventions.", "",
            tabulate(rows, ["family", "metric", "direction", "definition", "reference"],
                     tablefmt="github"), ""]


def render_markdown(results: list[CellResult], title: str = "ctxbench leaderboard",
                    problems: list[str] | None = None, metric_specs=None) -> str:
    tasks: dict[str, list[CellResult]] = {}
    for r in results:
        tasks.setdefault(r.task, []).append(r)
    backends = sorted({r.backend_label for r in results})
    lines = [f"# {md_escape(title)}", ""]

    ran = {t: rs for t, rs in tasks.items() if any(r.status != "skipped" for r in rs)}
    skipped = [t for t in tasks if t not in ran]
    lines += ["## Summary", "", "Each task's first headline metric, one column per backend "
              "(95% CI in brackets). `n/a`: the backend lacks a needed capability; "
              "`–`: not run.", ""]
    header = ["task", "metric"] + [md_escape(b) for b in backends]
    rows = []
    for t, rs in ran.items():
        metric = next((r.headline[0] for r in rs if r.status == "ok" and r.headline), "")
        row = [md_escape(t), f"`{md_escape(metric)}`" if metric else ""]
        for b in backends:
            r = next((x for x in rs if x.backend_label == b), None)
            if r is None:
                row.append("–")
            elif r.status != "ok":
                row.append(_status_text(r))
            else:
                row.append(_value_text(r, metric) if metric else "–")
        rows.append(row)
    if rows:
        lines += [tabulate(rows, header, tablefmt="github"), ""]
    if skipped:
        lines += ["Skipped, data not found (each section below says how to get it): " +
                  ", ".join(md_escape(t) for t in skipped) + ".", ""]

    for task, rs in tasks.items():
        lines += [f"## {md_escape(task)}", ""]
        ok = [r for r in rs if r.status == "ok"]
        family = rs[0].family
        lines += [f"Family: `{md_escape(family)}`; task hash `{md_escape(rs[0].task_hash)}`.", ""]
        for r in rs:
            if r.status == "skipped" and r.error:
                lines += [f"Skipped (data not found): {md_escape(r.error['message'])}", ""]
                break
        if task not in ran:
            continue
        columns: list[str] = []
        for r in ok:
            columns += [c for c in r.headline if c not in columns]
        header = ["backend", "n"] + [md_escape(c) for c in columns]
        rows = []
        for r in sorted(rs, key=lambda x: x.backend_label):
            if r.status != "ok":  # status in the n column, the metric columns left empty
                rows.append([md_escape(r.backend_label), _status_text(r)] + [""] * len(columns))
                continue
            rows.append([md_escape(r.backend_label), r.n if r.n is not None else ""] +
                        [_value_text(r, c) for c in columns])
        if columns or rows:
            lines += [tabulate(rows, header, tablefmt="github"), ""]
        table_names: list[str] = []
        for r in ok:
            table_names += [n for n in r.tables if n not in table_names]
        for name in table_names:
            cols: list[str] = []
            trows = []
            for r in ok:
                for row in r.tables.get(name, []):
                    cols += [c for c in row if c not in cols]
                    trows.append((r.backend_label, row))
            lines += [f"**{md_escape(name)}**", ""]
            lines += [tabulate([[md_escape(b)] + [_fmt_cell(row.get(c)) for c in cols]
                                for b, row in trows],
                               ["backend"] + [md_escape(c) for c in cols], tablefmt="github"), ""]
        failed = [r for r in rs if r.status == "failed"]
        for r in failed:
            lines += [f"- {md_escape(r.backend_label)} failed: {md_escape(r.error['message'] if r.error else '')}"]
        if failed:
            lines.append("")
    if metric_specs is not None:
        lines += metric_definitions(metric_specs, {r.family for r in results})
    if problems:
        lines += ["## Unreadable result files", ""] + [f"- {md_escape(p)}" for p in problems] + [""]
    return "\n".join(lines).rstrip() + "\n"


def write_leaderboard(results_dir: Path, out: Path, title: str | None = None,
                      metric_specs=None) -> Path:
    """Write the markdown leaderboard of a results folder; ``metric_specs`` (the
    plugin host's metric registry) adds the metric definitions section."""
    results, problems = latest_results(results_dir)
    write_text(out, render_markdown(results, title or f"ctxbench leaderboard: {Path(results_dir).name}",
                                    problems, metric_specs))
    return out
