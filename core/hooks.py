"""pluggy hook specifications for project "ctxbench".

A plugin is a module (or object) with functions marked ``@hookimpl``, exposed
through the ``ctxbench`` entry-point group::

    [project.entry-points.ctxbench]
    my_backend = "my_package.ctxbench_plugin"

Each hook returns a list of registration records; return ``[]`` for hooks you do
not implement (or simply do not define them).
"""

from __future__ import annotations

from pathlib import Path

import pluggy

PROJECT = "ctxbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class CtxbenchSpecs:
    @hookspec
    def ctxbench_backends(self) -> list:
        """Return a list of ``ctxbench.backend.BackendSpec``."""

    @hookspec
    def ctxbench_dataset_loaders(self) -> list:
        """Return a list of ``ctxbench.registrations.LoaderSpec``."""

    @hookspec
    def ctxbench_metrics(self) -> list:
        """Return a list of ``ctxbench.registrations.MetricSpec``."""

    @hookspec
    def ctxbench_task_dirs(self) -> list[Path]:
        """Return folders whose ``**/*.yaml`` files are task definitions."""

    @hookspec
    def ctxbench_families(self) -> list:
        """Return a list of ``ctxbench.registrations.FamilySpec`` (new task families)."""
