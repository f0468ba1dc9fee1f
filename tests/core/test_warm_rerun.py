"""Warm reruns do no avoidable work (issue 18): file hashes memoised on file identity
and persisted, cached images never loaded, prefetched loading gives the same rows;
a whole warm rerun, counted: no model built, no forward pass, no image decoded, no
probe trained, no evaluator run (evaluation memo), no torch imported, and the cold
run's results exactly."""

import dataclasses
import functools
import json
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


# -- the whole warm rerun, by counting (issue 18) ------------------------------
# Every embedded synthetic task on a backend that counts its builds: a rerun with
# every embedding cached builds no model, runs no forward pass, decodes no image,
# trains no probe and (with the evaluation memo) runs no evaluator; without the
# memo the evaluators run on cached embeddings and memoised probes. Both write the
# cold run's metrics, tables and details exactly.

RESULT_FIELDS = ("cell_id", "status", "metrics", "headline", "tables", "details", "n", "fingerprint")


class WarmCounts:
    def __init__(self, monkeypatch):
        from ctxbench import probe
        from ctxbench.plugin_host import load_plugins
        from ctxbench.backend import BackendSpec
        from ctxbench_plugins.random_backend import RandomBackend
        self.builds, self.decodes, self.trainings, self.evaluations = [], [], [], []
        load, loop = ImageRef.load, probe._train_loop
        monkeypatch.setattr(ImageRef, "load", lambda ref: self.decodes.append(1) or load(ref))
        monkeypatch.setattr(probe, "_train_loop",
                            lambda *a, **k: self.trainings.append(1) or loop(*a, **k))
        self.host = load_plugins()
        spec = self.host.backends.get("random")

        def factory(device="cpu", **args):
            self.builds.append(args)
            return RandomBackend(device=device, **args)
        self.host.backends.add("counted", BackendSpec("counted", factory, "random, counted", 64,
                                                      args=spec.args), origin="test")
        self.host.provenance["test"] = "test==1"
        for name in self.host.families.names():   # this host's own registry entries
            family = self.host.families.get(name)
            self.host.families._entries[name] = dataclasses.replace(
                family, evaluate=self._counted(family.evaluate))

    def _counted(self, evaluate):
        @functools.wraps(evaluate)   # keeps the lazy hook's target: the memo keys its code
        def counted(req):
            self.evaluations.append(1)
            return evaluate(req)
        return counted

    def snapshot(self):
        return len(self.builds), len(self.decodes), len(self.trainings), len(self.evaluations)


def _synthetic_run(counts, tmp_path, tasks=None, **options):
    from ctxbench.runner import Runner, RunOptions
    from ctxbench.task_catalog import TaskCatalog
    catalog = TaskCatalog(counts.host.task_dirs, counts.host.families, counts.host.loaders)
    tasks = tasks or [t for t in catalog.select(["all"])
                      if t.name.endswith("_synthetic") or t.name == "aesthetics_degradation_sweep"]
    opts = RunOptions(output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False,
                      rerun=True, limit=24, log=lambda m: None, **options)
    inputs._FILE_KEYS.clear()
    results = Runner(counts.host, opts).run(tasks, [("counted", {"dim": 32})])
    docs = {}
    for r in results:
        assert r.status == "ok", (r.task, r.error)
        path = tmp_path / "out" / r.task / f"{r.cell_id}.json"
        doc = json.loads(path.read_text())
        docs[r.task] = {k: doc[k] for k in RESULT_FIELDS}
    return tasks, results, docs


@pytest.mark.slow   # ~27 s: the whole embedded run cold, then warm; CI's second step (.ci/run)
def test_warm_rerun_does_no_work_and_writes_the_cold_results(tmp_path, monkeypatch):
    counts = WarmCounts(monkeypatch)
    tasks, cold, cold_docs = _synthetic_run(counts, tmp_path)
    assert len(cold) >= 5, [r.task for r in cold]
    built, decoded, trained, evaluated = counts.snapshot()
    assert built == 1 and decoded > 0 and trained > 0 and evaluated == len(cold)
    assert sum(r.encoder_stats["forward_passes"] for r in cold) > 0

    _, warm, warm_docs = _synthetic_run(counts, tmp_path, tasks)
    assert counts.snapshot() == (built, decoded, trained, evaluated), \
        "(builds, image decodes, probe trainings, evaluations) grew on a warm rerun"
    for r in warm:
        assert r.encoder_stats["forward_passes"] == 0 and r.encoder_stats["items_encoded"] == 0
        assert r.encoder_stats["evaluation_reused"] == 1, r.task
        assert r.encoder_stats["cache_hits"] > 0
    assert warm_docs == cold_docs

    # the layers under the memo: evaluators run, on cached embeddings and memoised probes
    _, evaluated_again, docs_again = _synthetic_run(counts, tmp_path, tasks, cell_memo=False)
    assert counts.snapshot() == (built, decoded, trained, evaluated + len(cold)), \
        "(builds, image decodes, probe trainings, evaluations) without the evaluation memo"
    assert all(r.encoder_stats["forward_passes"] == 0 for r in evaluated_again)
    assert docs_again == cold_docs


WARM_SCRIPT = """
import sys
from ctxbench.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "scipy.stats", "open_clip", "transformers") if m in sys.modules)
print("HEAVY", ",".join(heavy))
sys.exit(rc)
"""


def test_a_warm_rerun_imports_no_torch(tmp_path):
    """The CLI, as a user runs it: cold, then the warm rerun in a fresh interpreter."""
    import subprocess
    import sys
    args = ["run", "--task", "context_retrieval_synthetic,multi_instance_retrieval_synthetic",
            "--backend", "random", "--limit", "12", "--device", "cpu", "--rerun", "--no-progress",
            "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    outs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", WARM_SCRIPT, *args], capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(proc)
    assert "HEAVY torch" in outs[0].stdout          # the cold run evaluates
    assert "HEAVY \n" in outs[1].stdout, outs[1].stdout + outs[1].stderr[-2000:]
    assert outs[1].stderr.count("evaluation cached") == 2
