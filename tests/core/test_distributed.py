"""Data-parallel encoding over torch.distributed (gloo, loopback only): the gathered
embeddings equal a single process's bit for bit; ranks with different caches still
agree; a failing rank stops the others instead of hanging; the runner writes once."""

import json
import os
import socket
import time
import traceback

import numpy as np
import pytest
import torch

from ctxbench import distributed
from ctxbench.backend import Capabilities
from ctxbench.cache import EmbeddingCache
from ctxbench.encoder import CachedEncoder
from ctxbench.synthetic_world import rng_for, sample_scene, scene_ref

WORLD = 2


# -- pure helpers ------------------------------------------------------------------
@pytest.mark.parametrize("n,world", [(0, 2), (1, 2), (7, 2), (7, 3), (9, 3), (5, 8), (16, 4)])
def test_strided_shards_interleave_back_in_order(n, world):
    dim = 3
    items = torch.arange(n * dim, dtype=torch.float32).reshape(n, dim)
    per = -(-n // world) if n else 0
    blocks = torch.full((world, per, dim), -1.0)
    covered = []
    for r in range(world):
        idx = distributed.strided_indices(n, r, world)
        assert list(idx) == list(range(r, n, world))
        blocks[r, :len(idx)] = items[torch.from_numpy(idx)]
        covered += idx.tolist()
    assert sorted(covered) == list(range(n))  # every item on exactly one rank
    assert torch.equal(distributed.interleave(blocks, n), items)


def test_helpers_without_a_process_group():
    assert distributed.active_world() is None
    assert distributed.all_agree([True, False]) == [True, False]
    assert distributed.keys_digest(["a", "b"]) != distributed.keys_digest(["b", "a"])


# -- a batch-invariant backend with real float arithmetic ---------------------------
class TinyNet:
    """8x8 grey pixels -> tanh(W1 x) -> W2: a fixed random MLP, each row computed on
    its own (so a row's bits do not depend on which batch it shared)."""

    capabilities = Capabilities()

    def __init__(self, fail_on_rank: int | None = None):
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.randn(64, 48, generator=g)
        self.w2 = torch.randn(48, 16, generator=g)
        self.emb = torch.randn(997, 16, generator=g)
        self.fail_on_rank = fail_on_rank
        self.items = 0

    def fingerprint(self):
        return "tinynet:v1"

    def _mlp(self, x):
        return torch.stack([torch.tanh(row @ self.w1) @ self.w2 for row in x])

    def encode_images(self, images, contexts):
        if self.fail_on_rank is not None and int(os.environ.get("RANK", -1)) == self.fail_on_rank:
            raise RuntimeError("simulated driver crash")
        self.items += len(images)
        x = torch.stack([torch.from_numpy(np.asarray(im.convert("L").resize((8, 8)), np.float32) / 255)
                         for im in images]).reshape(len(images), 64)
        return self._mlp(x)

    def encode_texts(self, texts, contexts):
        self.items += len(texts)
        idx = torch.tensor([sum(map(ord, t)) % 997 for t in texts])
        return self._mlp(torch.cat([self.emb[idx], self.emb[idx] * 0.5, self.emb[idx] ** 2,
                                    self.emb[idx] - 1], dim=1))


def inputs():
    rng = rng_for("test/distributed", 0)
    refs = [scene_ref(sample_scene(rng), 32) for _ in range(23)]
    refs = refs + refs[:5]                                   # duplicates
    texts = [f"caption {i % 17}" for i in range(41)]
    return refs, texts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), GLOO_SOCKET_IFNAME="lo")
    import torch.distributed as dist
    report = {"rank": rank}
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world)
        refs, texts = inputs()
        # phase 1: one cache per rank; rank 0's was pre-warmed by the parent with some keys
        backend = TinyNet()
        cache = EmbeddingCache(os.path.join(tmp, f"cache{rank}")).for_backend(backend.fingerprint())
        enc = CachedEncoder(backend, cache, batch_size=4, progress=False, data_parallel=True)
        img = enc.images(refs)
        txt = enc.texts(texts)
        report["items_before_again"] = backend.items
        again = enc.images(refs[:9])                         # served from memory + cache: no encode
        torch.save({"img": img, "txt": txt, "again": again}, os.path.join(tmp, f"out{rank}.pt"))
        report.update(items=backend.items, stats=enc.stats, cached=len(EmbeddingCache(
            os.path.join(tmp, f"cache{rank}")).for_backend(backend.fingerprint())))
        # phase 2: rank 1 fails inside its share; both ranks must raise (no hang)
        bad = CachedEncoder(TinyNet(fail_on_rank=1), None, batch_size=4, progress=False,
                            data_parallel=True)
        try:
            bad.images(refs[10:20])
            report["phase2"] = "no error"
        except Exception as exc:
            report["phase2"] = f"{type(exc).__name__}: {exc}"
        # phase 3: ranks asking for different inputs are detected
        try:
            CachedEncoder(TinyNet(), None, progress=False, data_parallel=True).texts(
                texts[:3 + rank])
            report["phase3"] = "no error"
        except Exception as exc:
            report["phase3"] = f"{type(exc).__name__}: {exc}"
        # phase 4: the runner on a real embedded task; only rank 0 writes
        from ctxbench.plugin_host import load_plugins
        from ctxbench.runner import Runner, RunOptions
        from ctxbench.task_catalog import TaskCatalog
        host = load_plugins()
        tasks = TaskCatalog(host.task_dirs, host.families, host.loaders).select(
            ["context_retrieval_synthetic"])
        opts = RunOptions(output_dir=os.path.join(tmp, "dp_out"), cache_dir=os.path.join(tmp, "dpc"),
                          progress=False, data_parallel=True, write_results=rank == 0,
                          log=lambda m: None)
        (res,) = Runner(host, opts).run(tasks, [("random", {"dim": 32})])
        report.update(runner_status=res.status, runner_error=res.error,
                      runner_metrics={k: v.to_json() for k, v in res.metrics.items()},
                      runner_encoded=res.encoder_stats.get("items_encoded"))
        dist.barrier()
        (again_res,) = Runner(host, opts).run(tasks, [("random", {"dim": 32})])  # all ranks reuse
        report["reused"] = again_res.timestamp == res.timestamp
        dist.destroy_process_group()
    except Exception:
        report["crash"] = traceback.format_exc()
    with open(os.path.join(tmp, f"report{rank}.json"), "w") as fh:
        json.dump(report, fh, default=str)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dp")
    refs, texts = inputs()
    # pre-warm rank 0's private cache with 6 image keys, so the ranks' caches differ
    warm = TinyNet()
    CachedEncoder(warm, EmbeddingCache(tmp / "cache0").for_backend(warm.fingerprint()),
                  batch_size=4, progress=False).images(refs[2:8])
    t0 = time.perf_counter()
    torch.multiprocessing.spawn(_worker, args=(WORLD, _free_port(), str(tmp)), nprocs=WORLD,
                                join=True)
    reports = [json.loads((tmp / f"report{r}.json").read_text()) for r in range(WORLD)]
    for rep in reports:
        assert "crash" not in rep, rep["crash"]
    return tmp, reports, time.perf_counter() - t0


