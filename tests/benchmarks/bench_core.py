"""Core benchmarks (run on demand: `pytest -m benchmark tests/benchmarks/bench_core.py -s`).

Numbers go in the closing note; nothing here asserts a speed (timed unit tests are
flaky), except sanity bounds far from the targets.
"""

import time

import numpy as np
import pytest
import torch
import torchvision

from ctxbench.backend import Capabilities
from ctxbench.bootstrap import cluster_means
from ctxbench.cache import EmbeddingCache
from ctxbench.encoder import CachedEncoder
from ctxbench.synthetic_world import rng_for, sample_scene, scene_ref

pytestmark = pytest.mark.benchmark


class ResNetBackend:
    """A real conv net (random weights) at 64x64: enough compute to make overhead visible."""

    capabilities = Capabilities()

    def __init__(self):
        torch.manual_seed(0)
        self.model = torchvision.models.resnet18(num_classes=128).eval()

    def fingerprint(self):
        return "bench-resnet18-random:v1"

    def preprocess(self, images):
        arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 255.0
        return torch.from_numpy(arr).permute(0, 3, 1, 2)

    def encode_images(self, images, contexts):
        return self.model(self.preprocess(images))

    def encode_texts(self, texts, contexts):
        raise NotImplementedError


def _refs(n):
    rng = rng_for("bench/core", 0)
    return [scene_ref(sample_scene(rng)) for _ in range(n)]


def test_encoder_throughput_vs_bare_loop(tmp_path):
    torch.set_num_threads(2)
    n, bs = 2048, 64
    refs = _refs(n)
    backend = ResNetBackend()
    # bare loop: same model, same batches, images decoded the same way
    with torch.inference_mode():
        backend.encode_images([r.load() for r in refs[:bs]], [None] * bs)  # warm-up
        t0 = time.perf_counter()
        bare = [backend.encode_images([r.load() for r in refs[i:i + bs]], [None] * bs)
                for i in range(0, n, bs)]
        bare_s = time.perf_counter() - t0
    cache = EmbeddingCache(tmp_path).for_backend(backend.fingerprint())
    enc = CachedEncoder(backend, cache, batch_size=bs, progress=False)
    t0 = time.perf_counter()
    out = enc.images(refs)
    cold_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = CachedEncoder(backend, EmbeddingCache(tmp_path).for_backend(backend.fingerprint()),
                         batch_size=bs, progress=False).images(refs)
    warm_s = time.perf_counter() - t0
    assert torch.allclose(out, torch.cat(bare), atol=1e-5) and torch.equal(out, warm)
    print(f"\n[bench] encoder: bare loop {n / bare_s:.0f} img/s, through CachedEncoder "
          f"{n / cold_s:.0f} img/s (ratio {bare_s / cold_s:.3f}); warm cache {warm_s * 1000:.0f} ms "
          f"({cold_s / warm_s:.0f}x faster than cold)")


def test_warm_cache_rerun_vs_cold_through_the_runner(tmp_path):
    from ctxbench.plugin_host import load_plugins
    from ctxbench.runner import Runner, RunOptions
    from ctxbench.task_catalog import TaskCatalog
    host = load_plugins()
    tasks = TaskCatalog(host.task_dirs, host.families, host.loaders).select(["context_retrieval_synthetic"])
    times = []
    for i in range(2):
        opts = RunOptions(output_dir=tmp_path / f"out{i}", cache_dir=tmp_path / "cache",
                          progress=False, log=lambda m: None)
        t0 = time.perf_counter()
        (r,) = Runner(host, opts).run(tasks, [("random", {})])
        times.append((time.perf_counter() - t0, r.encoder_stats["forward_passes"]))
    print(f"\n[bench] runner context_retrieval_synthetic x random: cold {times[0][0]:.2f}s "
          f"({times[0][1]} forward passes), warm {times[1][0]:.2f}s ({times[1][1]} forward passes)")
    assert times[1][1] == 0


def test_bootstrap_10k_for_1000_queries_x_4_levels_x_4_patterns():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(200), 5)          # 1,000 queries in 200 groups
    hits = (rng.random((1000, 4 * 4 * 2)) < 0.4).astype(float)  # levels x patterns x K
    diffs = hits[:, 8:] - np.tile(hits[:, :8], 3)  # 3 patterns minus no_ctx
    values = np.concatenate([hits, diffs], axis=1)
    t0 = time.perf_counter()
    boot = cluster_means(values, groups, n_resamples=10_000, seed=0)
    boot.ci()
    dt = time.perf_counter() - t0
    print(f"\n[bench] cluster bootstrap 10,000 x {values.shape[1]} metrics, 1,000 queries: {dt:.2f}s")
    assert boot.samples.shape == (10_000, values.shape[1])
