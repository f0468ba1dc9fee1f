"""Every path a task file or a dataset file names goes through here.

Two rules, one function each:

* :func:`task_relative` -- a path written in a task YAML (``dataset.options``) is
  taken as given when absolute, else against the task file's folder; ``~`` is
  expanded here and nowhere else.
* :func:`contained` -- a path written *inside* a dataset file (an image path, a list
  entry, an HF ``Image`` path) must stay inside the dataset root. The check is
  resolve-then-contain: symlinks are followed first, so a link that points out of
  the root is refused like a literal ``../``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import DatasetFormatError, PathEscapeError

_DRIVE = re.compile(r"^[A-Za-z]:")


def expand_user(value: str | os.PathLike) -> Path:
    """``~`` and ``~user`` expanded; nothing else touched."""
    return Path(os.path.expanduser(str(value)))


def task_relative(value: str | os.PathLike, task_file: str | os.PathLike | None) -> Path:
    """A loader option path: absolute as given, else relative to the task file's folder.

    ``task_file`` may be None (a loader called from Python): relative paths then stay
    relative to the working directory."""
    path = expand_user(value)
    if path.is_absolute() or task_file is None:
        return path
    return Path(task_file).parent / path


def option_path(options: dict, key: str, ctx, default: str | None = None) -> Path | None:
    """``options[key]`` resolved with :func:`task_relative` against ``ctx.task_file``;
    ``default`` (or None) when the key is absent."""
    value = options.get(key, default)
    if value is None:
        return None
    return task_relative(value, getattr(ctx, "task_file", None))


def is_absolute_like(rel: str) -> bool:
    """Absolute on this OS or on another one (``/x``, ``\\x``, ``C:x``)."""
    return os.path.isabs(rel) or rel.startswith(("/", "\\")) or bool(_DRIVE.match(rel))


def contained(root: str | os.PathLike, rel: str, where: str) -> Path:
    """``root / rel`` resolved, refusing absolute paths and anything that resolves
    (through ``..`` or a symlink) outside ``root``.

    ``where`` names the file and field (and line) the path came from; it starts the
    error message, which also says what to do."""
    if not isinstance(rel, str) or not rel.strip():
        raise DatasetFormatError(f"{where}: expected a non-empty relative path, got {rel!r}")
    root_resolved = Path(root).resolve()
    if is_absolute_like(rel):
        raise PathEscapeError(f"{where}: absolute path {rel!r} refused; write it relative to "
                              f"the dataset root {root}")
    resolved = (root_resolved / rel.replace("\\", "/")).resolve()
    if not resolved.is_relative_to(root_resolved):
        raise PathEscapeError(f"{where}: path {rel!r} resolves to {resolved}, outside the dataset "
                              f"root {root} (no '..' or symlinks leading out; move the file "
                              f"under the root)")
    return resolved


def within(roots: list[Path], path: str | os.PathLike, where: str) -> Path:
    """An absolute ``path`` (e.g. one a ``datasets`` table recorded) resolved, accepted
    only inside one of ``roots``."""
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(Path(r).resolve()) for r in roots):
        raise PathEscapeError(f"{where}: path {str(path)!r} is outside the dataset folder(s) "
                              f"{[str(r) for r in roots]}")
    return resolved
