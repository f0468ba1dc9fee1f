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


def _number_or_none(x: Any) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"expected a number or null, got {x!r:.40}")
    return float(x)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None and numpy scalars/arrays made
    plain, so that a NaN in a family's tables or details can never stop a result from
    being written (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):   # numpy / torch
        return json_safe(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


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
        """Raises ValueError when ``d`` is not a metric of the documented shape."""
        if not isinstance(d, dict):
            raise ValueError(f"a metric must be an object, got {type(d).__name__}")
        ci = d.get("ci")
        value, p_value = _number_or_none(d.get("value")), _number_or_none(d.get("p_value"))
        if ci is not None:
            if not isinstance(ci, (list, tuple)) or len(ci) != 2:
                raise ValueError(f"'ci' must be [low, high], got {ci!r:.40}")
            ci = (_number_or_none(ci[0]), _number_or_none(ci[1]))
        n = d.get("n")
        if n is not None and (not isinstance(n, int) or isinstance(n, bool)):
            raise ValueError(f"'n' must be an integer, got {n!r:.40}")
        return cls(value, ci, n, p_value, str(d.get("note", "")))

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
        return json_safe(d)

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str = "") -> "CellResult":
        if not isinstance(d, dict):
            raise CtxbenchError(f"{source}: a result must be a JSON object, got "
                                f"{type(d).__name__}; delete the file and re-run the cell")
        if d.get("schema_version") != SCHEMA_VERSION:
            raise CtxbenchError(f"{source}: results schema_version {d.get('schema_version')!r} "
                                f"is not {SCHEMA_VERSION}; re-run with this ctxbench version")
        if d.get("status") not in STATUSES:
            raise CtxbenchError(f"{source}: field 'status' must be one of {STATUSES}")
        d = dict(d)
        metrics = d.get("metrics") or {}
        if not isinstance(metrics, dict):
            raise CtxbenchError(f"{source}: field 'metrics' must be an object")
        try:
            d["metrics"] = {str(k): MetricValue.from_json(v) for k, v in metrics.items()}
        except ValueError as exc:
            raise CtxbenchError(f"{source}: field 'metrics': {exc}; delete the file and re-run "
                                "the cell") from None
        for name, kind in (("task", str), ("backend_label", str), ("cell_id", str),
                           ("headline", list), ("tables", dict), ("details", dict)):
            if name in d and not isinstance(d[name], kind):
                raise CtxbenchError(f"{source}: field {name!r} must be a {kind.__name__}; delete "
                                    "the file and re-run the cell")
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


TASK_FOLDER_MAX = 100


def task_folder(task: str) -> str:
    """The folder a task's results go in: its name, shortened with a hash suffix when
    it is too long for a file name (task names may be up to any length)."""
    if len(task) <= TASK_FOLDER_MAX:
        return task
    import hashlib
    return f"{task[:TASK_FOLDER_MAX - 17]}-{hashlib.sha256(task.encode()).hexdigest()[:16]}"


def result_path(output_dir: Path, result: CellResult) -> Path:
    """Results live at <output_dir>/<task>/<cell_id>.json (the cell hash names the file)."""
    return Path(output_dir) / task_folder(result.task) / f"{result.cell_id}.json"


def write_result(output_dir: Path, result: CellResult) -> Path:
    path = result_path(output_dir, result)
    write_json(path, result.to_json())
    return path


def read_result(path: Path) -> CellResult:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CtxbenchError(f"{path}: not valid JSON ({exc}); delete it and re-run the cell") from exc
    except OSError as exc:
        raise CtxbenchError(f"{path}: unreadable ({exc})") from exc
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
