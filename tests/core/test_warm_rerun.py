"""Warm reruns do no avoidable work (issue 18): file hashes memoised on file identity
and persisted, cached images never loaded, prefetched loading gives the same rows."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from ctxbench import inputs
from ctxbench.backend import Capabilities
from ctxbench.cache import EmbeddingCache, FileHashStore
from ctxbench.encoder import CachedEncoder
from ctxbench.errors import DatasetFormatError
from ctxbench.inputs import ImageRef, file_key, sha256_hex


class PixelBackend:
    """Embedding = mean colour and a pixel checksum: depends on each image only."""

    capabilities = Capabilities()

    def __init__(self):
        self.images_seen = 0

    def fingerprint(self):
        return "pixel:v1"

    def encode_images(self, images, contexts):
        self.images_seen += len(images)
        arr = np.stack([np.asarray(im, dtype=np.float32) for im in images])
        return torch.from_numpy(np.concatenate([arr.mean(axis=(1, 2)), arr.std(axis=(1, 2))], 1))

    def encode_texts(self, texts, contexts):
        return torch.ones(len(texts), 6)


@pytest.fixture(autouse=True)
def _fresh_memo():
    inputs._FILE_KEYS.clear()
    yield
    inputs._FILE_KEYS.clear()
    inputs.set_file_hash_store(None)


def _png(path, colour):
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def test_file_key_is_the_content_hash_and_is_memoised(tmp_path, monkeypatch):
    p = _png(tmp_path / "a.png", (10, 20, 30))
    expected = sha256_hex(b"file\0" + p.read_bytes())
    assert file_key(p) == expected
    reads = []
    real = type(p).read_bytes
    monkeypatch.setattr(type(p), "read_bytes", lambda self: reads.append(self) or real(self))
    assert ImageRef.from_path(p).key == expected and ImageRef.from_path(p).key == expected
    assert reads == []  # served from the in-process memo


def test_a_changed_file_is_hashed_again(tmp_path):
    p = _png(tmp_path / "a.png", (10, 20, 30))
    first = file_key(p)
    _png(p, (200, 20, 30))
    os.utime(p, ns=(1, 1))  # even with an old mtime, size/ctime/contents move the identity
    assert file_key(p) == sha256_hex(b"file\0" + p.read_bytes()) != first


def test_missing_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetFormatError, match="not found"):
        file_key(tmp_path / "nope.png")


def test_store_persists_hashes_across_processes(tmp_path, monkeypatch):
    p = _png(tmp_path / "a.png", (1, 2, 3))
    cache = EmbeddingCache(tmp_path / "cache")
    key = file_key(p)
    assert (tmp_path / "cache" / "file-hashes.tsv").is_file()
    inputs._FILE_KEYS.clear()  # a new process: empty memo, the store on disk
    EmbeddingCache(cache.root)
    monkeypatch.setattr(type(p), "read_bytes", lambda self: pytest.fail("file re-read"))
    assert file_key(p) == key


def test_store_ignores_torn_lines(tmp_path):
    path = tmp_path / "h.tsv"
    store = FileHashStore(path)
    store.put("ident-a", "a" * 64)
    with open(path, "a") as fh:
        fh.write("deadbeef\tabc")  # a crash mid-line
    fresh = FileHashStore(path)
    assert fresh.get("ident-a") == "a" * 64 and fresh.get("ident-b") is None
    fresh.put("ident-b", "b" * 64)  # appended after the torn bytes: that line is lost, safely
    assert FileHashStore(path).get("ident-a") == "a" * 64


def _refs(tmp_path, n):
    return [ImageRef.from_path(_png(tmp_path / f"{i}.png", (i * 7 % 256, i % 256, 50)))
            for i in range(n)]


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_prefetch_gives_bitwise_the_inline_rows(tmp_path, workers):
    refs = _refs(tmp_path, 23)
    inline = CachedEncoder(PixelBackend(), None, batch_size=4, progress=False,
                           prefetch_workers=0).images(refs)
    pre = CachedEncoder(PixelBackend(), None, batch_size=4, progress=False,
                        prefetch_workers=workers).images(refs)
    assert torch.equal(inline, pre)


def test_cached_images_are_never_loaded(tmp_path):
    refs = _refs(tmp_path, 10)
    cache = EmbeddingCache(tmp_path / "cache").for_backend("pixel:v1")
    CachedEncoder(PixelBackend(), cache, batch_size=4, progress=False).images(refs)
    loads = []
    warm = [ImageRef(r.key, lambda: loads.append(1) or Image.new("RGB", (8, 8)), "x") for r in refs]
    backend = PixelBackend()
    enc = CachedEncoder(backend, EmbeddingCache(tmp_path / "cache").for_backend("pixel:v1"),
                        progress=False)
    enc.images(warm)
    assert loads == [] and backend.images_seen == 0 and enc.stats["cache_hits"] == 10


def test_a_load_error_surfaces_from_the_pool(tmp_path):
    refs = _refs(tmp_path, 6) + [ImageRef.from_path(tmp_path / "gone.png")]
    refs[-1]._key = "k"  # keyed, but the file is missing: the load fails on a worker
    with pytest.raises(DatasetFormatError, match="not found"):
        CachedEncoder(PixelBackend(), None, batch_size=2, progress=False,
                      prefetch_workers=2).images(refs)


def test_get_many_mixes_segments_in_order(tmp_path):
    cache = EmbeddingCache(tmp_path).for_backend("fp")
    cache.put_many(["a", "b"], np.array([[1.0, 1], [2, 2]]))
    cache.put_many(["c"], np.array([[3.0, 3]]))
    rows = EmbeddingCache(tmp_path).for_backend("fp").get_many(["c", "a", "c", "b"])
    assert rows.dtype == np.float32 and rows[:, 0].tolist() == [3, 1, 3, 2]


def test_artifact_memo_round_trip_and_digest(tmp_path):
    from ctxbench.cache import digest
    memo = EmbeddingCache(tmp_path).artifacts
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    key = digest("probe:v1", x, {"lr": 1e-3, "seed": 0}, [1, 2])
    assert key == digest("probe:v1", torch.from_numpy(x.copy()), {"seed": 0, "lr": 1e-3}, (1, 2))
    assert key != digest("probe:v1", x.astype(np.float64), {"lr": 1e-3, "seed": 0}, [1, 2])
    assert memo.get(key) is None
    memo.put(key, {"w": x, "best_epoch": np.array(3)})
    got = EmbeddingCache(tmp_path).artifacts.get(key)
    assert np.array_equal(got["w"], x) and int(got["best_epoch"]) == 3
    (tmp_path / "artifacts" / f"{key}.npz").write_bytes(b"torn")
    assert memo.get(key) is None
