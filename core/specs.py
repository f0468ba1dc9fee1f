"""Registration records for everything a plugin can add besides backends.

(Backends are described in backend.py, with their contract.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class LoadContext:
    """What a dataset loader gets besides its YAML ``options``."""

    task_name: str
    task_file: Path          # relative paths in options resolve against its folder
    seed: int = 0
    limit: int | None = None  # --limit: keep at most this many evaluation items


@dataclass(frozen=True)
class LoaderSpec:
    """A dataset loader: ``load(options: dict, ctx: LoadContext) -> dataset object``.

    It raises ``DataNotFound`` (with instructions) when the data is not on disk,
    ``DatasetFormatError`` when a file is malformed. ``options`` documents the
    accepted keys (name -> one-line description); unknown keys are refused when a
    task is validated.
    """

    name: str
    load: Callable[[dict[str, Any], LoadContext], Any]
    family: str
    description: str = ""
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSpec:
    """A metric function, listed by ``ctxbench list metrics``.

    ``reference`` cites the paper or official code the formula follows."""

    name: str
    fn: Callable[..., Any]
    description: str
    family: str = "any"
    higher_is_better: bool = True
    reference: str = ""


@dataclass(frozen=True)
class FamilySpec:
    """A task family: the evaluator that a task's ``family:`` field selects.

    ``evaluate(request: EvalRequest) -> FamilyOutput`` (see families/base.py).
    ``protocol_defaults`` lists every protocol option with its default; task YAMLs
    may override these keys and no others.
    """

    name: str
    evaluate: Callable[..., Any]
    description: str = ""
    protocol_defaults: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()  # metric names a task may list as headline columns
