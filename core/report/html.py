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
import json
from pathlib import Path

from ..io.atomic import write_text
from ..io.portable import portable_path
from ..errors import CtxbenchError
from ..leaderboard import arrow, latest_results, select_cells
from ..results import CellResult, now_iso
from .colors import backend_colors
from .drawing import Plot, TaskData, figure_png
from .plots import family_plots, make_plots
from .tables import (backend_cell, cells_table, esc, mark_older, metric_cell, num,
                     seconds, status_cell, summary_table, table, td)

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
table.summary td.metric{white-space:nowrap}
ul.legend{font-size:.85rem;color:#333;margin:.2rem 0 .8rem;padding-left:1.2rem;max-width:72rem}
.skipped-tasks{font-size:.88rem;color:#444;max-width:72rem}
span.older{color:#7a5a00;font-style:italic;font-size:.8em}
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

LONG_TABLE = 30          # breakdown tables longer than this start collapsed


# ----------------------------------------------------------------------------- sections
class _Page:
    def __init__(self, results: list[CellResult], manifest: dict | None, manifest_note: str,
                 problems: list[str], title: str, source: str,
                 older: set[tuple[str, str]] = frozenset()):
        self.results = results
        self.older = set(older)
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
                   'section.' + (' <i>(older run)</i>: a cell from an earlier run in this folder, '
                                 'not part of this run.' if self.older else '') + '</p>')
        out.append(summary_table(self.tasks, self.backends, self.colors, self.anchor, self.is_older))
        return "".join(out)

    def is_older(self, r: CellResult) -> bool:
        return (r.task, r.backend_label) in self.older

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
            older = r is not None and self.is_older(r)
            if bad is not None:
                rows.append(row + [mark_older(bad, older), td("")] + [td("") for _ in columns])
                continue
            rows.append(row + [mark_older(td("ok"), older), td(num(r.n), "num")]
                        + [metric_cell(r, c) for c in columns])
        if ok or any(r.status != "skipped" for r in rs):
            out.append("<h3>Headline metrics</h3>")
            out.append(table(["backend", "status", "n"] + [c + arrow(c) for c in columns], rows))

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
        out.append(cells_table(rs, self.colors))
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
                     td(num(row[c]), "num" if isinstance(row[c], (int, float)) else "")
                     for c in cols] for b, row in trows]
            tab = table(["backend"] + cols, body)
            if len(body) > LONG_TABLE:
                tab = f"<details><summary>{len(body)} rows</summary>{tab}</details>"
            out.append(f"<h3>{esc(name)}</h3>" + tab)
        return out

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
                  status_cell(r) or td("ok"), td(seconds(r.seconds), "num"), td(r.seed, "num"),
                  td(r.fingerprint or "–"), td(r.cell_id)] for r in self.results]))
            return "".join(out)
        if not isinstance(m, dict):
            return out[0] + '<p class="error">manifest.json is not a JSON object.</p>'
        facts = [[td(k), td(num(m.get(k)) if m.get(k) is not None else "–")]
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
                             td(status, cls), td(num(c.get("seconds", "")), "num"),
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
                families=None, older: set[tuple[str, str]] | None = None) -> str:
    """The report page as a string (results: one per task x backend, as
    :func:`ctxbench.leaderboard.latest_results` returns them). ``families`` is the
    family registry whose declared plots are drawn (default: the installed plugins');
    ``older``: (task, backend label) keys of cells from earlier runs, marked as such."""
    if families is None:
        from ..plugin_host import load_plugins
        families = load_plugins().families
    page = _Page(results, manifest, manifest_note, problems or [], title, source, older or set())
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
                 title: str | None = None, families=None, *,
                 cells: set[tuple[str, str]] | None = None, include_older: bool = False) -> Path:
    """Write the HTML report of a results folder; returns the file written.

    ``out`` defaults to ``<results_dir>.html`` beside the folder (as the markdown
    leaderboard's ``<results_dir>.md``). Raises CtxbenchError if ``results_dir`` is
    not a folder. ``cells`` / ``include_older``: as for
    :func:`ctxbench.leaderboard.write_leaderboard` (only the current run's cells; the
    folder's others only when asked, marked "(older run)").
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise CtxbenchError(f"--results {results_dir}: not a folder of results JSON "
                            f"(ctxbench run writes them to results/<name>/)")
    results, problems = latest_results(results_dir)
    results, older = select_cells(results, cells, include_older)
    manifest, note = read_manifest(results_dir)
    out = Path(out) if out else results_dir.parent / f"{results_dir.name}.html"
    page = render_html(results, manifest, problems=problems, manifest_note=note,
                       title=title or f"ctxbench report: {results_dir.name}", source=portable_path(results_dir),
                       families=families, older=older)
    write_text(out, page)
    return out
