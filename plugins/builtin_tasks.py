"""Registers ctxbench's own task folder (tasks/, installed as package ctxbench_tasks)."""

from __future__ import annotations

from pathlib import Path

from ctxbench.hooks import hookimpl


@hookimpl
def ctxbench_task_dirs():
    import ctxbench_tasks
    return [Path(ctxbench_tasks.__file__).parent]
