"""One self-contained HTML page from a folder of results JSON.

The page needs no server and no network: the style sheet is inline, plots are
matplotlib PNGs embedded as base64 ``data:`` URIs, there is no script and no web
font, and a Content-Security-Policy meta tag forbids the browser from loading
anything else. Sections: the summary leaderboard (each backend's first headline
metric per task), then per task its headline table, plots, breakdown tables and
failed/skipped cells, then the run manifest (``manifest.json`` of the results
folder: versions, fingerprints, task hashes, seeds, timings) and unreadable files.

Every cell of (backend x task) is visible: a failed cell shows ``FAILED`` with its
error, a skipped one ``skipped`` with the instructions to obtain the data, a
backend that ran other tasks but not this one ``not run``, a metric the backend
cannot produce ``n/a`` with the reason as a tooltip.

Every string that comes from a plugin, a task file, a dataset or a results file
goes through :func:`esc` (``html.escape`` with quotes), so a backend named
``<script>alert(1)</script>`` is shown as text.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from ..io.atomic import write_text
from ..errors import CtxbenchError
from ..leaderboard import latest_results
from ..results import CellResult, MetricValue, now_iso
from .colors import backend_colors
from .drawing import Plot, TaskData, figure_png
from .plots import family_plots, make_plots

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
 color:#1a1a1a;background:#fff;line-height:1.4}
main{max-width:1280px;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.3rem;margin-top:2.2rem;border-bottom:2px solid #ddd}
h3{font-size:1.05rem;margin:1.4rem 0 .4rem}
.meta{color:#555;font-size:.9rem}
nav ul{columns:2;font-size:.9rem}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.82rem;margin:.4rem 0 1rem}
th,td{border:1px solid #ccc;padding:.2rem .45rem;text-align:left;vertical-align:top}
th{background:#f2f2f2;position:sticky;top:0}
tbody tr:nth-child(even) td{background:#fafafa}
td:first-child{white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.failed,td.skipped,td.missing{white-space:nowrap}
td.failed,tbody tr:nth-child(even) td.failed{background:#fde0dc;color:#8a1c12;font-weight:600}
td.skipped,tbody tr:nth-child(even) td.skipped{background:#ececec;color:#555;font-style:italic}
td.missing,tbody tr:nth-child(even) td.missing{background:#fff8e1;color:#7a5a00;font-style:italic}
td.na{color:#777;font-style:italic}
.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.35em;vertical-align:-.05em;
 border:1px solid #0003}
figure{margin:1rem 0 1.5rem}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#444;max-width:60rem}
.skipped-plot{background:#f6f6f6;border-left:4px solid #aaa;padding:.4rem .7rem;font-size:.88rem}
.error{background:#fdecea;border-left:4px solid #c62828;padding:.4rem .7rem;font-size:.88rem}
.notice{background:#f6f6f6;border-left:4px solid #888;padding:.4rem .7rem;font-size:.88rem}
pre{white-space:pre-wrap;word-break:break-word;font-size:.78rem;background:#f7f7f7;padding:.5rem}
details{margin:.3rem 0}summary{cursor:pointer}
"""

DETAILS_JSON_MAX = 4000
LONG_TABLE = 30          # breakdown tables longer than this start collapsed


def esc(value: Any) -> str:
    """HTML-escape any value (quotes included), for text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


# ----------------------------------------------------------------------------- formatting
def _num(x: Any, digits: int = 3) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "" if x is None else str(x)
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return "n/a"
    if x != 0 and abs(x) < 10 ** -digits:
        return f"{x:.2g}"
    return f"{x:.{digits}f}"


def fmt_metric(m: MetricValue | None) -> tuple[str, str, str]:
    """(text, css class, tooltip) of a metric cell."""
    if m is None:
        return "–", "na", "not reported"
    if m.value is None or (isinstance(m.value, float) and not math.isfinite(m.value)):
        return "n/a", "na", m.note or "not applicable"
    text = _num(float(m.value))
    if m.ci is not None and m.ci[0] is not None and m.ci[1] is not None:
        text += f" [{_num(float(m.ci[0]))}, {_num(float(m.ci[1]))}]"
    if m.p_value is not None:
        text += f" (p={float(m.p_value):.2g})"
    return text, "num", m.note


def td(text: str, cls: str = "", title: str = "", raw: bool = False) -> str:
    attrs = (f' class="{esc(cls)}"' if cls else "") + (f' title="{esc(title)}"' if title else "")
    return f"<td{attrs}>{text if raw else esc(text)}</td>"


def table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """``rows`` are lists of ready ``<td>`` strings; ``header`` is plain text."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
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


def backend_cell(name: str, colors: dict[str, str]) -> str:
    return td(swatch(colors[name]) + esc(name), raw=True) if name in colors else td(name)