@pytest.mark.slow   # shares the two_ranks fixture (~23 s to start two gloo ranks); CI's second step
def test_two_rank_gloo_encoding_is_bitwise_single_process(two_ranks):
    tmp, reports, _ = two_ranks
    refs, texts = inputs()
    single = CachedEncoder(TinyNet(), None, batch_size=4, progress=False)
    ref_img, ref_txt = single.images(refs), single.texts(texts)
    for r in range(WORLD):
        out = torch.load(tmp / f"out{r}.pt")
        assert out["img"].dtype == torch.float32 and out["img"].shape == (28, 16)
        assert torch.equal(out["img"], ref_img), f"rank {r} images differ"
        assert torch.equal(out["txt"], ref_txt), f"rank {r} texts differ"
        assert torch.equal(out["again"], ref_img[:9])


@pytest.mark.slow   # shares the two_ranks fixture (~23 s to start two gloo ranks); CI's second step
def test_work_is_split_and_each_rank_caches_its_share(two_ranks):
    tmp, reports, _ = two_ranks
    n_unique = 23 + 17
    # missing anywhere = everything (rank 1's cache was empty); each call is strided:
    # 23 images -> 12 + 11, 17 texts -> 9 + 8
    items = [rep["items"] for rep in reports]
    assert items == [12 + 9, 11 + 8], items
    # each rank's cache holds what it computed (rank 0's also the 6 pre-warmed rows)
    assert reports[1]["cached"] == items[1]
    assert items[0] <= reports[0]["cached"] <= items[0] + 6
    assert reports[0]["stats"]["items_encoded"] == items[0]
    # the third call found everything locally (own cache + others' rows in memory)
    for rep in reports:
        assert rep["items_before_again"] == rep["items"]
        assert rep["stats"]["cache_hits"] >= 9
    # a fresh single process reading both caches encodes nothing
    backend = TinyNet()
    union = {}
    for r in range(WORLD):
        cache = EmbeddingCache(tmp / f"cache{r}").for_backend(backend.fingerprint())
        for k in cache._index:
            union[k] = cache.get_many([k])[0]
    assert len(union) == n_unique


@pytest.mark.slow   # shares the two_ranks fixture (~23 s to start two gloo ranks); CI's second step
def test_failure_on_one_rank_raises_on_all(two_ranks):
    _, reports, _ = two_ranks
    assert reports[1]["phase2"].startswith("RuntimeError: simulated driver crash")
    assert reports[0]["phase2"].startswith("RankFailed: rank(s) [1] failed while encoding")
    for rep in reports:
        assert rep["phase3"].startswith("RankFailed: data-parallel ranks asked the encoder for "
                                        "different inputs (counts per rank: [3, 4])")


@pytest.mark.slow   # shares the two_ranks fixture (~23 s to start two gloo ranks); CI's second step
def test_runner_data_parallel_matches_single_process(two_ranks, tmp_path):
    tmp, reports, _ = two_ranks
    from ctxbench.plugin_host import load_plugins
    from ctxbench.results import iter_results
    from ctxbench.runner import Runner, RunOptions
    from ctxbench.task_catalog import TaskCatalog
    host = load_plugins()
    tasks = TaskCatalog(host.task_dirs, host.families, host.loaders).select(
        ["context_retrieval_synthetic"])
    (single,) = Runner(host, RunOptions(output_dir=tmp_path / "o", cache_dir=tmp_path / "c",
                                        progress=False, log=lambda m: None)).run(
        tasks, [("random", {"dim": 32})])
    expect = {k: v.to_json() for k, v in single.metrics.items()}
    for rep in reports:
        assert rep["runner_status"] == "ok", rep["runner_error"]
        assert rep["runner_metrics"] == expect
        assert rep["reused"]
    # the two ranks together encoded what one process encodes
    assert sum(rep["runner_encoded"] for rep in reports) == single.encoder_stats["items_encoded"]
    written = [r for _, r, _ in iter_results(tmp / "dp_out")]
    assert len(written) == 1 and written[0].status == "ok"  # rank 1 wrote nothing
