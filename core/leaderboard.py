"""Markdown leaderboards (tabulate) from a folder of results JSON.

One section per task: a headline table (backend rows, the task's headline metric
columns, "value [lo, hi]", an arrow for the better direction), then the family's
breakdown tables, with a backend column. Failed and skipped cells appear as such,
never averaged over. A summary table gives each backend's first headline metric per
task, with a legend of the arrows and of the signed metrics shown.

Every name that comes from a plugin, task file or dataset goes through
:func:`md_escape` (text) or :func:`md_code` (a code span, where markdown processes
no backslash escape, so the name is fenced instead); tests render the page through
a CommonMark renderer and find every name literally.

A run passes the (task, backend label) cells it asked for (``cells=``): the
leaderboard then shows only those, so cells left in the folder by earlier runs (a
typo'd backend, an older backend) do not linger; ``include_older=True`` adds them,
marked "(older run)".
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable

from tabulate import tabulate

from .io.atomic import write_text
from .results import CellResult, MetricValue, iter_results

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|$~])")
_ENTITY_LIKE = re.compile(r"&(?=#?\w+;)")      # only these would be read as an entity
_BACKTICKS = re.compile(r"`+")
OLDER = "(older run)"

# ----------------------------------------------------------------------------- direction
# The better direction of a metric, from its emitted name: the last path component
# (case-insensitive, full match), else "<group>/<key>" for per-key groups
# (``zero_shot/class_accuracy/awe``). True: higher is better; False: lower. A name
# no rule matches has no known direction (``rho``: its sign depends on the swept
# parameter; ``query_divergence``, ``gate_mean``: descriptive). One table, one place.
DIRECTIONS: tuple[tuple[str, bool], ...] = (
    (r"srcc|lcc|lcc_logistic", True),                          # correlations with MOS
    (r"r@\d+", True),                                          # Recall@k
    (r"(map|ndcg)(_(avg|v2t|t2v))?", True),                    # retrieval mAP / nDCG
    (r"top1|source_top1|mpca|mpca_present|accuracy|top1_accuracy", True),
    (r"(weighted_|macro_)?f1|f1_positive", True),
    (r"agreement|contribution|gain|gain_seeds|gain_mpca|gain_mpca_seeds|gain_significant", True),
    (r"(class_accuracy|contribution|accuracy_without)/[^/]+", True),
    (r"error|error_var|error_std|kl|emd|nima_emd|drop", False),
)
_DIRECTION_RULES = [(re.compile(p, re.IGNORECASE), up) for p, up in DIRECTIONS]


def metric_direction(name: str) -> bool | None:
    """True if higher is better for the metric named ``name`` (e.g. ``tag_aware/SRCC``,
    ``L1/no_ctx/R@1``, ``map_avg``), False if lower is, None if unknown."""
    parts = str(name).split("/")
    for candidate in (parts[-1], "/".join(parts[-2:]) if len(parts) > 1 else None):
        if candidate is None:
            continue
        for rule, up in _DIRECTION_RULES:
            if rule.fullmatch(candidate):
                return up
    return None


def arrow(name: str) -> str:
    """" ↑" / " ↓" after a metric name whose better direction is known, else ""."""
    up = metric_direction(name)
    return "" if up is None else (" ↑" if up else " ↓")


# Legend lines for signed metrics, each shown when a headline metric matches its pattern.
SIGN_LEGEND: tuple[tuple[str, str], ...] = (
    (r"(^|/)(agreement|rho)$",
     "`rho`: the raw Spearman correlation between score and the swept parameter (mean over "
     "prompts); `agreement` = `rho` x the expected sign (+1 for a CFG scale, -1 for a "
     "degradation level), so `agreement` is positive when the score falls as degradation "
     "rises (or rises with CFG), 1 = perfect ordering; `rho` has no better direction."),
    (r"^gain/", "`gain/X`: tag_aware X minus image_only X (its arrow is X's: for Error, KL, "
     "EMD a negative gain is the improvement)."),
    (r"-no_ctx/", "`P-no_ctx/R@k`: R@k with context pattern P minus R@k with no context; "
     "positive = the context helps."),
    (r"/adapt/gain", "`adapt/gain`: adapt top1 minus source_only top1 (the same training "
     "with the adaptation off); `drop`: source_top1 minus top1 (lower is better)."),
    (r"^fusion_gain/", "`fusion_gain/X`: fusion_probe X minus image_probe X; positive = the "
     "metadata helps."),
    (r"^image_gain/", "`image_gain/X`: image_probe X minus zero_shot X; positive = a probe on "
     "the image features beats zero-shot."),
)


def legend_lines(metrics: Iterable[str]) -> list[str]:
    """The legend under the summary: the arrows, then each sign convention that one of
    ``metrics`` (the headline metric names shown) uses."""
    names = list(metrics)
    out = ["↑ higher is better, ↓ lower is better (from the metric's name, "
           "`ctxbench.leaderboard.DIRECTIONS`); no arrow: no better direction."]
    out += [text for pattern, text in SIGN_LEGEND if any(re.search(pattern, n) for n in names)]
    return out


# ----------------------------------------------------------------------------- text
def _flat(text: Any) -> str:
    return str(text).replace("\r", " ").replace("\n", " ")


def md_escape(text: Any) -> str:
    """Backslash-escape markdown/HTML-significant characters and flatten newlines, for
    text outside code spans (``&`` only where it would start an entity)."""
    return _ENTITY_LIKE.sub(r"\\&", _MD_SPECIAL.sub(r"\\\1", _flat(text)))


def md_code(text: Any, in_table: bool = True) -> str:
    """``text`` as a code span that renders literally: inside backticks markdown
    processes no escape, so nothing is backslash-escaped; a fence one backtick longer
    than the longest run inside (padded with a space where the text starts or ends
    with a backtick or a space) keeps a backtick from closing it. In a table, ``|``
    must still be ``\\|`` (GFM splits cells first and removes that backslash)."""
    s = _flat(text)
    if not s:
        return ""
    if in_table:
        s = s.replace("|", "\\|")
    fence = "`" * (max((len(m) for m in _BACKTICKS.findall(s)), default=0) + 1)
    pad = " " if s[0] in "` " or s[-1] in "` " else ""
    return f"{fence}{pad}{s}{pad}{fence}"


# ----------------------------------------------------------------------------- numbers
def fmt_number(x: Any) -> str:
    """One format for every float of a leaderboard or report: 3 decimals in
    [-1000, 1000] (``0.250``), scientific with 2 decimals (``-3.73e-04``) for a
    non-zero value that would show as 0.000 and beyond +-1000; ints as they are."""
    if x is None:
        return "n/a"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return "n/a"
    if x != 0 and (abs(x) < 5e-4 or abs(x) > 1000):
        return f"{x:.2e}"
    return f"{x:.3f}"


def fmt_metric(m: MetricValue | None) -> str:
    """"value [lo, hi] (p=...)" of a metric, "–" when absent, "n/a" when not applicable."""
    if m is None:
        return "–"
    if m.value is None or (isinstance(m.value, float) and not math.isfinite(m.value)):
        return "n/a"
    text = fmt_number(float(m.value))
    if m.ci is not None and m.ci[0] is not None and m.ci[1] is not None:
        text += f" [{fmt_number(float(m.ci[0]))}, {fmt_number(float(m.ci[1]))}]"
    if m.p_value is not None:
        text += f" (p={float(m.p_value):.2g})"
    return text


def _fmt_cell(value: Any) -> str:
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt_number(value)
    return md_escape(value)


_NUMBER = re.compile(r"-?\d+(\.\d+)?(e[+-]\d+)?|n/a|–|")


def md_table(rows: list[list[Any]], header: list[str]) -> str:
    """A GitHub table that keeps each cell's text as given (no re-parsing of numbers,
    which would print ``0.25`` for ``0.250``); all-number columns right-aligned."""
    align = ["right" if rows and all(_NUMBER.fullmatch(str(r[i])) for r in rows) else "left"
             for i in range(len(header))]
    return tabulate(rows, header, tablefmt="github", disable_numparse=True, colalign=align)


# ----------------------------------------------------------------------------- results
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


def select_cells(results: list[CellResult], cells: set[tuple[str, str]] | None,
                 include_older: bool = False) -> tuple[list[CellResult], set[tuple[str, str]]]:
    """(results to show, keys of those from earlier runs). ``cells``: the (task,
    backend label) pairs of the current run, None for every result in the folder;
    the others are dropped unless ``include_older``, then returned as older."""
    if cells is None:
        return results, set()
    cells = {(str(t), str(b)) for t, b in cells}
    keep = [r for r in results if include_older or (r.task, r.backend_label) in cells]
    return keep, {(r.task, r.backend_label) for r in keep} - cells


def _status_text(r: CellResult) -> str:
    if r.status == "failed":
        return f"FAILED: {md_escape(r.error['type'] if r.error else '?')}"
    if r.status == "skipped":
        return "skipped (data not found)"
    return ""


class _Board:
    """The markdown page of one set of results (see :func:`render_markdown`)."""

    def __init__(self, results: list[CellResult], older: set[tuple[str, str]]):
        self.tasks: dict[str, list[CellResult]] = {}
        for r in results:
            self.tasks.setdefault(r.task, []).append(r)
        self.backends = sorted({r.backend_label for r in results})
        self.older = older
        self.ran = [t for t, rs in self.tasks.items() if any(r.status != "skipped" for r in rs)]

    def mark(self, r: CellResult, text: str) -> str:
        return f"{text} {OLDER}" if (r.task, r.backend_label) in self.older else text

    def value(self, r: CellResult, metric: str) -> str:
        """A metric cell; a result computed with --limit is marked partial."""
        text = fmt_metric(r.metrics.get(metric))
        return self.mark(r, f"{text} (partial: --limit {r.limit})" if r.limit is not None else text)

    def summary(self) -> list[str]:
        lines = ["## Summary", "", "Each task's first headline metric, one column per backend "
                 "(95% CI in brackets). `n/a`: the backend lacks a needed capability; "
                 "`–`: not run." + (f" {OLDER}: a cell from an earlier run in this folder, "
                                    "not part of this run." if self.older else ""), ""]
        rows, shown = [], []
        for t in self.ran:
            rs = self.tasks[t]
            metric = next((r.headline[0] for r in rs if r.status == "ok" and r.headline), "")
            shown.append(metric)
            row = [md_escape(t), md_code(metric) + arrow(metric) if metric else ""]
            for b in self.backends:
                r = next((x for x in rs if x.backend_label == b), None)
                if r is None:
                    row.append("–")
                elif r.status != "ok":
                    row.append(self.mark(r, _status_text(r)))
                else:
                    row.append(self.value(r, metric) if metric else "–")
            rows.append(row)
        if rows:
            lines += [md_table(rows, ["task", "metric"] + [md_escape(b) for b in self.backends]), ""]
            heads = [c for rs in self.tasks.values() for r in rs for c in r.headline]
            lines += [f"- {line}" for line in legend_lines(heads)] + [""]
        skipped = [t for t in self.tasks if t not in self.ran]
        if skipped:
            lines += ["Skipped, data not found (each section below says how to get it): " +
                      ", ".join(md_escape(t) for t in skipped) + ".", ""]
        return lines

    def task(self, task: str) -> list[str]:
        rs = self.tasks[task]
        lines = [f"## {md_escape(task)}", "",
                 f"Family: {md_code(rs[0].family, False)}; task hash "
                 f"{md_code(rs[0].task_hash, False)}.", ""]
        skip = next((r for r in rs if r.status == "skipped" and r.error), None)
        if skip is not None:
            lines += [f"Skipped (data not found): {md_escape(skip.error['message'])}", ""]
        if task not in self.ran:
            return lines
        ok = [r for r in rs if r.status == "ok"]
        columns: list[str] = []
        for r in ok:
            columns += [c for c in r.headline if c not in columns]
        rows = []
        for r in sorted(rs, key=lambda x: x.backend_label):
            if r.status != "ok":  # status in the n column, the metric columns left empty
                rows.append([md_escape(r.backend_label), self.mark(r, _status_text(r))]
                            + [""] * len(columns))
                continue
            rows.append([md_escape(r.backend_label), r.n if r.n is not None else ""] +
                        [self.value(r, c) for c in columns])
        lines += [md_table(rows, ["backend", "n"] + [md_escape(c) + arrow(c) for c in columns]), ""]
        lines += self.breakdowns(ok)
        failed = [r for r in rs if r.status == "failed"]
        lines += [f"- {md_escape(r.backend_label)} failed: "
                  f"{md_escape(r.error['message'] if r.error else '')}" for r in failed]
        return lines + ([""] if failed else [])

    def breakdowns(self, ok: list[CellResult]) -> list[str]:
        names: list[str] = []
        for r in ok:
            names += [n for n in r.tables if n not in names]
        lines = []
        for name in names:
            cols: list[str] = []
            trows = []
            for r in ok:
                for row in r.tables.get(name, []):
                    cols += [c for c in row if c not in cols]
                    trows.append((self.mark(r, md_escape(r.backend_label)), row))
            lines += [f"**{md_escape(name)}**", ""]
            lines += [md_table([[b] + [_fmt_cell(row.get(c)) for c in cols] for b, row in trows],
                               ["backend"] + [md_escape(c) for c in cols]), ""]
        return lines


def metric_definitions(metric_specs, families: set[str]) -> list[str]:
    """Markdown lines: each registered metric of ``families`` with its direction,
    definition and reference (the metric registry's own words)."""
    rows = []
    for name in metric_specs.names():
        spec = metric_specs.get(name)
        if spec.family in families or spec.family == "any":
            direction = "higher is better" if spec.higher_is_better else "lower is better"
            rows.append([md_escape(spec.family), md_code(name), direction,
                         md_escape(spec.description), md_escape(spec.reference)])
    if not rows:
        return []
    return ["## Metric definitions", "", "From the metric registry (`ctxbench list metrics`); "
            "docs/families.md gives each family's metric names and conventions.", "",
            md_table(rows, ["family", "metric", "direction", "definition", "reference"]), ""]


def render_markdown(results: list[CellResult], title: str = "ctxbench leaderboard",
                    problems: list[str] | None = None, metric_specs=None,
                    older: set[tuple[str, str]] | None = None) -> str:
    """The leaderboard page; ``older``: (task, backend label) keys of cells from earlier
    runs, marked as such."""
    board = _Board(results, older or set())
    lines = [f"# {md_escape(title)}", ""] + board.summary()
    for task in board.tasks:
        lines += board.task(task)
    if metric_specs is not None:
        lines += metric_definitions(metric_specs, {r.family for r in results})
    if problems:
        lines += ["## Unreadable result files", ""] + [f"- {md_escape(p)}" for p in problems] + [""]
    return "\n".join(lines).rstrip() + "\n"


def write_leaderboard(results_dir: Path, out: Path, title: str | None = None,
                      metric_specs=None, *, cells: set[tuple[str, str]] | None = None,
                      include_older: bool = False) -> Path:
    """Write the markdown leaderboard of a results folder; ``metric_specs`` (the
    plugin host's metric registry) adds the metric definitions section. ``cells``:
    the (task, backend label) pairs the current run asked for, shown alone (None:
    every result in the folder); ``include_older`` adds the folder's other cells,
    marked "(older run)"."""
    results, problems = latest_results(results_dir)
    results, older = select_cells(results, cells, include_older)
    write_text(out, render_markdown(results, title or f"ctxbench leaderboard: {Path(results_dir).name}",
                                    problems, metric_specs, older))
    return out
