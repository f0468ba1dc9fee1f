"""The plugin author's own test: the ctxbench conformance kit, one test per check."""

from ctxbench.testing import BackendConformance

from ctxbench_colour_histogram.plugin import make_backend


class TestColourHistogram(BackendConformance):
    factory = staticmethod(make_backend)
    args = {"resolution": 16}


class TestColourHistogramRegistered(BackendConformance):
    backend = "colour-histogram"   # found through the entry point once installed
