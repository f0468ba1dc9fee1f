"""All known tasks: every ``**/*.yaml`` under the task directories plugins declare.

A file that fails validation does not hide the others: it is kept in
``invalid`` (shown by ``ctxbench list tasks``) and selecting it reports its error.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CtxbenchError, TaskConfigError, UnknownNameError
from .name_registry import Registry, close_matches
from .task_config import TaskConfig, parse_task


class TaskCatalog:
    def __init__(self, task_dirs: list[Path], families=None, loaders=None):
        self.tasks: Registry[TaskConfig] = Registry("task")
        self.invalid: dict[Path, TaskConfigError] = {}
        for directory in task_dirs:
            for path in sorted(Path(directory).rglob("*.yaml")):
                if path.name.startswith("_"):
                    continue  # include-only defaults
                try:
                    spec = parse_task(path, families, loaders)
                    self.tasks.add(spec.name, spec, origin=str(path))
                except TaskConfigError as exc:
                    self.invalid[path] = exc
                except ValueError as exc:  # duplicate task name
                    self.invalid[path] = TaskConfigError(path, "task", str(exc))

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name in self.tasks:
            for group in self.tasks.get(name).all_groups:
                out.setdefault(group, []).append(name)
        return out

    def select(self, selectors: list[str]) -> list[TaskConfig]:
        """Resolve task names, group names and ``all`` (comma-separated allowed)."""
        groups = self.groups()
        chosen: list[str] = []
        for selector in selectors:
            for item in filter(None, (s.strip() for s in selector.split(","))):
                if item in self.tasks:
                    names = [item]
                elif item in groups:
                    names = groups[item]
                else:
                    for path, exc in self.invalid.items():
                        if path.stem == item:
                            raise CtxbenchError(f"task '{item}' is invalid: {exc}")
                    known = self.tasks.names() + list(groups)
                    raise UnknownNameError("task", item, close_matches(item, known), known)
                chosen.extend(n for n in names if n not in chosen)
        return [self.tasks.get(n) for n in chosen]
