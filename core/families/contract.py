"""What a family evaluator receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..results import MetricValue
from ..task_config import TaskConfig


@dataclass
class Dependency:
    """Another task this one needs (``depends_on:`` in its YAML), loaded by the runner."""

    task: TaskConfig
    dataset: Any
    protocol: dict[str, Any]     # that task's family defaults overridden by its protocol


@dataclass
class EvalRequest:
    task: TaskConfig
    dataset: Any                 # whatever the task's loader returned
    encoder: Any                 # ctxbench.encoder.CachedEncoder
    protocol: dict[str, Any]     # family defaults overridden by the task's protocol
    seed: int = 0
    artifact_dir: Path | None = None  # where large per-cell outputs may be written
    device: str = "cpu"          # for probe training
    dependencies: dict[str, Dependency] = field(default_factory=dict)  # role -> task
    # where deterministic evaluator work (trained probes) is remembered across runs:
    # a ctxbench.cache.ArtifactMemo, None under --no-cache (ctxbench.probe.probe_memo)
    memo: Any = None
    cache_identity: str = ""     # the backend's embedding-cache identity (runner.cache_identity)


@dataclass
class FamilyOutput:
    metrics: dict[str, MetricValue]
    headline: list[str]                                   # leaderboard columns, in order
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    n: int | None = None                                  # evaluation items
