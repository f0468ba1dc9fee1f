"""Paths and messages written into committed artefacts, without this machine's paths."""

from __future__ import annotations

import os
from pathlib import Path


def portable_text(text: str) -> str:
    """``text`` with this machine's data root and home folder written as
    ``$CTXBENCH_DATA`` and ``~``, so committed results carry no machine paths."""
    data_root = os.environ.get("CTXBENCH_DATA", "")
    if data_root and len(data_root) > 1:
        text = text.replace(data_root.rstrip("/"), "$CTXBENCH_DATA")
    default_root = os.path.expanduser("~/ctxbench-data")
    text = text.replace(default_root, "$CTXBENCH_DATA")
    home = os.path.expanduser("~")
    return text.replace(home + "/", "~/") if len(home) > 1 else text


def portable_path(path) -> str:
    """A task file's path: relative to the installed task package or the working
    folder where it lies under one, else as given."""
    path = Path(path)
    try:
        import ctxbench_tasks
        return "ctxbench_tasks/" + str(path.resolve().relative_to(
            Path(ctxbench_tasks.__file__).parent.resolve()))
    except (ImportError, ValueError):
        pass
    try:
        return str(path.resolve().relative_to(Path(os.getcwd()).resolve()))
    except ValueError:
        return portable_text(str(path))
