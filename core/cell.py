"""A cell: one backend (with its arguments) on one task. Frozen, serialisable, hashed.

The content hash names the cell's result file, so any launcher can be restarted:
a cell whose valid result exists is skipped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from . import __version__


def backend_label(name: str, args: dict[str, Any]) -> str:
    """How a backend appears in tables: ``name`` or ``name(k=v, ...)``."""
    if not args:
        return name
    return f"{name}({', '.join(f'{k}={args[k]}' for k in sorted(args))})"


@dataclass(frozen=True)
class Cell:
    backend: str
    backend_args: tuple[tuple[str, Any], ...]
    task: str
    task_hash: str
    seed: int = 0
    limit: int | None = None
    ctxbench_version: str = field(default=__version__)

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.backend_args)

    @property
    def label(self) -> str:
        return backend_label(self.backend, self.args)

    @property
    def cell_id(self) -> str:
        doc = json.dumps(asdict(self), sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()[:20]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["backend_args"] = self.args
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Cell":
        d = dict(d)
        d["backend_args"] = tuple(sorted(d.get("backend_args", {}).items()))
        return cls(**d)

    @classmethod
    def make(cls, backend: str, args: dict[str, Any], task, seed: int = 0,
             limit: int | None = None) -> "Cell":
        return cls(backend, tuple(sorted(args.items())), task.name, task.hash, seed, limit)
