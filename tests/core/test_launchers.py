"""Launchers: shard partition and rank detection, concurrent shards into one output
folder, and Ray fan-out (skipped when Ray is not installed) with warm cache and a
worker killed by SIGKILL. Ray runs on loopback only, in a fresh network namespace
where root allows."""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from ctxbench.cell import Cell
from ctxbench.errors import CtxbenchError
from ctxbench.launchers import (add_launcher_arguments, backend_resources, detect_shard,
                                order_cells, parse_resource_args, partition, ray_available,
                                launch_config, run_cells)
from ctxbench.leaderboard import latest_results
from ctxbench.plugin_host import load_plugins
from ctxbench.runner import Runner, RunOptions
from ctxbench.task_catalog import TaskCatalog
from distutil import make_dist

TASKS = ["multi_instance_retrieval_synthetic"]
BACKENDS = [("random", {"dim": 16}), ("random", {"dim": 32}), ("random", {"dim": 48})]


def fake_cells(n_backends: int, n_tasks: int) -> list[Cell]:
    return [Cell(f"b{b % 3}", (("k", b),), f"task{t}", f"h{t}")
            for b in range(n_backends) for t in range(n_tasks)]


# -- rank detection -------------------------------------------------------------
@pytest.mark.parametrize("env,shard,world,expect", [
    ({}, "1/4", None, (1, 4, "--shard 1/4")),
    ({"RANK": "2", "WORLD_SIZE": "3", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, None, None,
     (2, 3, "RANK/WORLD_SIZE")),
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8"}, None, None, (5, 8, "SLURM_PROCID/SLURM_NTASKS")),
    ({"JOB_COMPLETION_INDEX": "3"}, None, 4, (3, 4, "JOB_COMPLETION_INDEX")),
    ({"JOB_COMPLETION_INDEX": "0", "CTXBENCH_WORLD_SIZE": "2"}, None, None, (0, 2, "JOB_COMPLETION_INDEX")),
    ({"RANK": "1", "WORLD_SIZE": "2"}, "0/1", None, (0, 1, "--shard 0/1")),
])
def test_detect_shard_sources(env, shard, world, expect):
    s = detect_shard(shard, world, env)
    assert (s.rank, s.world, s.source) == expect


@pytest.mark.parametrize("env,shard,world,pattern", [
    ({}, None, None, "no rank found; pass --shard I/N"),
    ({}, "4/4", None, r"rank 4 of world size 4 is out of range"),
    ({}, "a/2", None, r"--shard 'a/2': expected I/N"),
    ({"JOB_COMPLETION_INDEX": "1"}, None, None, "pass --world-size N or set CTXBENCH_WORLD_SIZE"),
    ({"SLURM_PROCID": "x", "SLURM_NTASKS": "2"}, None, None, "SLURM_PROCID='x' is not an integer"),
    ({"RANK": "0", "WORLD_SIZE": "0"}, None, None, "world size 0"),
])
def test_detect_shard_errors(env, shard, world, pattern):
    with pytest.raises(CtxbenchError, match=pattern):
        detect_shard(shard, world, env)


def test_manifest_name_is_skipped_by_result_readers():
    s = detect_shard("3/12", None, {})
    assert s.manifest_name == "shards/rank-03-of-12/manifest.json"
    assert Path(s.manifest_name).name == "manifest.json"


# -- partition ------------------------------------------------------------------
@pytest.mark.parametrize("n_backends,n_tasks", [(1, 1), (3, 5), (4, 15), (7, 2)])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 7, 16])
def test_partition_covers_every_cell_exactly_once(n_backends, n_tasks, world):
    cells = fake_cells(n_backends, n_tasks)
    shares = [partition(cells, r, world) for r in range(world)]
    ids = [c.cell_id for share in shares for c in share]
    assert sorted(ids) == sorted(c.cell_id for c in cells) and len(set(ids)) == len(ids)
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    # a backend group is split only at block boundaries: total loads <= groups + W - 1
    loads = sum(len({(c.backend, c.backend_args) for c in s}) for s in shares)
    assert loads <= n_backends + world - 1
    # deterministic and independent of the order the cells were listed in
    reversed_shares = [partition(list(reversed(cells)), r, world) for r in range(world)]
    assert [[c.cell_id for c in s] for s in reversed_shares] == [[c.cell_id for c in s] for s in shares]


def test_order_keeps_a_backends_cells_adjacent():
    ordered = order_cells(fake_cells(5, 4))
    keys = [(c.backend, c.backend_args) for c in ordered]
    runs = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
    assert len(runs) == len(set(keys)) == 5


