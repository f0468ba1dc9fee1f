"""Embedding cache and cached encoder: dedupe, zero work on a warm run, output checks,
crash safety, OOM back-off."""

import numpy as np
import pytest
import torch

from ctxbench.backend import Capabilities
from ctxbench.cache import EmbeddingCache
from ctxbench.encoder import CachedEncoder
from ctxbench.errors import BackendOutputError, CapabilityError
from ctxbench.inputs import ImageRef
from ctxbench.synthetic_world import render, rng_for, sample_scene, scene_ref
from ctxbench_plugins.random_backend import RandomBackend


class Counting(RandomBackend):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = 0
        self.items = 0

    def encode_texts(self, texts, contexts):
        self.calls += 1
        self.items += len(texts)
        return super().encode_texts(texts, contexts)

    def encode_images(self, images, contexts):
        self.calls += 1
        self.items += len(images)
        return super().encode_images(images, contexts)


def refs(n):
    rng = rng_for("test/cache", 0)
    return [scene_ref(sample_scene(rng)) for _ in range(n)]


def test_dedupe_and_warm_cache_does_zero_forward_passes(cache_dir):
    texts = [f"t{i % 7}" for i in range(30)]
    backend = Counting()
    cache = EmbeddingCache(cache_dir).for_backend(backend.fingerprint())
    enc = CachedEncoder(backend, cache, batch_size=4, progress=False)
    cold = enc.texts(texts, ["ctx"] * 30)
    assert backend.items == 7 and backend.calls == 2
    backend2 = Counting()
    cache2 = EmbeddingCache(cache_dir).for_backend(backend2.fingerprint())  # fresh process view
    enc2 = CachedEncoder(backend2, cache2, batch_size=4, progress=False)
    warm = enc2.texts(texts, ["ctx"] * 30)
    assert backend2.calls == 0 and enc2.stats["cache_hits"] == 7
    assert torch.equal(cold, warm)
    # a different context is a different key
    enc2.texts(texts[:1], ["other"])
    assert backend2.items == 1


def test_images_by_content_key_and_context(cache_dir):
    backend = Counting()
    enc = CachedEncoder(backend, EmbeddingCache(cache_dir).for_backend(backend.fingerprint()),
                        progress=False)
    rs = refs(5)
    a = enc.images(rs + rs)
    assert backend.items == 5 and a.shape == (10, 64) and torch.equal(a[:5], a[5:])
    enc.images(rs, ["c"] * 5)
    assert backend.items == 10
    # same pixels through a different route (in-memory PIL) hit a different key family,
    # but the same file content on disk always maps to one key
    assert ImageRef.from_pil(rs[0].load()).key == ImageRef.from_pil(render(sample_scene(rng_for("test/cache", 0)))).key


def test_no_cache_keeps_results_in_memory_only(cache_dir):
    backend = Counting()
    enc = CachedEncoder(backend, None, progress=False)
    enc.texts(["a", "b"])
    enc.texts(["a", "b", "c"])
    assert backend.items == 3
    assert not cache_dir.exists()


class Broken:
    capabilities = Capabilities()

    def __init__(self, mode):
        self.mode = mode

    def fingerprint(self):
        return f"broken:{self.mode}"

    def encode_texts(self, texts, contexts):
        n = len(texts)
        if self.mode == "shape":
            return torch.zeros(n + 1, 4)
        if self.mode == "nan":
            out = torch.zeros(n, 4)
            out[0, 0] = float("nan")
            return out
        if self.mode == "dtype":
            return torch.zeros(n, 4, dtype=torch.long)
        if self.mode == "numpy":
            return np.zeros((n, 4))
        raise AssertionError

    encode_images = encode_texts


@pytest.mark.parametrize("mode,pattern", [("shape", r"shape \(4, 4\) for 3 inputs"),
                                          ("nan", "non-finite values in 1 of 3 rows"),
                                          ("dtype", "dtype torch.int64"),
                                          ("numpy", "expected a torch.Tensor")])
def test_bad_backend_output_is_a_clear_error(mode, pattern):
    enc = CachedEncoder(Broken(mode), None, progress=False, label="broken")
    with pytest.raises(BackendOutputError, match=pattern):
        enc.texts(["a", "b", "c"])


def test_context_refused_without_capability():
    enc = CachedEncoder(Broken("shape"), None, progress=False, label="dual")
    with pytest.raises(CapabilityError, match="does not accept a context on the text side"):
        enc.texts(["a"], ["story"])


def test_oom_halves_batch_and_remembers(capsys):
    class OomAbove8(RandomBackend):
        def encode_texts(self, texts, contexts):
            if len(texts) > 8:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate")
            return super().encode_texts(texts, contexts)

    enc = CachedEncoder(OomAbove8(), None, batch_size=32, progress=False)
    out = enc.texts([str(i) for i in range(40)])
    assert out.shape == (40, 64) and enc.batch_size == 8
    ref = CachedEncoder(RandomBackend(), None, batch_size=40, progress=False).texts([str(i) for i in range(40)])
    assert torch.equal(out, ref)
    assert "retrying with 16" in capsys.readouterr().err


def test_finished_batches_survive_a_failure(cache_dir):
    class FailsLate(RandomBackend):
        calls = 0

        def encode_texts(self, texts, contexts):
            FailsLate.calls += 1
            if FailsLate.calls == 3:
                raise RuntimeError("driver crashed")
            return super().encode_texts(texts, contexts)

    backend = FailsLate()
    cache = EmbeddingCache(cache_dir).for_backend(backend.fingerprint())
    enc = CachedEncoder(backend, cache, batch_size=5, progress=False, flush_rows=5)
    with pytest.raises(RuntimeError, match="driver crashed"):
        enc.texts([str(i) for i in range(20)])
    assert len(EmbeddingCache(cache_dir).for_backend(backend.fingerprint())) == 10


def test_torn_segment_is_ignored(cache_dir):
    backend = RandomBackend()
    cache = EmbeddingCache(cache_dir).for_backend(backend.fingerprint())
    cache.put_many(["a" * 64], np.ones((1, 3), np.float32))
    # an embeddings file whose keys file never got written (killed in between)
    (cache.dir / "seg-x.emb.npy").write_bytes(b"garbage")
    (cache.dir / "seg-y.keys.npy").write_bytes(b"garbage")
    again = EmbeddingCache(cache_dir).for_backend(backend.fingerprint())
    assert len(again) == 1 and ("a" * 64) in again
