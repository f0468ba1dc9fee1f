"""Runner and CLI: every cell recorded, failures isolated, resumable, deterministic."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ctxbench.leaderboard import md_escape, render_markdown, latest_results
from ctxbench.plugin_host import load_plugins
from ctxbench.results import read_result
from ctxbench.runner import Runner, RunOptions
from ctxbench.task_catalog import TaskCatalog
from distutil import make_dist, run_cli

EXTRA = textwrap.dedent('''
    import os, time, torch
    from ctxbench.backend import BackendSpec
    from ctxbench.hooks import hookimpl
    from ctxbench_plugins.random_backend import RandomBackend

    class Slow(RandomBackend):
        def encode_texts(self, texts, contexts):
            time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
            with open(os.environ["CALL_LOG"], "a") as fh:
                fh.write(f"{len(texts)}\\n")
            return super().encode_texts(texts, contexts)

    class Exploding:
        def __init__(self, **kw):
            raise RuntimeError("weights file is corrupt")

    @hookimpl
    def ctxbench_backends():
        return [BackendSpec("slow_random", lambda device="cpu", **a: Slow(**a), "slow", 8),
                BackendSpec("exploding", lambda device="cpu", **a: Exploding(**a), "fails")]
''')


@pytest.fixture
def extra(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    make_dist(root, "ctxbench_test_extra", "ctxb_test_extra", [("test_extra", "ctxb_test_extra")], EXTRA)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("CALL_LOG", str(tmp_path / "calls.log"))
    return root


def task_and_host():
    host = load_plugins()
    tasks = TaskCatalog(host.task_dirs, host.families, host.loaders)
    return host, tasks


def test_failing_backend_is_recorded_and_the_rest_completes(extra, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(["run", "--task", "context_retrieval_synthetic", "--backend", "exploding,random",
                    "--output-dir", str(out), "--no-cache", "--no-progress"], extra)
    assert proc.returncode == 1  # a cell failed
    results = {r.backend_label: r for r in latest_results(out)[0]}
    assert results["exploding"].status == "failed"
    assert "weights file is corrupt" in results["exploding"].error["message"]
    assert results["random"].status == "ok"
    board = (tmp_path / "out.md").read_text()
    assert "FAILED: RuntimeError" in board and "exploding failed: weights file is corrupt" in board


def test_missing_data_is_skipped_with_instructions(tmp_path):
    out = tmp_path / "out"
    proc = run_cli(["run", "--task", "context_retrieval_lsmdc", "--output-dir", str(out),
                    "--no-cache", "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    results = latest_results(out)[0]
    from ctxbench.plugin_host import load_plugins
    host = load_plugins()
    defaults = [n for n in host.backends.names() if host.backends.get(n).embedded_default]
    assert sorted(r.backend for r in results) == sorted(defaults)  # every embedded default backend
    for result in results:
        assert result.status == "skipped" and "LSMDC" in result.error["message"]


def test_default_backends_run_only_the_families_they_declare(tmp_path):
    """A default backend with ``embedded_families`` (toy_ctx) gets only those tasks in
    the default run; named with --backend it runs on any task."""
    from ctxbench.plugin_host import load_plugins
    host = load_plugins()
    scoped = {n: host.backends.get(n).embedded_families for n in host.backends.names()
              if host.backends.get(n).embedded_default and host.backends.get(n).embedded_families}
    assert scoped.get("toy_ctx") == ("context_retrieval", "metadata_sentiment")
    details = run_cli(["list", "backends", "--details", "toy_ctx"]).stdout
    assert "default run (ctxbench run without --backend): on context_retrieval, metadata_sentiment" in details
    proc = run_cli(["run", "--task", "context_retrieval_lsmdc,epic100_mir", "--output-dir",
                    str(tmp_path / "a"), "--no-cache", "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    assert "toy_ctx: embedded default on context_retrieval, metadata_sentiment only" in proc.stderr
    cells = {(r.task, r.backend) for r in latest_results(tmp_path / "a")[0]}
    assert ("context_retrieval_lsmdc", "toy_ctx") in cells and ("epic100_mir", "toy_ctx") not in cells
    assert ("epic100_mir", "toy_clip") in cells and ("epic100_mir", "random") in cells
    proc = run_cli(["run", "--task", "epic100_mir", "--backend", "toy_ctx", "--output-dir",
                    str(tmp_path / "b"), "--no-cache", "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    assert {(r.task, r.backend) for r in latest_results(tmp_path / "b")[0]} == {("epic100_mir", "toy_ctx")}


def test_runner_cells_follow_families_of(tmp_path):
    host, reg = task_and_host()
    tasks = reg.select(["context_retrieval_synthetic", "aesthetics_synthetic"])
    opts = RunOptions(output_dir=tmp_path, families_of={"a": ("aesthetics",)}, log=lambda m: None)
    cells = Runner(host, opts).cells(tasks, [("a", {}), ("b", {})])
    assert sorted((c.backend, c.task) for c in cells) == [
        ("a", "aesthetics_synthetic"), ("b", "aesthetics_synthetic"), ("b", "context_retrieval_synthetic")]


def test_results_schema_and_reuse(extra, tmp_path, cache_dir):
    host, reg = task_and_host()
    tasks = reg.select(["context_retrieval_synthetic"])
    opts = RunOptions(output_dir=tmp_path / "out", cache_dir=cache_dir, progress=False, log=lambda m: None)
    (r1,) = Runner(host, opts).run(tasks, [("random", {"dim": 32})])
    data = json.loads(next((tmp_path / "out").rglob("*.json")).read_text())
    for key in ("cell_id", "task", "task_hash", "family", "backend", "fingerprint", "metrics", "n",
                "seconds", "versions", "seed", "timestamp", "encoder_stats"):
        assert key in data
    assert set(data["versions"]) >= {"ctxbench", "torch", "transformers", "open_clip_torch"}
    assert data["metrics"]["L1/no_ctx/R@1"]["ci"] is not None
    assert r1.backend_label == "random(dim=32)"
    logs = []
    (r2,) = Runner(host, RunOptions(output_dir=tmp_path / "out", cache_dir=cache_dir, progress=False,
                                    log=logs.append)).run(tasks, [("random", {"dim": 32})])
    assert "result exists" in logs[0] and r2.timestamp == r1.timestamp
    (r3,) = Runner(host, RunOptions(output_dir=tmp_path / "out", cache_dir=cache_dir, progress=False,
                                    rerun=True, log=lambda m: None)).run(tasks, [("random", {"dim": 32})])
    assert r3.encoder_stats["forward_passes"] == 0  # warm cache: nothing encoded again
    assert r3.metrics["L3/both_ctx/R@1"].to_json() == r1.metrics["L3/both_ctx/R@1"].to_json()


@pytest.mark.slow   # ~50 s: a real subprocess run killed mid-way, then resumed; CI's second step (.ci/run)
def test_sigkill_mid_run_resumes_without_recomputing(extra, tmp_path, cache_dir):
    script = textwrap.dedent(f'''
        import sys
        from ctxbench.plugin_host import load_plugins
        from ctxbench.runner import Runner, RunOptions
        from ctxbench.task_catalog import TaskCatalog
        host = load_plugins()
        tasks = TaskCatalog(host.task_dirs, host.families, host.loaders).select(["context_retrieval_synthetic"])
        opts = RunOptions(output_dir=sys.argv[1], cache_dir=sys.argv[2], progress=False, flush_rows=16,
                          log=lambda m: None)
        Runner(host, opts).run(tasks, [("slow_random", {{}})])
    ''')
    env = {**os.environ, "PYTHONPATH": f"{extra}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "SLOW_SECONDS": "0.02"}
    log = tmp_path / "calls.log"
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "a"), str(cache_dir)], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and (not log.exists() or len(log.read_text().split()) < 60):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = sum(map(int, log.read_text().split()))
    assert not list((tmp_path / "a").rglob("*.json")), "killed before the cell finished"
    log.unlink()
    env["SLOW_SECONDS"] = "0"
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "a"), str(cache_dir)], env=env, check=True)
    resumed = sum(map(int, log.read_text().split()))
    log.unlink()
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "b"), str(tmp_path / "fresh_cache")],
                   env=env, check=True)
    total = sum(map(int, log.read_text().split()))
    # the resumed run encoded only what had not reached the cache (segments of 16 rows)
    assert resumed <= total - done_before + 16
    assert resumed < total
    a = read_result(next((tmp_path / "a").rglob("*.json")))
    b = read_result(next((tmp_path / "b").rglob("*.json")))
    assert {k: v.to_json() for k, v in a.metrics.items()} == {k: v.to_json() for k, v in b.metrics.items()}


def test_leaderboard_escapes_names():
    assert md_escape("a|b_<script>") == "a\\|b\\_\\<script\\>"
    from ctxbench.results import CellResult, MetricValue
    r = CellResult(cell_id="x", status="ok", task="t", task_hash="h", task_version=1, family="f",
                   backend="<script>alert(1)</script>", backend_args={}, fingerprint="fp",
                   backend_label="<script>alert(1)</script>|x", metrics={"m": MetricValue(0.5, (0.4, 0.6), 10)},
                   headline=["m"], timestamp="2026")
    md = render_markdown([r])
    assert "<script>" not in md and "\\<script\\>alert" in md
    assert "0.500 [0.400, 0.600]" in md


def test_cli_usage_errors_exit_2(tmp_path):
    """One subprocess round trip (the in-process cases are in test_usage_errors.py)."""
    proc = run_cli(["run", "--task", "context_retreival_synthetic", "--output-dir", str(tmp_path)])
    assert proc.returncode == 2 and "Did you mean: context_retrieval_synthetic" in proc.stderr
    assert "Traceback" not in proc.stderr