# -- ray resources and argument parsing ----------------------------------------------
def test_backend_resources_and_overrides():
    class Spec:
        resources = {"num_gpus": 2, "memory": 8e9}

    assert backend_resources(object(), "cpu") == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert backend_resources(object(), "cuda:0") == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert backend_resources(Spec(), "cpu") == {"num_cpus": 1.0, "num_gpus": 2, "memory": 8e9}
    over = parse_resource_args(["num_cpus=4", "b:num_gpus=0.5"], ["a", "b"])
    assert over == {"a": {"num_cpus": 4.0}, "b": {"num_cpus": 4.0, "num_gpus": 0.5}}
    assert backend_resources(Spec(), "cpu", over["b"])["num_gpus"] == 0.5
    with pytest.raises(CtxbenchError, match="backend 'c' is not among"):
        parse_resource_args(["c:num_gpus=1"], ["a"])
    with pytest.raises(CtxbenchError, match="'x' is not a number"):
        parse_resource_args(["num_gpus=x"], ["a"])


def parse(argv):
    p = argparse.ArgumentParser()
    add_launcher_arguments(p)
    return p.parse_args(argv)


def test_launcher_argument_conflicts(tmp_path):
    opts = RunOptions(output_dir=tmp_path, progress=False, log=lambda m: None)
    with pytest.raises(CtxbenchError, match="--shard/--world-size need --launcher shard"):
        run_cells(None, [], [], opts, launch_config(parse(["--shard", "0/2"])))
    with pytest.raises(CtxbenchError, match="cannot be combined with --launcher shard"):
        run_cells(None, [], [], opts, launch_config(parse(["--launcher", "shard", "--data-parallel"])))
    with pytest.raises(SystemExit):
        parse(["--launcher", "slurm"])
    args = parse([])
    assert (args.launcher, args.ray_max_retries, args.ray_resources) == ("local", 3, [])


# -- shards end to end: two concurrent ranks, one output folder ------------------------
SHARD_SCRIPT = textwrap.dedent('''
    import argparse, sys
    from ctxbench.launchers import add_launcher_arguments, launch_config, run_cells
    from ctxbench.plugin_host import load_plugins
    from ctxbench.runner import RunOptions, write_manifest
    from ctxbench.task_catalog import TaskCatalog
    out, cache = sys.argv[1], sys.argv[2]
    p = argparse.ArgumentParser(); add_launcher_arguments(p)
    args = p.parse_args(sys.argv[3:])
    host = load_plugins()
    tasks = TaskCatalog(host.task_dirs, host.families, host.loaders).select({tasks!r})
    opts = RunOptions(output_dir=out, cache_dir=cache, progress=False)
    results, used = run_cells(host, tasks, {backends!r}, opts, launch_config(args))
    assert opts.manifest_name == "manifest.json"  # the caller's options are not changed
    write_manifest(out, tasks, {backends!r}, results, 0.0, used)
''').format(tasks=TASKS, backends=BACKENDS)


def local_metrics(tmp_path):
    host = load_plugins()
    tasks = TaskCatalog(host.task_dirs, host.families, host.loaders).select(TASKS)
    opts = RunOptions(output_dir=tmp_path / "local", cache_dir=tmp_path / "local_cache",
                      progress=False, log=lambda m: None)
    results = Runner(host, opts).run(tasks, BACKENDS)
    return {(r.task, r.backend_label): {k: v.to_json() for k, v in r.metrics.items()} for r in results}


