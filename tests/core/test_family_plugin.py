"""A new family added from tests/ through the hooks alone: discovered, validated with
its own protocol check and metric names, run, and its task dependency resolved."""

import dataclasses
import shutil

import pytest

from ctxbench.errors import CtxbenchError
from ctxbench.plugin_host import load_plugins
from ctxbench.runner import Runner, RunOptions
from ctxbench.task_catalog import TaskCatalog
from ctxbench.task_config import parse_task

import toy_family


@pytest.fixture(scope="module")
def host():
    h = load_plugins(extra_plugins=(toy_family,), entry_points=False)
    h.backends  # noqa: B018 - built-in families only; backends come from the test below
    return h


def catalog(host, extra_dirs=()):
    return TaskCatalog(host.task_dirs + list(extra_dirs), host.families, host.loaders)


def test_family_tasks_are_discovered_and_dependencies_resolved(host):
    cat = catalog(host)
    assert not cat.invalid, cat.invalid
    twice = cat.tasks.get("colour_match_twice")
    assert twice.dependencies["reference"].name == "colour_match"
    assert "colour_match" in cat.groups()["colour_match"]


def test_editing_a_dependency_changes_the_dependent_hash(host, tmp_path):
    folder = tmp_path / "tasks"
    shutil.copytree(toy_family.__path__[0] + "/tasks", folder)
    other = TaskCatalog([folder], host.families, host.loaders)
    before = other.tasks.get("colour_match_twice").hash
    path = folder / "colour_match.yaml"
    path.write_text(path.read_text().replace("size: 16", "size: 24"))
    after = TaskCatalog([folder], host.families, host.loaders).tasks.get("colour_match_twice").hash
    assert before != after


def test_dependency_problems_are_reported_per_file(host, tmp_path):
    (tmp_path / "a.yaml").write_text("task: a\nfamily: colour_match\nversion: 1\n"
                                     "depends_on: {x: b}\ndataset: {loader: solid_colours}\n")
    (tmp_path / "b.yaml").write_text("task: b\nfamily: colour_match\nversion: 1\n"
                                     "depends_on: {x: a}\ndataset: {loader: solid_colours}\n")
    (tmp_path / "c.yaml").write_text("task: c\nfamily: colour_match\nversion: 1\n"
                                     "depends_on: {x: colour_mtach}\ndataset: {loader: solid_colours}\n")
    cat = catalog(host, [tmp_path])
    problems = {p.name: str(e) for p, e in cat.invalid.items()}
    assert "dependency cycle" in problems["a.yaml"] or "dependency cycle" in problems["b.yaml"]
    assert "did you mean 'colour_match'" in problems["c.yaml"]
    assert "colour_match" in cat.tasks  # the family's own tasks are unaffected


def test_protocol_check_and_metric_names_run_at_validate_time(host, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: bad\nfamily: colour_match\nversion: 1\n"
                   "dataset: {loader: solid_colours}\nprotocol:\n  ks: [0]\n")
    with pytest.raises(CtxbenchError, match=r"protocol\.ks \(line 6\).*integers >= 1"):
        parse_task(bad, host.families, host.loaders)
    typo = tmp_path / "typo.yaml"
    typo.write_text("task: typo\nfamily: colour_match\nversion: 1\n"
                    "dataset: {loader: solid_colours}\nmetrics: [R@2]\n")
    with pytest.raises(CtxbenchError, match="unknown metric 'R@2'.*did you mean 'R@1'"):
        parse_task(typo, host.families, host.loaders)


def test_the_family_runs_and_its_metric_names_match_what_it_emits(tmp_path):
    h = load_plugins(extra_plugins=(toy_family,))
    cat = catalog(h)
    tasks = cat.select(["colour_match"])
    opts = RunOptions(output_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                      progress=False, log=lambda m: None)
    (result,) = Runner(h, opts).run(tasks, [("random", {})])
    assert result.status == "ok", result.error
    protocol = {**toy_family.PROTOCOL_DEFAULTS, **tasks[0].protocol}
    assert set(result.metrics) == set(toy_family.metric_names(protocol))
    assert result.headline == ["R@1"] and result.n == 6


def test_a_dependency_reaches_the_evaluator_without_the_limit(tmp_path, monkeypatch):
    seen = {}
    original = toy_family.evaluate

    def spy(req):
        seen.update({role: len(dep.dataset["names"]) for role, dep in req.dependencies.items()})
        return original(req)

    h = load_plugins(extra_plugins=(toy_family,))
    spec = h.families.get("colour_match")
    h.families._entries["colour_match"] = dataclasses.replace(spec, evaluate=spy)
    tasks = catalog(h).select(["colour_match_twice"])
    opts = RunOptions(output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", limit=4,
                      progress=False, log=lambda m: None)
    (result,) = Runner(h, opts).run(tasks, [("random", {})])
    assert result.status == "ok", result.error
    assert result.n == 4 and seen == {"reference": 6}
