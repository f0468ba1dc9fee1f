"""One bad plugin, task file or cell never takes down the others (issue class: a
whole-run abort). Each hostile plugin breaks one rule; every other cell must still
run and be recorded, with a message that names what went wrong."""

import json

import pytest

import hostile_plugins
from ctxbench.plugin_host import load_plugins
from ctxbench.results import iter_results
from ctxbench.runner import Runner, RunOptions
from ctxbench.task_catalog import TaskCatalog

BROKEN = ["exits_in_encode", "bare_assert", "none_fingerprint", "zero_dim", "hangs",
          "exits_at_build"]


@pytest.fixture(scope="module")
def host():
    return load_plugins(extra_plugins=(hostile_plugins, hostile_plugins.SingleSpecInsteadOfList,
                                       hostile_plugins.ExitsInHook))


def test_broken_hooks_are_recorded_and_the_rest_loads(host):
    errors = " ".join(f.error for f in host.failures)
    assert "expected a list (wrap it: return [spec])" in errors
    assert "SystemExit" in errors
    assert "random" in host.backends and "exits_in_encode" in host.backends


def test_every_cell_is_recorded_whatever_the_backend_does(host, tmp_path):
    tasks = TaskCatalog(host.task_dirs, host.families, host.loaders).select(
        ["context_retrieval_synthetic"])
    logs = []
    opts = RunOptions(output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", limit=10,
                      progress=False, cell_timeout=5, log=logs.append)
    backends = [(b, {}) for b in BROKEN] + [("random", {})]
    results = {r.backend: r for r in Runner(host, opts).run(tasks, backends)}
    assert results["random"].status == "ok"
    for name in BROKEN:
        r = results[name]
        assert r.status == "failed", name
        assert r.error["message"].strip(), name          # never an empty message
    assert "sys.exit(3)" in results["exits_in_encode"].error["message"]
    assert "AssertionError with no message at" in results["bare_assert"].error["message"]
    assert "fingerprint() returned None" in results["none_fingerprint"].error["message"]
    assert "0-dimensional" in results["zero_dim"].error["message"]
    assert "--cell-timeout 5" in results["hangs"].error["message"]
    assert "plugin gave up" in results["exits_at_build"].error["message"]
    written = [r for _, r, _ in iter_results(tmp_path / "out") if r is not None]
    assert len(written) == len(backends)                 # every cell written to disk


def test_values_json_cannot_hold_and_long_task_names_are_written(host, tmp_path):
    name = "t" * 300
    task_file = tmp_path / "tasks" / "long.yaml"
    task_file.parent.mkdir()
    task_file.write_text(f"task: {name}\nfamily: nan_family\nversion: 1\n"
                         "dataset: {loader: nan_data}\n")
    catalog = TaskCatalog([task_file.parent], host.families, host.loaders)
    assert not catalog.invalid, catalog.invalid
    opts = RunOptions(output_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                      progress=False, log=lambda m: None)
    (result,) = Runner(host, opts).run(catalog.select([name]), [("random", {})])
    assert result.status == "ok", result.error
    (path,) = list((tmp_path / "out").rglob("*.json"))
    assert len(path.parent.name) <= 100
    data = json.loads(path.read_text())                 # valid JSON: NaN became null
    assert data["tables"]["t"] == [{"x": None, "y": None}] and data["task"] == name


def test_an_unwritable_output_folder_fails_the_cell_not_the_run(host, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    tasks = TaskCatalog(host.task_dirs, host.families, host.loaders).select(
        ["context_retrieval_synthetic"])
    opts = RunOptions(output_dir=blocker / "out", cache_dir=tmp_path / "cache", limit=5,
                      progress=False, log=lambda m: None)
    results = Runner(host, opts).run(tasks, [("random", {}), ("random", {"dim": 8})])
    assert [r.status for r in results] == ["failed", "failed"]
    assert "could not be written" in results[0].error["message"]


@pytest.mark.parametrize("content", ["[]", '{"schema_version": 1, "status": "ok", "metrics": '
                                     '{"m": "high"}}', "\\xff", '{"schema_version": 1, '
                                     '"status": "ok", "metrics": [], "task": 3}'])
def test_result_files_of_the_wrong_shape_are_listed_not_fatal(tmp_path, content):
    from ctxbench.leaderboard import latest_results
    folder = tmp_path / "res" / "task"
    folder.mkdir(parents=True)
    (folder / "bad.json").write_text(content)
    results, problems = latest_results(tmp_path / "res")
    assert results == [] and len(problems) == 1 and "bad.json" in problems[0]
