"""Tools for testing backends: the conformance kit (:func:`run_conformance`), its
pytest integration (:class:`BackendConformance`, :mod:`ctxbench.testing.pytest_plugin`)
and tiny models built from configs (:mod:`ctxbench.testing.tiny_models`)."""

from .conformance import CHECKS, CheckResult, ConformanceReport, probe_inputs, run_conformance

__all__ = ["CHECKS", "CheckResult", "ConformanceReport", "probe_inputs", "run_conformance",
           "BackendConformance"]


def __getattr__(name):   # pytest is only imported when the pytest helpers are used
    if name == "BackendConformance":
        from .pytest_plugin import BackendConformance
        return BackendConformance
    raise AttributeError(name)