# ----------------------------------------------------------------------------- sections
class _Page:
    def __init__(self, results: list[CellResult], manifest: dict | None, manifest_note: str,
                 problems: list[str], title: str, source: str):
        self.results = results
        self.manifest = manifest
        self.manifest_note = manifest_note
        self.problems = problems
        self.title = title
        self.source = source
        self.tasks: dict[str, list[CellResult]] = {}
        for r in results:
            self.tasks.setdefault(r.task, []).append(r)
        self.backends = sorted({r.backend_label for r in results})
        self.colors = backend_colors(self.backends)
        self.anchor = {t: f"task-{i}" for i, t in enumerate(self.tasks)}

    def cell(self, task: str, backend: str) -> CellResult | None:
        return next((r for r in self.tasks.get(task, []) if r.backend_label == backend), None)

    # -- summary
    def summary(self) -> str:
        out = ['<h2 id="summary">Summary leaderboard</h2>']
        if not self.results:
            return out[0] + f'<p class="notice">No results found in {esc(self.source)}.</p>'
        out.append('<p class="meta">First headline metric of each task, 95% CI in brackets. '
                   '<i>n/a</i>: not applicable to the backend (hover for why); <i>not run</i>: no '
                   'result for that cell; FAILED / skipped (data not found): hover, or see the task '
                   'section.</p>')
        header = ["backend"]
        firsts = {}
        for t, rs in self.tasks.items():
            firsts[t] = next((r.headline[0] for r in rs if r.status == "ok" and r.headline), "")
            header.append(f"{t} ({firsts[t]})" if firsts[t] else t)
        rows = []
        for b in self.backends:
            row = [backend_cell(b, self.colors)]
            for t in self.tasks:
                r = self.cell(t, b)
                bad = status_cell(r)
                if bad is not None:
                    row.append(bad)
                else:
                    row.append(td(*fmt_metric(r.metrics.get(firsts[t]) if firsts[t] else None)))
            rows.append(row)
        out.append(table(header, rows, "summary"))
        return "".join(out)

    # -- one task
    def task_section(self, task: str) -> str:
        rs = self.tasks[task]
        first = rs[0]
        out = [f'<h2 id="{self.anchor[task]}">{esc(task)}</h2>',
               f'<p class="meta">family <code>{esc(first.family)}</code> · task version '
               f'{esc(first.task_version)} · task hash <code>{esc(first.task_hash)}</code></p>']
        hashes = sorted({r.task_hash for r in rs})
        if len(hashes) > 1:
            out.append(f'<p class="error">Cells of this task come from different task definitions '
                       f'(hashes {esc(", ".join(hashes))}); their numbers are not comparable.</p>')
        ok = [r for r in rs if r.status == "ok"]
        for r in rs:
            if r.status == "skipped":
                msg = (r.error or {}).get("message", "")
                out.append(f'<div class="notice"><b>Skipped</b> (data not found) for '
                           f'{esc(", ".join(x.backend_label for x in rs if x.status == "skipped"))}'
                           f':<pre>{esc(msg)}</pre></div>')
                break
        columns: list[str] = []
        for r in ok:
            columns += [c for c in r.headline if c not in columns]
        rows = []
        for b in self.backends:
            r = self.cell(task, b)
            bad = status_cell(r)
            row = [backend_cell(b, self.colors)]
            if bad is not None:
                rows.append(row + [bad, td("")] + [td("") for _ in columns])
                continue
            rows.append(row + [td("ok"), td(_num(r.n) if r.n is not None else "", "num")]
                        + [td(*fmt_metric(r.metrics.get(c))) for c in columns])
        if ok or any(r.status != "skipped" for r in rs):
            out.append("<h3>Headline metrics</h3>")
            out.append(table(["backend", "status", "n"] + columns, rows))

        if ok:
            out.append("<h3>Plots</h3>")
            data = TaskData(task, first.family, ok, self.colors)
            for plot in make_plots(data, self.plot_fns(first.family)):
                out.append(self.plot_html(plot))
        out += self.breakdown_tables(ok)
        failed = [r for r in rs if r.status == "failed"]
        if failed:
            out.append("<h3>Failed cells</h3>")
        for r in failed:
            err = r.error or {}
            out.append(f'<div class="error"><b>{esc(r.backend_label)}</b> failed: '
                       f'{esc(err.get("type", ""))}: {esc(err.get("message", ""))}'
                       f'<details><summary>traceback</summary><pre>{esc(err.get("traceback", ""))}'
                       f'</pre></details></div>')
        out.append(self.cells_table(rs))
        return "".join(out)

    def plot_fns(self, family: str):
        """The plots the family declares (none for an unknown family: headline plot)."""
        spec = self.families.get(family) if family in self.families else None
        return family_plots(spec)

    @staticmethod
    def plot_html(plot: Plot) -> str:
        if plot.skipped:
            return (f'<p class="skipped-plot">Plot <b>{esc(plot.title)}</b> not drawn: '
                    f'{esc(plot.note)}</p>')
        png = base64.b64encode(figure_png(plot.figure)).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{png}" alt="{esc(plot.title)}">'
                f'<figcaption><b>{esc(plot.title)}.</b> {esc(plot.note)}</figcaption></figure>')

    def breakdown_tables(self, ok: list[CellResult]) -> list[str]:
        names: list[str] = []
        for r in ok:
            names += [n for n in r.tables if n not in names]
        out = []
        for name in names:
            cols: list[str] = []
            trows = []
            for r in sorted(ok, key=lambda x: x.backend_label):
                for row in r.tables.get(name) or []:
                    if not isinstance(row, dict):
                        continue
                    cols += [c for c in row if c not in cols]
                    trows.append((r.backend_label, row))
            body = [[backend_cell(b, self.colors)] +
                    [td("n/a", "na") if row.get(c) is None else
                     td(_num(row[c]), "num" if isinstance(row[c], (int, float)) else "")
                     for c in cols] for b, row in trows]
            tab = table(["backend"] + cols, body)
            if len(body) > LONG_TABLE:
                tab = f"<details><summary>{len(body)} rows</summary>{tab}</details>"
            out.append(f"<h3>{esc(name)}</h3>" + tab)
        return out

    def cells_table(self, rs: list[CellResult]) -> str:
        rows = []
        for r in sorted(rs, key=lambda x: x.backend_label):
            timings = ", ".join(f"{k} {_num(v, 2)} s" for k, v in (r.timings or {}).items())
            details = json.dumps(r.details, sort_keys=True, default=str)
            if len(details) > DETAILS_JSON_MAX:
                details = details[:DETAILS_JSON_MAX] + f" … ({len(details)} characters in all)"
            rows.append([backend_cell(r.backend_label, self.colors), td(r.status),
                         td(r.fingerprint or "–"), td(r.cell_id), td(r.seed, "num"),
                         td(_num(r.seconds, 2), "num"), td(timings), td(r.timestamp),
                         td(f"<details><summary>details</summary><pre>{esc(details)}</pre></details>",
                            raw=True)])
        return ("<details><summary>Cells: fingerprints, seeds, timings</summary>"
                + table(["backend", "status", "fingerprint", "cell", "seed", "seconds",
                         "timings", "timestamp", "details"], rows) + "</details>")

    # -- manifest
    @staticmethod
    def _listing(title: str, header: list[str], rows: list[list[str]]) -> str:
        body = table(header, rows) if rows else '<p class="meta">none recorded</p>'
        return f"<h3>{esc(title)}</h3>{body}"

    def manifest_section(self) -> str:
        out = ['<h2 id="manifest">Run manifest</h2>']
        m = self.manifest
        if m is None:
            out.append(f'<p class="notice">{esc(self.manifest_note)} The record below is rebuilt '
                       f'from the result files.</p>')
            versions: dict[str, set] = {}
            for r in self.results:
                for k, v in (r.versions or {}).items():
                    versions.setdefault(k, set()).add(str(v))
            out.append(self._listing("Versions", ["package", "version"],
                                     [[td(k), td(", ".join(sorted(v)))] for k, v in versions.items()]))
            tasks = {}
            for r in self.results:
                tasks.setdefault(r.task, r)
            out.append(self._listing(
                "Tasks", ["task", "family", "version", "hash"],
                [[td(t), td(r.family), td(r.task_version, "num"), td(r.task_hash)]
                 for t, r in tasks.items()]))
            out.append(self._listing(
                "Cells", ["task", "backend", "status", "seconds", "seed", "fingerprint", "cell"],
                [[td(r.task), backend_cell(r.backend_label, self.colors),
                  status_cell(r) or td("ok"), td(_num(r.seconds, 2), "num"), td(r.seed, "num"),
                  td(r.fingerprint or "–"), td(r.cell_id)] for r in self.results]))
            return "".join(out)
        if not isinstance(m, dict):
            return out[0] + '<p class="error">manifest.json is not a JSON object.</p>'
        facts = [[td(k), td(_num(m.get(k)) if m.get(k) is not None else "–")]
                 for k in ("timestamp", "seconds", "seed", "limit", "device") if k in m]
        out.append(table(["run", "value"], facts))
        versions = m.get("versions") or {}
        if isinstance(versions, dict):
            out.append(self._listing("Versions", ["package", "version"],
                                     [[td(k), td(v)] for k, v in versions.items()]))
        tasks = m.get("tasks") or {}
        if isinstance(tasks, dict):
            rows = []
            for name, t in tasks.items():
                t = t if isinstance(t, dict) else {}
                seen = {r.task_hash for r in self.tasks.get(name, [])}
                stale = seen and seen != {t.get("hash")}
                rows.append([td(name), td(t.get("family", "")), td(t.get("version", ""), "num"),
                             td(t.get("hash", ""), "failed" if stale else "",
                                "results carry other task hashes: " + ", ".join(sorted(seen))
                                if stale else ""),
                             td(t.get("file", ""))])
            out.append(self._listing("Tasks", ["task", "family", "version", "hash", "file"], rows))
        backends = m.get("backends") or []
        if isinstance(backends, list):
            out.append(self._listing(
                "Backends", ["backend", "arguments"],
                [[td(b.get("name", "") if isinstance(b, dict) else b),
                  td(json.dumps(b.get("args", {}), sort_keys=True, default=str)
                     if isinstance(b, dict) else "")] for b in backends]))
        cells = m.get("cells") or []
        if isinstance(cells, list):
            rows = []
            for c in cells:
                if not isinstance(c, dict):
                    continue
                status = c.get("status", "")
                cls = "failed" if status == "failed" else "skipped" if status == "skipped" else ""
                rows.append([td(c.get("task", "")), backend_cell(str(c.get("backend", "")), self.colors),
                             td(status, cls), td(_num(c.get("seconds", "")), "num"),
                             td(c.get("fingerprint") or "–"), td(c.get("cell_id", ""))])
            out.append(self._listing(
                "Cells", ["task", "backend", "status", "seconds", "fingerprint", "cell"], rows))
        return "".join(out)

    def problems_section(self) -> str:
        if not self.problems:
            return ""
        items = "".join(f"<li>{esc(p)}</li>" for p in self.problems)
        return f'<h2 id="problems">Unreadable result files</h2><ul class="error">{items}</ul>'

    def render(self) -> str:
        toc = "".join(f'<li><a href="#{self.anchor[t]}">{esc(t)}</a></li>' for t in self.tasks)
        counts = {s: sum(r.status == s for r in self.results) for s in ("ok", "failed", "skipped")}
        body = [f"<h1>{esc(self.title)}</h1>",
                f'<p class="meta">Results from <code>{esc(self.source)}</code> · generated '
                f'{esc(now_iso())} · {len(self.tasks)} task(s), {len(self.backends)} backend(s), '
                f'{counts["ok"]} ok, {counts["failed"]} failed, {counts["skipped"]} skipped</p>',
                f'<nav><ul><li><a href="#summary">Summary leaderboard</a></li>{toc}'
                f'<li><a href="#manifest">Run manifest</a></li></ul></nav>',
                self.summary()]
        body += [self.task_section(t) for t in self.tasks]
        body += [self.manifest_section(), self.problems_section()]
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{esc(self.title)}</title><style>{STYLE}</style></head>"
                f"<body><main>{''.join(body)}</main></body></html>\n")


