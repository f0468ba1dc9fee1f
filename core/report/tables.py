"""Table building blocks of the HTML report and its two cross-task tables.

Cells (:func:`td`, :func:`status_cell`, :func:`backend_cell`), number and metric
formats (the markdown leaderboard's :func:`ctxbench.leaderboard.fmt_number`, so the
two agree), the summary leaderboard (one row per task that ran, one column per
backend; the tasks skipped for want of data folded into one line, so 20 tasks do
not make 20 columns) and the per-task table of cells (fingerprints, seeds, timings).
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import Any, Callable

from ..leaderboard import OLDER, arrow, fmt_number, legend_lines
from ..results import CellResult, MetricValue

DETAILS_JSON_MAX = 4000


def esc(value: Any) -> str:
    """HTML-escape any value (quotes included), for text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def num(x: Any) -> str:
    """A number as the leaderboard writes it (``0.250``, ``-3.73e-04``); text as is."""
    if x is None:
        return ""
    return fmt_number(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def seconds(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) and math.isfinite(x) else num(x)


def fmt_metric(m: MetricValue | None) -> tuple[str, str, str]:
    """(text, css class, tooltip) of a metric cell."""
    if m is None:
        return "–", "na", "not reported"
    if m.value is None or (isinstance(m.value, float) and not math.isfinite(m.value)):
        return "n/a", "na", m.note or "not applicable"
    text = fmt_number(float(m.value))
    if m.ci is not None and m.ci[0] is not None and m.ci[1] is not None:
        text += f" [{fmt_number(float(m.ci[0]))}, {fmt_number(float(m.ci[1]))}]"
    if m.p_value is not None:
        text += f" (p={float(m.p_value):.2g})"
    return text, "num", m.note


def td(text: str, cls: str = "", title: str = "", raw: bool = False) -> str:
    attrs = (f' class="{esc(cls)}"' if cls else "") + (f' title="{esc(title)}"' if title else "")
    return f"<td{attrs}>{text if raw else esc(text)}</td>"


def table(header: list[str], rows: list[list[str]], cls: str = "", raw_header: bool = False) -> str:
    """``rows`` are lists of ready ``<td>`` strings; ``header`` is plain text (or ready
    HTML with ``raw_header``)."""
    head = "".join(f"<th>{h if raw_header else esc(h)}</th>" for h in header)
    body = "".join(f"<tr>{''.join(r)}</tr>" for r in rows)
    c = f' class="{esc(cls)}"' if cls else ""
    return f'<div class="scroll"><table{c}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def status_cell(r: CellResult | None) -> str | None:
    """The cell for a non-ok (or absent) result; None for an ok one."""
    if r is None:
        return td("not run", "missing", "this backend has no result for this task")
    if r.status == "failed":
        err = r.error or {}
        return td(f"FAILED: {err.get('type', '?')}", "failed", err.get("message", ""))
    if r.status == "skipped":
        return td("skipped", "skipped", "data not found: " + (r.error or {}).get("message", ""))
    return None


def swatch(colour: str) -> str:
    return f'<span class="swatch" style="background:{esc(colour)}"></span>'


def backend_html(name: str, colors: dict[str, str]) -> str:
    return (swatch(colors[name]) if name in colors else "") + esc(name)


def backend_cell(name: str, colors: dict[str, str]) -> str:
    return td(backend_html(name, colors), raw=True)


def mark_older(cell: str, older: bool) -> str:
    """A ready ``<td>`` marked as coming from an earlier run (class ``older``)."""
    if not older:
        return cell
    cell = cell.replace("<td", '<td data-older="1"', 1)
    return cell[:-5] + f' <span class="older">{esc(OLDER)}</span></td>'


def metric_cell(r: CellResult, metric: str) -> str:
    """A metric cell of an ok result; a --limit result is marked partial."""
    text, cls, title = fmt_metric(r.metrics.get(metric) if metric else None)
    if r.limit is not None:
        text += f" (partial: --limit {r.limit})"
    return td(text, cls, title)


def md_inline(text: str) -> str:
    """A legend line (markdown with only `code` spans) as HTML."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))


def summary_table(tasks: dict[str, list[CellResult]], backends: list[str],
                  colors: dict[str, str], anchor: dict[str, str],
                  is_older: Callable[[CellResult], bool]) -> str:
    """The summary leaderboard: a row per task that ran (its first headline metric,
    with the better direction), a column per backend; then the legend and one line
    naming the tasks skipped for want of data."""
    ran = [t for t, rs in tasks.items() if any(r.status != "skipped" for r in rs)]
    rows, heads = [], []
    for t in ran:
        rs = tasks[t]
        first = next((r.headline[0] for r in rs if r.status == "ok" and r.headline), "")
        heads += [c for r in rs for c in r.headline]
        row = [td(f'<a href="#{anchor[t]}">{esc(t)}</a>', raw=True),
               td(f"<code>{esc(first)}</code>{esc(arrow(first))}" if first else "", "metric", raw=True)]
        for b in backends:
            r = next((x for x in rs if x.backend_label == b), None)
            cell = status_cell(r) or metric_cell(r, first)
            row.append(mark_older(cell, r is not None and is_older(r)))
        rows.append(row)
    out = []
    if rows:
        header = ["task", "metric"] + [backend_html(b, colors) for b in backends]
        out.append(table(header, rows, "summary", raw_header=True))
        out.append('<ul class="legend">' + "".join(f"<li>{md_inline(line)}</li>"
                                                  for line in legend_lines(heads)) + "</ul>")
    skipped = [t for t in tasks if t not in ran]
    if skipped:
        links = ", ".join(f'<a href="#{anchor[t]}">{esc(t)}</a>' for t in skipped)
        out.append(f'<p class="skipped-tasks"><b>Skipped, data not found</b> ({len(skipped)} '
                   f'task(s); each section says how to get the data): {links}.</p>')
    return "".join(out)


def cells_table(rs: list[CellResult], colors: dict[str, str]) -> str:
    """A task's cells: status, fingerprint, cell id, seed, timings, details (collapsed)."""
    rows = []
    for r in sorted(rs, key=lambda x: x.backend_label):
        timings = ", ".join(f"{k} {seconds(v)} s" for k, v in (r.timings or {}).items())
        details = json.dumps(r.details, sort_keys=True, default=str)
        if len(details) > DETAILS_JSON_MAX:
            details = details[:DETAILS_JSON_MAX] + f" … ({len(details)} characters in all)"
        rows.append([backend_cell(r.backend_label, colors), td(r.status),
                     td(r.fingerprint or "–"), td(r.cell_id), td(r.seed, "num"),
                     td(seconds(r.seconds), "num"), td(timings), td(r.timestamp),
                     td(f"<details><summary>details</summary><pre>{esc(details)}</pre></details>",
                        raw=True)])
    return ("<details><summary>Cells: fingerprints, seeds, timings</summary>"
            + table(["backend", "status", "fingerprint", "cell", "seed", "seconds",
                     "timings", "timestamp", "details"], rows) + "</details>")
