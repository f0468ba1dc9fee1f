"""All known tasks: every ``**/*.yaml`` under the task directories plugins declare
(plus any folder or file the user names), with their dependencies resolved.

Each file is isolated: one that fails validation, for whatever reason, does not
hide the others. It is kept in ``invalid`` (shown by ``ctxbench list tasks``) and
selecting it reports its error. Two files declaring the same task name are both
invalid: which one "wins" would depend on folder order.

Dependencies (``depends_on: {role: task}``) are resolved here: each task's
``dependencies`` maps the role to the other task's :class:`TaskConfig`, and its
``hash`` folds in the dependencies' hashes, so editing a task that another one
depends on gives the dependent task a new hash (its results are recomputed).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from .errors import CtxbenchError, TaskConfigError, UnknownNameError
from .name_registry import Registry, close_matches
from .task_config import TaskConfig, parse_task


class TaskCatalog:
    def __init__(self, task_dirs: list[Path], families=None, loaders=None,
                 task_files: list[Path] = ()):
        self.tasks: Registry[TaskConfig] = Registry("task")
        self.invalid: dict[Path, TaskConfigError] = {}
        parsed: dict[str, list[TaskConfig]] = {}
        for path in self._files(task_dirs, task_files):
            try:
                spec = parse_task(path, families, loaders)
            except TaskConfigError as exc:
                self.invalid[path] = exc
                continue
            except Exception as exc:  # any malformed file is this file's problem only
                self.invalid[path] = TaskConfigError(path, None, f"unreadable task file "
                                                     f"({type(exc).__name__}: {exc})")
                continue
            parsed.setdefault(spec.name, []).append(spec)
        for name, specs in parsed.items():
            if len(specs) > 1:
                files = ", ".join(str(s.path) for s in specs)
                for s in specs:
                    self.invalid[s.path] = TaskConfigError(
                        s.path, "task", f"task name {name!r} is declared by {len(specs)} files "
                        f"({files})", "rename one of them")
            else:
                self.tasks.add(name, specs[0], origin=str(specs[0].path))
        self._resolve_dependencies()

    @staticmethod
    def _files(task_dirs: list[Path], task_files) -> list[Path]:
        seen: dict[Path, None] = {}
        for directory in task_dirs:
            for path in sorted(Path(directory).rglob("*.yaml")):
                if not path.name.startswith("_"):  # _*.yaml: include-only defaults
                    seen.setdefault(path.resolve(), None)
        for path in task_files:
            seen.setdefault(Path(path).resolve(), None)
        return list(seen)

    # -- dependencies ----------------------------------------------------------
    def _resolve_dependencies(self) -> None:
        resolved: dict[str, TaskConfig] = {}
        for name in list(self.tasks):
            self._resolve(name, resolved, ())
        fresh: Registry[TaskConfig] = Registry("task")
        for name in self.tasks:
            if name in resolved:
                fresh.add(name, resolved[name], origin=self.tasks.origin(name))
        self.tasks = fresh

    def _resolve(self, name: str, done: dict[str, TaskConfig], stack: tuple[str, ...]):
        """The task with its dependencies attached and folded into its hash, or None
        (the task is then moved to ``invalid``)."""
        if name in done:
            return done[name]
        spec = self.tasks.get(name)
        if spec.path in self.invalid:
            return None
        deps: dict[str, TaskConfig] = {}
        for role, dep_name in spec.depends_on.items():
            problem = None
            if dep_name in stack or dep_name == name:
                problem = f"dependency cycle: {' -> '.join(stack + (name, dep_name))}"
            elif dep_name not in self.tasks:
                sugg = close_matches(dep_name, self.tasks.names())
                problem = (f"depends on unknown task {dep_name!r}"
                           + (f"; did you mean '{sugg[0]}'?" if sugg else ""))
            else:
                dep = self._resolve(dep_name, done, stack + (name,))
                if dep is None:
                    problem = f"depends on task {dep_name!r}, which is invalid"
                else:
                    deps[role] = dep
            if problem:
                self.invalid[spec.path] = TaskConfigError(spec.path, f"depends_on.{role}", problem,
                                                          "name a valid task (ctxbench list tasks)")
                return None
        if deps:
            folded = hashlib.sha256("|".join([spec.hash] + [f"{r}={d.hash}" for r, d in
                                                           sorted(deps.items())]).encode())
            spec = dataclasses.replace(spec, dependencies=deps, hash=folded.hexdigest()[:16])
        done[name] = spec
        return spec

    # -- selection -------------------------------------------------------------
    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name in self.tasks:
            for group in self.tasks.get(name).all_groups:
                out.setdefault(group, []).append(name)
        return out

    def select(self, selectors: list[str]) -> list[TaskConfig]:
        """Resolve task names, group names, ``all`` and task file paths (comma-separated
        allowed). Raises CtxbenchError when the selection is empty."""
        groups = self.groups()
        chosen: list[str] = []
        for selector in selectors:
            for item in filter(None, (s.strip() for s in selector.split(","))):
                names = self._names_for(item, groups)
                chosen.extend(n for n in names if n not in chosen)
        if not chosen:
            raise CtxbenchError(f"--task {','.join(selectors)!r} selects no task; name tasks, "
                                "groups or 'all' (ctxbench list tasks)")
        return [self.tasks.get(n) for n in chosen]

    def _names_for(self, item: str, groups: dict[str, list[str]]) -> list[str]:
        if item in self.tasks:
            return [item]
        if item in groups:
            return groups[item]
        if item.endswith((".yaml", ".yml")):
            target = Path(item).resolve()
            if target in self.invalid:
                raise CtxbenchError(f"task file {item} is invalid: {self.invalid[target]}")
            for name in self.tasks:
                if self.tasks.get(name).path.resolve() == target:
                    return [name]
            raise CtxbenchError(f"task file {item} was not loaded; pass it with --task "
                                "(it must exist and end in .yaml)")
        for path, exc in self.invalid.items():
            if path.stem == item:
                raise CtxbenchError(f"task '{item}' is invalid: {exc}")
        known = self.tasks.names() + list(groups)
        raise UnknownNameError("task", item, close_matches(item, known), known)
