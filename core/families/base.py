"""What a family evaluator receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..results import MetricValue
from ..taskspec import TaskSpec


@dataclass
class EvalRequest:
    task: TaskSpec
    dataset: Any                 # whatever the task's loader returned
    encoder: Any                 # ctxbench.encoder.CachedEncoder
    protocol: dict[str, Any]     # family defaults overridden by the task's protocol
    seed: int = 0
    artifact_dir: Path | None = None  # where large per-cell outputs may be written
    device: str = "cpu"          # for probe training


@dataclass
class FamilyOutput:
    metrics: dict[str, MetricValue]
    headline: list[str]                                   # leaderboard columns, in order
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    n: int | None = None                                  # evaluation items
