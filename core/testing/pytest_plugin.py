"""pytest integration of the conformance kit, for plugin authors.

In code - subclass :class:`BackendConformance` in your test suite; one test per
check (``test_conformance[determinism]``, ...) fails with the check's message::

    from ctxbench.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        backend = "my-backend"          # a name registered through the entry point, or
        factory = staticmethod(make)    # a factory(device="cpu", **args)
        args = {"dim": 64}              # --backend-arg equivalents
        device = "cpu"

Arguments that need files made for the test session (a tiny model saved into a
temporary folder) come from the classmethod ``build_args``, called once per class
with pytest's ``tmp_path_factory``::

    class TestMyModel(BackendConformance):
        factory = staticmethod(make)

        @classmethod
        def build_args(cls, tmp_path_factory):
            path = tmp_path_factory.mktemp("model")
            save_tiny_model(path)
            return {"model": str(path)}

A factory-based class may set ``declared_args`` (a tuple of
:class:`~ctxbench.backend.BackendArg`) so that ``fingerprint_covers_args`` varies
its arguments; a registered backend's declarations come from its BackendSpec.

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

# absolute imports: pytest may also collect this file by path under another module
# name (e.g. core.testing.pytest_plugin), whose relative imports would load a second
# copy of ctxbench whose BackendSpec is not the plugins' one
from ctxbench.testing.conformance import CHECKS, FAIL, SKIP, ConformanceReport, run_conformance

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
    from ctxbench.plugin_host import load_plugins

    host = load_plugins()
    return host.backends.get(name)


class BackendConformance:
    """Base class: set ``backend`` (a registered name) or ``factory``, plus ``args``
    (or ``build_args``); ``device``, ``atol`` (None: 1e-4, or 2e-2 for a bf16/fp16
    ``dtype`` attribute), ``rebuild`` (build twice to check the fingerprint),
    ``vary_args`` (run fingerprint_covers_args) and ``declared_args`` tune it."""

    backend: str | None = None
    factory: Callable[..., Any] | None = None
    args: dict = {}
    device: str = "cpu"
    atol: float | None = None
    rebuild: bool = True
    vary_args: bool = True
    declared_args: tuple | None = None

    @classmethod
    def build_args(cls, tmp_path_factory) -> dict:
        """The backend's arguments, built once per class (override to make files in a
        temporary folder); the default is ``args``."""
        return dict(cls.args)

    @pytest.fixture(scope="class")
    @classmethod
    def ctxbench_report(cls, request, tmp_path_factory) -> ConformanceReport:
        config = request.config
        name = cls.backend
        if name is None and cls.factory is None:
            name = config.getoption("ctxbench_backend", default=None)
        extra = parse_backend_args(config.getoption("ctxbench_backend_arg", default=[]) or [])
        args = {**cls.build_args(tmp_path_factory), **extra}
        device = config.getoption("ctxbench_device", default=None) or cls.device
        if name:
            target = resolve_backend(name)
        elif cls.factory is not None:
            target = cls.factory
        else:
            pytest.skip("no backend: set `backend` or `factory` on the class, or pass --ctxbench-backend")
        report = run_conformance(target, args, device, atol=cls.atol, rebuild=cls.rebuild,
                                 declared_args=cls.declared_args, vary_args=cls.vary_args)
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
