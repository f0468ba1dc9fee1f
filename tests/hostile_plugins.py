"""Plugins that misbehave in every way a third-party plugin has been seen to (test-only).

Each backend wraps the random backend and breaks one rule; the family emits values
JSON cannot hold. tests/core/test_run_isolation.py runs them all in one matrix.
"""

from __future__ import annotations

import sys
import time

from ctxbench.backend import BackendSpec
from ctxbench.hooks import hookimpl
from ctxbench.registrations import FamilySpec, LoaderSpec
from ctxbench_plugins.random_backend import RandomBackend


class ExitsInEncode(RandomBackend):
    def encode_images(self, images, contexts):
        sys.exit(3)


class BareAssert(RandomBackend):
    def encode_texts(self, texts, contexts):
        assert len(texts) < 0
        return super().encode_texts(texts, contexts)


class NoneFingerprint(RandomBackend):
    def fingerprint(self):
        return None


class ZeroDim(RandomBackend):
    def encode_texts(self, texts, contexts):
        return super().encode_texts(texts, contexts)[:, :0]


class Hangs(RandomBackend):
    def encode_images(self, images, contexts):
        time.sleep(60)
        return super().encode_images(images, contexts)


def _spec(name, cls):
    return BackendSpec(name=name, factory=lambda device="cpu", **args: cls(device=device, **args))


def _exits_at_build(device="cpu", **args):
    raise SystemExit("plugin gave up")


@hookimpl
def ctxbench_backends():
    return [_spec("exits_in_encode", ExitsInEncode), _spec("bare_assert", BareAssert),
            _spec("none_fingerprint", NoneFingerprint), _spec("zero_dim", ZeroDim),
            _spec("hangs", Hangs), BackendSpec(name="exits_at_build", factory=_exits_at_build)]


def _nan_family(req):
    from ctxbench.families.contract import FamilyOutput
    from ctxbench.results import MetricValue
    return FamilyOutput(metrics={"score": MetricValue(float("nan"))}, headline=["score"],
                        tables={"t": [{"x": float("nan"), "y": float("inf")}]},
                        details={"values": [float("nan"), 1.0]}, n=1)


@hookimpl
def ctxbench_families():
    return [FamilySpec("nan_family", _nan_family, "emits NaN everywhere")]


@hookimpl
def ctxbench_dataset_loaders():
    return [LoaderSpec("nan_data", lambda options, ctx: {}, "nan_family", "nothing")]


class SingleSpecInsteadOfList:
    """A plugin whose hook returns one spec instead of a list."""

    @staticmethod
    @hookimpl
    def ctxbench_backends():
        return _spec("lonely", RandomBackend)


class ExitsInHook:
    @staticmethod
    @hookimpl
    def ctxbench_families():
        sys.exit(1)