# ----------------------------------------------------------------------------- API
def render_html(results: list[CellResult], manifest: dict | None = None, *,
                problems: list[str] | None = None, title: str = "ctxbench report",
                source: str = "", manifest_note: str = "No manifest.json was given.",
                families=None) -> str:
    """The report page as a string (results: one per task x backend, as
    :func:`ctxbench.leaderboard.latest_results` returns them). ``families`` is the
    family registry whose declared plots are drawn (default: the installed plugins')."""
    if families is None:
        from ..plugin_host import load_plugins
        families = load_plugins().families
    page = _Page(results, manifest, manifest_note, problems or [], title, source)
    page.families = families
    return page.render()


def read_manifest(results_dir: Path) -> tuple[dict | None, str]:
    """(manifest or None, why it is absent or unreadable)."""
    path = Path(results_dir) / "manifest.json"
    if not path.is_file():
        return None, f"No manifest.json in {results_dir} (ctxbench run writes one)."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path} is unreadable ({exc}); re-run to rewrite it."
    if not isinstance(data, dict):
        return None, f"{path} is not a JSON object; re-run to rewrite it."
    return data, ""


def write_report(results_dir: str | Path, out: str | Path | None = None,
                 title: str | None = None, families=None) -> Path:
    """Write the HTML report of a results folder; returns the file written.

    ``out`` defaults to ``<results_dir>.html`` beside the folder (as the markdown
    leaderboard's ``<results_dir>.md``). Raises CtxbenchError if ``results_dir`` is
    not a folder.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise CtxbenchError(f"--results {results_dir}: not a folder of results JSON "
                            f"(ctxbench run writes them to results/<name>/)")
    results, problems = latest_results(results_dir)
    manifest, note = read_manifest(results_dir)
    out = Path(out) if out else results_dir.parent / f"{results_dir.name}.html"
    page = render_html(results, manifest, problems=problems, manifest_note=note,
                       title=title or f"ctxbench report: {results_dir.name}", source=str(results_dir),
                       families=families)
    write_text(out, page)
    return out
