"""Registration records for everything a plugin can add besides backends.

(Backends are described in backend.py, with their contract.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence


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

    * ``evaluate(request: EvalRequest) -> FamilyOutput`` (see families/contract.py).
    * ``protocol_defaults`` lists every protocol option with its default; task YAMLs
      may override these keys and no others.
    * ``check_protocol(protocol)`` (optional) checks the merged protocol's values and
      raises :class:`ctxbench.errors.ProtocolError` naming the option; it runs when a
      task is validated, so a typo never reaches a run.
    * ``metric_names(protocol)`` (optional) returns every metric name the evaluator
      can emit under that protocol; a task's headline ``metrics:`` must be among them.
    * ``plots()`` (optional, lazy so that matplotlib loads only for a report) returns
      the family's report plot functions ``(TaskData) -> Iterable[Plot]``.
    """

    name: str
    evaluate: Callable[..., Any]
    description: str = ""
    protocol_defaults: dict[str, Any] = field(default_factory=dict)
    check_protocol: Callable[[dict[str, Any]], None] | None = None
    metric_names: Callable[[dict[str, Any]], Iterable[str]] | None = None
    plots: Callable[[], Sequence[Callable[..., Any]]] | None = None
