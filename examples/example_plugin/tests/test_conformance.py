"""The plugin author's own test: the ctxbench conformance kit, one test per check."""

import json

from ctxbench.testing import BackendConformance

from ctxbench_colour_histogram.plugin import ARGS, make_backend


class TestColourHistogram(BackendConformance):
    factory = staticmethod(make_backend)
    declared_args = ARGS           # so fingerprint_covers_args varies them
    args = {"resolution": 16}


class TestColourHistogramRegistered(BackendConformance):
    backend = "colour-histogram"   # found through the entry point once installed


class TestColourHistogramPalette(BackendConformance):
    """Arguments that need a file made for the test session: ``build_args`` runs once
    per class with pytest's tmp_path_factory (a model saved into a temporary folder
    is passed the same way)."""

    backend = "colour-histogram"

    @classmethod
    def build_args(cls, tmp_path_factory):
        palette = tmp_path_factory.mktemp("palette") / "palette.json"
        palette.write_text(json.dumps({"red": [220, 40, 40], "teal": [0, 128, 128],
                                       "white": [240, 240, 240]}))
        return {"palette": str(palette), "resolution": 8}