def test_two_shards_in_parallel_equal_local(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", SHARD_SCRIPT, str(out), str(cache),
                               "--launcher", "shard"], env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2"},
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    logs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    # 3 cells in canonical order (dim=16, 32, 48): rank 0 gets the first, rank 1 the others
    assert "shard 0 of 2 (RANK/WORLD_SIZE): 1 cell(s)" in logs[0]
    assert "shard 1 of 2 (RANK/WORLD_SIZE): 2 cell(s)" in logs[1]
    results, problems = latest_results(out)
    assert problems == [] and len(results) == 3 and all(r.status == "ok" for r in results)
    for r, labels in enumerate([["random(dim=16)"], ["random(dim=32)", "random(dim=48)"]]):
        manifest = json.loads((out / f"shards/rank-{r}-of-2/manifest.json").read_text())
        assert [c["backend"] for c in manifest["cells"]] == labels
    assert not (out / "manifest.json").exists()
    merged = {(r.task, r.backend_label): {k: v.to_json() for k, v in r.metrics.items()} for r in results}
    assert merged == local_metrics(tmp_path)
    # restart a rank: its cells are reused, nothing recomputed
    proc = subprocess.run([sys.executable, "-c", SHARD_SCRIPT, str(out), str(cache), "--launcher",
                           "shard", "--shard", "1/2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("result exists, skipped") == 2


# -- ray --------------------------------------------------------------------------
RAY_PLUGIN = textwrap.dedent('''
    import os, signal
    from ctxbench.backend import BackendSpec
    from ctxbench.hooks import hookimpl
    from ctxbench_plugins.random_backend import RandomBackend

    class Killer(RandomBackend):
        """Killed by SIGKILL on its first encode call ever (a marker file remembers)."""
        def __init__(self, **kw):
            super().__init__(**kw)
            with open(os.environ["RAY_TEST_ATTEMPTS"], "a") as fh:
                fh.write(f"killer {os.getpid()}\\n")

        def encode_images(self, images, contexts):
            marker = os.environ["RAY_TEST_MARKER"]
            if not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return super().encode_images(images, contexts)

    class Faulty(RandomBackend):
        def __init__(self, **kw):
            super().__init__(**kw)
            with open(os.environ["RAY_TEST_ATTEMPTS"], "a") as fh:
                fh.write(f"faulty {os.getpid()}\\n")

        def encode_images(self, images, contexts):
            raise ValueError("deterministic bug in the backend")

    @hookimpl
    def ctxbench_backends():
        return [BackendSpec("killer", lambda device="cpu", **a: Killer(**a), "dies once", 64),
                BackendSpec("faulty", lambda device="cpu", **a: Faulty(**a), "always fails", 64)]
''')

RAY_SCRIPT = textwrap.dedent('''
    import json, sys, time
    from ctxbench.launchers import run_ray
    from ctxbench.plugin_host import load_plugins
    from ctxbench.runner import Runner, RunOptions
    from ctxbench.task_catalog import TaskCatalog
    tmp = sys.argv[1]
    host = load_plugins()
    tasks = TaskCatalog(host.task_dirs, host.families, host.loaders).select(
        ["multi_instance_retrieval_synthetic"])
    backends = [("random", {{"dim": 16}}), ("random", {{"dim": 32}}), ("killer", {{}}), ("faulty", {{}})]
    metrics = lambda rs: {{r.backend_label: {{k: v.to_json() for k, v in r.metrics.items()}}
                          for r in rs if r.status == "ok"}}
    local = Runner(host, RunOptions(output_dir=tmp + "/local", cache_dir=tmp + "/lc", progress=False,
                                    log=lambda m: None)).run(tasks, backends[:2])
    kw = dict(max_retries=2, init_kwargs={{"num_cpus": 2, "_node_ip_address": "127.0.0.1",
                                            "_temp_dir": {ray_tmp!r}}})
    import ray
    ray.init(**kw.pop("init_kwargs"), logging_level="WARNING", include_dashboard=False)
    t0 = time.time()
    cold = run_ray(host, tasks, backends, RunOptions(output_dir=tmp + "/ray", cache_dir=tmp + "/rc",
                                                    progress=False), **kw)
    t1 = time.time()
    warm = run_ray(host, tasks, backends[:3], RunOptions(output_dir=tmp + "/ray", cache_dir=tmp + "/rc",
                                                         progress=False, rerun=True), **kw)
    t2 = time.time()
    ray.shutdown()
    json.dump({{"local": metrics(local), "cold": metrics(cold), "warm": metrics(warm),
               "status": {{r.backend_label: r.status for r in cold}},
               "errors": {{r.backend_label: r.error for r in cold if r.error}},
               "warm_stats": {{r.backend_label: r.encoder_stats for r in warm}},
               "cold_seconds": t1 - t0, "warm_seconds": t2 - t1}}, open(tmp + "/report.json", "w"))
''')


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def ray_report(tmp_path_factory):
    if not ray_available():
        pytest.skip("ray is not installed (pip install 'ctxbench[ray]')")
    tmp = tmp_path_factory.mktemp("ray")
    site = tmp / "site"
    site.mkdir()
    make_dist(site, "ctxbench_ray_test", "ctxb_ray_test", [("ray_test", "ctxb_ray_test")], RAY_PLUGIN)
    home = tmp / "home"
    home.mkdir()
    (home / "ray_bootstrap_config.yaml").write_text("")
    ray_tmp = tempfile.mkdtemp(prefix="ctxray", dir="/tmp")  # short: Ray's socket paths are limited
    env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/", "RAY_AUTH_MODE": "disabled",
           "RAY_TEST_ATTEMPTS": str(tmp / "attempts.log"), "RAY_TEST_MARKER": str(tmp / "killed"),
           "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    script = tmp / "scenario.py"
    script.write_text(RAY_SCRIPT.format(ray_tmp=ray_tmp))
    cmd = [sys.executable, str(script), str(tmp)]
    if _can_unshare():  # no route off the machine at all: only loopback exists
        cmd = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((tmp / "report.json").read_text())
    report["attempts"] = (tmp / "attempts.log").read_text().split("\n")
    report["killed"] = (tmp / "killed").exists()
    report["stderr"] = proc.stderr
    return report


@pytest.mark.slow
def test_ray_fan_out_equals_local(ray_report):
    assert ray_report["status"] == {"random(dim=16)": "ok", "random(dim=32)": "ok",
                                    "killer": "ok", "faulty": "failed"}
    local = ray_report["local"]
    assert {k: ray_report["cold"][k] for k in local} == local


@pytest.mark.slow
def test_ray_warm_cache_encodes_nothing(ray_report):
    for label, stats in ray_report["warm_stats"].items():
        assert stats["forward_passes"] == 0 and stats["cache_hits"] > 0, (label, stats)
    assert ray_report["warm"] == {k: ray_report["cold"][k] for k in ray_report["warm"]}


@pytest.mark.slow
def test_ray_worker_killed_by_sigkill_is_retried(ray_report):
    assert ray_report["killed"]  # the first attempt did die
    killer = [line.split()[1] for line in ray_report["attempts"] if line.startswith("killer")]
    # cold: a first actor (killed), its restart; warm run: a new actor
    assert len(killer) == 3 and len(set(killer)) == 3, killer
    assert ray_report["cold"]["killer"] == ray_report["warm"]["killer"]


@pytest.mark.slow
def test_ray_deterministic_error_is_recorded_not_retried(ray_report):
    faulty = [line for line in ray_report["attempts"] if line.startswith("faulty")]
    assert len(faulty) == 1  # one actor, never restarted
    err = ray_report["errors"]["faulty"]
    assert err["type"] == "ValueError" and "deterministic bug" in err["message"]


# -- cell identity: dataset revision ---------------------------------------------------
def revision_plugin(task_dir, rev_file):
    """A tiny family + loader whose dataset carries ``dataset_revision`` (read from a file)."""
    import types
    from ctxbench.families.contract import FamilyOutput
    from ctxbench.hooks import hookimpl
    from ctxbench.results import MetricValue
    from ctxbench.registrations import FamilySpec, LoaderSpec

    def load(options, ctx):
        return types.SimpleNamespace(
            dataset_revision=rev_file.read_text() if rev_file.exists() else None, texts=["a", "b"])

    def evaluate(req):
        emb = req.encoder.texts(req.dataset.texts)
        return FamilyOutput({"norm": MetricValue(float(emb.norm()))}, ["norm"], n=2)

    return types.SimpleNamespace(
        __name__="revision_plugin",
        ctxbench_families=hookimpl(lambda: [FamilySpec("revfam", evaluate)]),
        ctxbench_dataset_loaders=hookimpl(lambda: [LoaderSpec("revloader", load, "revfam",
                                                              options={"revision": "pin"})]),
        ctxbench_task_dirs=hookimpl(lambda: [task_dir]))


@pytest.mark.parametrize("source", ["attribute", "option"])
def test_dataset_revision_is_recorded_and_a_change_recomputes(tmp_path, source):
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    options = "{revision: v1}" if source == "option" else "{}"
    (task_dir / "rev.yaml").write_text(f"task: revtask\nfamily: revfam\nversion: 1\n"
                                       f"dataset: {{loader: revloader, options: {options}}}\n")
    rev_file = tmp_path / "rev.txt"
    if source == "attribute":
        rev_file.write_text("abc123")
    host = load_plugins(extra_plugins=(revision_plugin(task_dir, rev_file),))
    tasks = TaskCatalog(host.task_dirs, host.families, host.loaders).select(["revtask"])
    logs = []
    opts = RunOptions(output_dir=tmp_path / "out", use_cache=False, progress=False, log=logs.append)
    (first,) = Runner(host, opts).run(tasks, [("random", {})])
    expect = "abc123" if source == "attribute" else "v1"
    assert first.status == "ok", first.error
    assert first.versions["dataset_revision"] == expect
    (same,) = Runner(host, opts).run(tasks, [("random", {})])
    assert same.timestamp == first.timestamp and "result exists" in logs[-1]
    if source == "attribute":   # the data changed under the same task file: recomputed
        rev_file.write_text("def456")
        (changed,) = Runner(host, opts).run(tasks, [("random", {})])
        assert any("dataset revision changed (abc123 -> def456)" in m for m in logs)
        assert changed.versions["dataset_revision"] == "def456"
    else:                       # a new pinned revision is a new task hash, so a new cell
        (task_dir / "rev.yaml").write_text((task_dir / "rev.yaml").read_text().replace("v1", "v2"))
        tasks2 = TaskCatalog(host.task_dirs, host.families, host.loaders).select(["revtask"])
        (changed,) = Runner(host, opts).run(tasks2, [("random", {})])
        assert changed.cell_id != first.cell_id and changed.versions["dataset_revision"] == "v2"
