"""Typed results: one JSON file per (backend x task) cell.

Schema (``schema_version`` 1), every key always present::

    cell_id, status ("ok" | "failed" | "skipped"), task, task_hash, task_version,
    family, backend, backend_args, backend_label, fingerprint,
    metrics: {name: {value, ci: [lo, hi] | null, n, p_value, note}},
    headline: [metric names shown in the leaderboard],
    tables: {name: [row dict, ...]}   # family-specific breakdowns
    details: {...}                    # split sizes, captions, learned weights...
    n, seconds, timings, encoder_stats, seed, limit, versions, timestamp,
    error: null | {type, message, traceback}
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .io.atomic import write_json
from .errors import CtxbenchError

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "skipped")


@dataclass
class MetricValue:
    """A metric with its 95% CI; ``value=None`` means not applicable (``note`` says why)."""

    value: float | None
    ci: tuple[float, float] | None = None
    n: int | None = None
    p_value: float | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        def clean(x):
            return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)
        return {"value": clean(self.value),
                "ci": None if self.ci is None else [clean(self.ci[0]), clean(self.ci[1])],
                "n": self.n, "p_value": clean(self.p_value), "note": self.note}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "MetricValue":
        ci = d.get("ci")
        return cls(d.get("value"), None if ci is None else (ci[0], ci[1]), d.get("n"),
                   d.get("p_value"), d.get("note", ""))

    @classmethod
    def not_applicable(cls, why: str) -> "MetricValue":
        return cls(None, note=f"n/a: {why}")


@dataclass
class CellResult:
    cell_id: str
    status: str
    task: str
    task_hash: str
    task_version: int
    family: str
    backend: str
    backend_args: dict[str, Any]
    backend_label: str
    fingerprint: str | None
    metrics: dict[str, MetricValue] = field(default_factory=dict)
    headline: list[str] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    n: int | None = None
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    encoder_stats: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    limit: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    timestamp: str = ""
    error: dict[str, str] | None = None
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = {k: v.to_json() for k, v in self.metrics.items()}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str = "") -> "CellResult":
        if d.get("schema_version") != SCHEMA_VERSION:
            raise CtxbenchError(f"{source}: results schema_version {d.get('schema_version')!r} "
                                f"is not {SCHEMA_VERSION}; re-run with this ctxbench version")
        if d.get("status") not in STATUSES:
            raise CtxbenchError(f"{source}: field 'status' must be one of {STATUSES}")
        d = dict(d)
        d["metrics"] = {k: MetricValue.from_json(v) for k, v in d.get("metrics", {}).items()}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    """Versions recorded in every result (reproducibility)."""
    import importlib.metadata as md

    from . import __version__
    out = {"ctxbench": __version__, "python": platform.python_version()}
    for dist in ("torch", "transformers", "open_clip_torch", "numpy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def result_path(output_dir: Path, result: CellResult) -> Path:
    """Results live at <output_dir>/<task>/<cell_id>.json (the cell hash names the file)."""
    return Path(output_dir) / result.task / f"{result.cell_id}.json"


def write_result(output_dir: Path, result: CellResult) -> Path:
    path = result_path(output_dir, result)
    write_json(path, result.to_json())
    return path


def read_result(path: Path) -> CellResult:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise CtxbenchError(f"{path}: not valid JSON ({exc}); delete it and re-run the cell") from exc
    return CellResult.from_json(data, str(path))


def iter_results(results_dir: Path):
    """Every readable result under ``results_dir`` (unreadable ones are reported)."""
    for path in sorted(Path(results_dir).rglob("*.json")):
        if path.name.startswith(".") or path.name == "manifest.json":
            continue
        try:
            yield path, read_result(path), None
        except CtxbenchError as exc:
            yield path, None, str(exc)
