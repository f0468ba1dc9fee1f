"""The runner's side of warm reruns (issue 18): trained probes are memoised under the
run's cache, and a backend whose fingerprint and capabilities were recorded by an
earlier run is only built when something needs encoding."""

from __future__ import annotations

import json
import os

import pytest

from ctxbench import probe
from ctxbench import runner as runner_module
from ctxbench.backend import BackendArg, BackendSpec
from ctxbench.families.contract import EvalRequest
from ctxbench.plugin_host import load_plugins
from ctxbench.backend_session import LazyBackend, backend_record_key
from ctxbench.runner import Runner, RunOptions
from ctxbench.task_catalog import TaskCatalog
from ctxbench_plugins.random_backend import RandomBackend

TASK = "metadata_sentiment_synthetic"


class Counting:
    builds: list = []


def _host(fingerprint_suffix=lambda: ""):
    host = load_plugins()

    def factory(device="cpu", weights=None, **args):
        Counting.builds.append(weights)
        backend = RandomBackend(device=device, **args)
        real = backend.fingerprint
        backend.fingerprint = lambda: real() + fingerprint_suffix()
        return backend
    host.backends.add("counting", BackendSpec(
        "counting", factory, "random, counting its builds", 256,
        args=(BackendArg("dim", int, 16), BackendArg("weights", (str, type(None)), None))), origin="test")
    host.provenance["test"] = "test==1"
    return host


def _run(host, tmp_path, rerun=True, use_cache=True, args=None, requests=None, monkeypatch=None):
    tasks = TaskCatalog(host.task_dirs, host.families, host.loaders).select([TASK])
    opts = RunOptions(output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", use_cache=use_cache,
                      progress=False, rerun=rerun, limit=120, log=lambda m: None)
    runner = Runner(host, opts)
    if requests is not None:   # the requests the runner builds
        def recorded(*a, **k):
            requests.append(EvalRequest(*a, **k))
            return requests[-1]
        monkeypatch.setattr(runner_module, "EvalRequest", recorded)
    (result,) = runner.run(tasks, [("counting", dict(args or {"dim": 16}))])
    assert result.status == "ok", result.error
    return result


@pytest.fixture
def trainings(monkeypatch):
    calls = []
    real = probe._train_loop
    monkeypatch.setattr(probe, "_train_loop", lambda *a, **k: calls.append(1) or real(*a, **k))
    Counting.builds = []
    return calls


def _metrics(result):
    return {k: v.to_json() for k, v in result.metrics.items()}


def test_warm_rerun_builds_no_backend_and_trains_no_probe(tmp_path, trainings, monkeypatch):
    host = _host()
    reqs: list = []
    cold = _run(host, tmp_path, requests=reqs, monkeypatch=monkeypatch)
    assert len(Counting.builds) == 1 and len(trainings) > 0
    assert reqs[0].memo is not None and reqs[0].cache_identity.startswith("random:")
    assert len(list((tmp_path / "cache" / "backends").glob("*.json"))) == 1
    n_trained = len(trainings)
    warm = _run(_host(), tmp_path)
    assert len(Counting.builds) == 1, "the warm rerun built the backend"
    assert len(trainings) == n_trained, "the warm rerun trained a probe"
    assert _metrics(warm) == _metrics(cold)
    assert warm.fingerprint == cold.fingerprint
    assert warm.encoder_stats["items_encoded"] == 0


def test_no_cache_means_no_memo_and_an_eager_backend(tmp_path, trainings, monkeypatch):
    reqs: list = []
    _run(_host(), tmp_path, use_cache=False, requests=reqs, monkeypatch=monkeypatch)
    _run(_host(), tmp_path, use_cache=False)
    assert reqs[0].memo is None
    assert len(Counting.builds) == 2
    assert not (tmp_path / "cache").exists()


def test_uncached_items_build_the_backend_on_first_encode(tmp_path, trainings):
    host = _host()
    _run(host, tmp_path)
    for d in (tmp_path / "cache" / "embeddings").iterdir():   # embeddings gone, record kept
        for f in d.glob("seg-*"):
            f.unlink()
    result = _run(_host(), tmp_path)
    assert len(Counting.builds) == 2 and result.encoder_stats["items_encoded"] > 0


def test_corrupt_record_is_ignored_and_rewritten(tmp_path, trainings):
    _run(_host(), tmp_path)
    (record,) = (tmp_path / "cache" / "backends").glob("*.json")
    record.write_text("{not json")
    _run(_host(), tmp_path)
    assert len(Counting.builds) == 2
    assert json.loads(record.read_text())["fingerprint"].startswith("random:")
    _run(_host(), tmp_path)
    assert len(Counting.builds) == 2


def test_weights_changed_on_disk_behind_the_same_argument_rebuild(tmp_path, trainings):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.bin").write_bytes(b"v1")
    args = {"dim": 16, "weights": str(weights)}
    _run(_host(), tmp_path, args=args)
    _run(_host(), tmp_path, args=args)
    assert len(Counting.builds) == 1
    (weights / "model.bin").write_bytes(b"v2 longer")
    os.utime(weights / "model.bin", ns=(10**18, 10**18))
    _run(_host(), tmp_path, args=args)
    assert len(Counting.builds) == 2


def test_record_key_follows_args_device_and_path_identity(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"x")
    base = backend_record_key("b", {"path": str(f)}, "p==1", "cpu")
    assert base == backend_record_key("b", {"path": str(f)}, "p==1", "cpu")
    assert base != backend_record_key("b", {"path": str(f)}, "p==1", "cuda")
    assert base != backend_record_key("b", {"path": str(f)}, "p==2", "cpu")
    assert base != backend_record_key("b", {"path": str(f), "x": 1}, "p==1", "cpu")
    f.write_bytes(b"xy")
    assert base != backend_record_key("b", {"path": str(f)}, "p==1", "cpu")


def test_fingerprint_that_moves_behind_a_record_fails_the_cell_then_builds_eagerly(tmp_path, trainings):
    _run(_host(), tmp_path)
    for d in (tmp_path / "cache" / "embeddings").iterdir():
        for f in d.glob("seg-*"):
            f.unlink()
    host = _host(lambda: ":changed")
    tasks = TaskCatalog(host.task_dirs, host.families, host.loaders).select([TASK])
    opts = RunOptions(output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False,
                      rerun=True, limit=120, log=lambda m: None)
    (bad,) = Runner(host, opts).run(tasks, [("counting", {"dim": 16})])
    assert bad.status == "failed" and "differs from the one recorded" in bad.error["message"]
    good = _run(host, tmp_path)
    assert good.fingerprint.endswith(":changed")


def test_lazy_backend_answers_from_the_record():
    built = []
    recorded = RandomBackend(dim=8).fingerprint()
    lazy = LazyBackend(lambda: built.append(1) or RandomBackend(dim=8), recorded,
                       RandomBackend(dim=8).capabilities, record=None, label="random")
    assert lazy.fingerprint() == recorded and lazy.capabilities.normalized
    assert not built
    assert lazy.encode_texts(["a"], [None]).shape == (1, 8)
    assert built == [1]
    lazy.encode_texts(["b"], [None])
    assert built == [1]
