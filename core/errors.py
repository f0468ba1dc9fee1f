"""Exception types. Every message names the file/field at fault and what to do."""

from __future__ import annotations


class CtxbenchError(Exception):
    """Base class: an error ctxbench explains to the user (no traceback needed)."""


class TaskConfigError(CtxbenchError):
    """A task YAML is malformed. The message names the file, the field and the fix."""

    def __init__(self, path, field: str | None, problem: str, fix: str | None = None):
        self.path, self.field, self.problem, self.fix = str(path), field, problem, fix
        where = f"{path}" + (f": field '{field}'" if field else "")
        msg = f"{where}: {problem}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)


class ProtocolError(CtxbenchError, ValueError):
    """A task's protocol option has a bad value; ``option`` names it (e.g. ``patterns``)."""

    def __init__(self, option: str, problem: str, fix: str | None = None):
        self.option, self.problem, self.fix = option, problem, fix
        super().__init__(f"protocol.{option}: {problem}" + (f" ({fix})" if fix else ""))


class UnknownNameError(CtxbenchError, KeyError):
    """A task/backend/metric/loader name that is not registered; carries close matches."""

    def __init__(self, kind: str, name: str, suggestions: list[str], known: list[str]):
        self.kind, self.name, self.suggestions = kind, name, suggestions
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        listing = ", ".join(sorted(known)[:30]) or "(none registered)"
        super().__init__(f"unknown {kind} '{name}'.{hint} Known {kind}s: {listing}. "
                         f"Run `ctxbench list {kind}s` for details.")

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return self.args[0]


class DataNotFound(CtxbenchError):
    """A real dataset is not on disk. The message says exactly how to obtain it.

    The runner records the cell as *skipped* (not failed) with this message."""


class DatasetFormatError(CtxbenchError):
    """A dataset file is malformed; the message names the file and line/field."""


class DatasetOptionError(DatasetFormatError, ValueError):
    """A loader's ``dataset.options`` entry is unknown or has a bad value; the message
    names the task file and ``dataset.options.<name>`` (a ValueError too, as a bad
    option value always was)."""


class PathEscapeError(DatasetFormatError):
    """A path inside a dataset file points outside the dataset root."""


class BackendOutputError(CtxbenchError):
    """A backend returned embeddings of the wrong shape, dtype, or non-finite values."""


class CapabilityError(CtxbenchError):
    """A backend was asked for something it does not declare (e.g. a context on images)."""
