"""A stale embedding cache is refused, never mixed (the class: cached rows that are not
what the backend returns now although its fingerprint did not change).

The only property ctxbench can check of a cached row without recomputing it is its
width. Every order in which rows of two widths can meet in one encoder is covered:
cached then encoded, encoded then cached, and two cached segments of different
widths served together. Each refusal names the cache folder and what to do; rows of
one width keep working (no false alarm)."""

import pytest
import torch

from ctxbench.cache import BackendCache, CacheWidthError
from ctxbench.encoder import CachedEncoder
from ctxbench.errors import BackendOutputError
from ctxbench_plugins.random_backend import RandomBackend


class StaleFingerprint(RandomBackend):
    """A backend whose fingerprint ignores its width (the plugin bug this guards)."""

    def fingerprint(self) -> str:
        return "stale:v1"


def _encoder(tmp_path, dim: int) -> CachedEncoder:
    backend = StaleFingerprint(dim=dim)
    cache = BackendCache(tmp_path / "cache", backend.fingerprint())
    return CachedEncoder(backend, cache, progress=False, label="stale")


def _refused(excinfo, tmp_path):
    message = str(excinfo.value)
    assert str(tmp_path / "cache") in message
    assert "fingerprint" in message and "--no-cache" in message


def test_cached_rows_then_new_rows_of_another_width_are_refused(tmp_path):
    _encoder(tmp_path, 8).texts(["a red star"])
    enc = _encoder(tmp_path, 4)
    with pytest.raises(BackendOutputError) as excinfo:
        enc.texts(["a red star", "a blue ring"])   # one cached (8), one encoded now (4)
    _refused(excinfo, tmp_path)
    assert "now returns 4" in str(excinfo.value)


def test_new_rows_then_cached_rows_of_another_width_are_refused(tmp_path):
    _encoder(tmp_path, 8).texts(["a red star"])
    enc = _encoder(tmp_path, 4)
    assert enc.texts(["a blue ring"]).shape == (1, 4)
    with pytest.raises(BackendOutputError) as excinfo:
        enc.texts(["a red star"])
    _refused(excinfo, tmp_path)


def test_cached_segments_of_two_widths_are_refused_together(tmp_path):
    _encoder(tmp_path, 8).texts(["a red star"])
    _encoder(tmp_path, 4).texts(["a blue ring"])
    cache = BackendCache(tmp_path / "cache", "stale:v1")
    keys = list(cache._index)
    with pytest.raises(CacheWidthError) as excinfo:
        cache.get_many(keys)
    assert excinfo.value.widths == [4, 8]
    with pytest.raises(BackendOutputError) as excinfo:   # through the encoder: every row cached
        _encoder(tmp_path, 8).texts(["a red star", "a blue ring"])
    _refused(excinfo, tmp_path)


def test_one_width_across_segments_and_runs_is_served(tmp_path):
    first = _encoder(tmp_path, 8).texts(["a red star"])
    _encoder(tmp_path, 8).texts(["a blue ring"])
    enc = _encoder(tmp_path, 8)
    both = enc.texts(["a red star", "a blue ring", "a green cross"])
    assert both.shape == (3, 8) and torch.equal(both[0], first[0])
    assert enc.stats["cache_hits"] == 2 and enc.stats["items_encoded"] == 1


def test_a_backend_changing_width_mid_run_is_still_named_as_the_backend(tmp_path):
    enc = CachedEncoder(StaleFingerprint(dim=8), cache=None, progress=False, label="stale")
    enc.texts(["a red star"])
    enc.backend.dim = 4
    with pytest.raises(BackendOutputError, match=r"stale.encode_texts returned dimension 4, but earlier "
                                                 r"batches had 8"):
        enc.texts(["a blue ring"])
