"""pytest integration of the conformance kit, for plugin authors.

In code - subclass :class:`BackendConformance` in your test suite; one test per
check (``test_conformance[determinism]``, ...) fails with the check's message::

    from ctxbench.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        backend = "my-backend"          # a name registered through the entry point, or
        factory = staticmethod(make)    # a factory(device="cpu", **args)
        args = {"dim": 64}              # --backend-arg equivalents
        device = "cpu"

From the command line - load this module as a plugin and point it at a
registered backend (no test file needed)::

    pytest -p ctxbench.testing.pytest_plugin --pyargs ctxbench.testing.pytest_plugin \\
        --ctxbench-backend my-backend --ctxbench-backend-arg dim=64

``--ctxbench-backend`` is used by classes that name neither ``backend`` nor
``factory``; ``--ctxbench-backend-arg`` and ``--ctxbench-device`` apply to every
BackendConformance subclass (``--ctxbench-device cuda`` checks the CUDA path). At the end of the
session the reports' summaries (with the speed report) are printed.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

# absolute import: pytest may also collect this file by path under another module name
from .conformance import CHECKS, FAIL, SKIP, ConformanceReport, run_conformance

_REPORTS: list[ConformanceReport] = []


def pytest_addoption(parser):
    group = parser.getgroup("ctxbench", "ctxbench backend conformance")
    group.addoption("--ctxbench-backend", default=None,
                    help="registered backend name to check (BackendConformance tests)")
    group.addoption("--ctxbench-backend-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="backend argument (value parsed as a YAML scalar); repeatable")
    group.addoption("--ctxbench-device", default=None, help="device for the backend (default cpu)")


def parse_backend_args(items: list[str]) -> dict:
    """``["k=v", ...]`` -> dict, values parsed as YAML scalars (as the CLI does)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(f"--ctxbench-backend-arg {item!r}: expected KEY=VALUE")
        parsed = yaml.safe_load(value) if value.strip() else ""
        out[key.strip()] = parsed if parsed is None or isinstance(parsed, (str, int, float, bool)) else value
    return out


def resolve_backend(name: str):
    """The BackendSpec registered under ``name`` (entry points of group ``ctxbench``)."""
    from ..plugin_host import load_plugins

    host = load_plugins()
    return host.backends.get(name)


class BackendConformance:
    """Base class: set ``backend`` (a registered name) or ``factory``, plus ``args``."""

    backend: str | None = None
    factory: Callable[..., Any] | None = None
    args: dict = {}
    device: str = "cpu"
    atol: float | None = None
    rebuild: bool = True

    @pytest.fixture(scope="class")
    def ctxbench_report(self, request) -> ConformanceReport:
        config = request.config
        name = self.backend
        if name is None and self.factory is None:
            name = config.getoption("ctxbench_backend", default=None)
        args = {**self.args, **parse_backend_args(config.getoption("ctxbench_backend_arg", default=[]) or [])}
        device = config.getoption("ctxbench_device", default=None) or self.device
        if name:
            target = resolve_backend(name)
        elif self.factory is not None:
            target = self.factory
        else:
            pytest.skip("no backend: set `backend` or `factory` on the class, or pass --ctxbench-backend")
        report = run_conformance(target, args, device, atol=self.atol, rebuild=self.rebuild)
        _REPORTS.append(report)
        return report

    @pytest.mark.parametrize("check", CHECKS)
    def test_conformance(self, ctxbench_report: ConformanceReport, check: str) -> None:
        result = ctxbench_report.result(check)
        if result.status == SKIP:
            pytest.skip(result.detail)
        assert result.status != FAIL, f"{ctxbench_report.backend}: {check}: {result.detail}"


class TestCommandLineBackend(BackendConformance):
    """Collected only when this module is given to pytest explicitly (see module doc)."""


def pytest_terminal_summary(terminalreporter):
    for report in _REPORTS:
        terminalreporter.write_sep("-", f"ctxbench conformance: {report.backend}")
        terminalreporter.write_line(report.summary())
    _REPORTS.clear()
