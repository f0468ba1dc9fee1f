"""Task YAML schema: safe loading, includes, ${ENV} expansion, errors that name the
file, field and line, close-match suggestions."""

import pytest

from ctxbench.errors import TaskConfigError, UnknownNameError
from ctxbench.plugin_host import load_plugins
from ctxbench.task_catalog import TaskCatalog
from ctxbench.task_config import parse_task


@pytest.fixture(scope="module")
def host():
    return load_plugins()


GOOD = """\
task: my_task
family: context_retrieval
version: 2
dataset:
  loader: synthetic_context_retrieval
  options: {n_groups: 2}
protocol:
  ks: [1]
"""


def write(tmp_path, text, name="t.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_task(tmp_path, host):
    spec = parse_task(write(tmp_path, GOOD), host.families, host.loaders)
    assert spec.name == "my_task" and spec.version == 2
    assert spec.options == {"n_groups": 2} and spec.protocol == {"ks": [1]}
    assert spec.all_groups[:2] == ["all", "context_retrieval"]
    assert len(spec.hash) == 16


def test_unknown_field_suggests_and_names_line(tmp_path, host):
    p = write(tmp_path, GOOD + "protocl: {}\n")
    with pytest.raises(TaskConfigError) as e:
        parse_task(p, host.families, host.loaders)
    msg = str(e.value)
    assert str(p) in msg and "protocl (line 9)" in msg and "did you mean 'protocol'" in msg


def test_unknown_family_loader_and_protocol_key(tmp_path, host):
    with pytest.raises(TaskConfigError, match="did you mean 'context_retrieval'"):
        parse_task(write(tmp_path, GOOD.replace("family: context_retrieval", "family: context_retreival")),
                   host.families, host.loaders)
    with pytest.raises(TaskConfigError, match="dataset.loader.*did you mean 'synthetic_context_retrieval'"):
        parse_task(write(tmp_path, GOOD.replace("loader: synthetic_context_retrieval",
                                                "loader: synthetic_context_retreival")),
                   host.families, host.loaders)
    with pytest.raises(TaskConfigError, match=r"protocol.kss \(line 8\).*did you mean 'ks'"):
        parse_task(write(tmp_path, GOOD.replace("  ks: [1]", "  kss: [1]")), host.families, host.loaders)
    with pytest.raises(TaskConfigError, match="dataset.options.n_group .*did you mean 'n_groups'"):
        parse_task(write(tmp_path, GOOD.replace("n_groups: 2", "n_group: 2")), host.families, host.loaders)


def test_missing_required_field_and_bad_types(tmp_path, host):
    with pytest.raises(TaskConfigError, match="field 'version': required field is missing"):
        parse_task(write(tmp_path, GOOD.replace("version: 2\n", "")), host.families, host.loaders)
    with pytest.raises(TaskConfigError, match="version.*must be an integer"):
        parse_task(write(tmp_path, GOOD.replace("version: 2", "version: two")))
    with pytest.raises(TaskConfigError, match="invalid YAML at line"):
        parse_task(write(tmp_path, "task: [unclosed\n"))


def test_yaml_is_loaded_safely(tmp_path):
    p = write(tmp_path, GOOD + "description: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(TaskConfigError, match="invalid YAML"):
        parse_task(p)
    assert not (tmp_path / "pwned").exists()


def test_include_and_env_expansion(tmp_path, host, monkeypatch):
    write(tmp_path, "family: context_retrieval\nversion: 1\nprotocol: {ks: [1, 5], divergence: false}\n",
          "_defaults.yaml")
    text = ("include: _defaults.yaml\ntask: inc\nprotocol: {ks: [1]}\n"
            "dataset:\n  loader: context_retrieval_json\n"
            "  options: {path: '${MY_DATA:-/fallback}/x.json'}\n")
    p = write(tmp_path, text)
    spec = parse_task(p, host.families, host.loaders)
    assert spec.protocol == {"ks": [1], "divergence": False}  # task overrides include
    assert spec.options["path"] == "/fallback/x.json"
    h = spec.hash
    monkeypatch.setenv("MY_DATA", "/data")
    spec2 = parse_task(p, host.families, host.loaders)
    assert spec2.options["path"] == "/data/x.json"
    assert spec2.hash == h  # same task on another data root: same hash


def test_unset_env_without_default(tmp_path, monkeypatch):
    monkeypatch.delenv("CTXB_NOPE", raising=False)
    p = write(tmp_path, GOOD.replace("{n_groups: 2}", "{path: '${CTXB_NOPE}/a'}"))
    with pytest.raises(TaskConfigError, match="dataset.options.path.*CTXB_NOPE is not set"):
        parse_task(p)


def test_include_cycle(tmp_path):
    write(tmp_path, "include: b.yaml\n", "a.yaml")
    write(tmp_path, "include: a.yaml\n", "b.yaml")
    with pytest.raises(TaskConfigError, match="include cycle"):
        parse_task(tmp_path / "a.yaml")


def test_registry_groups_selection_and_invalid_files(tmp_path, host):
    write(tmp_path, GOOD)
    write(tmp_path, GOOD.replace("my_task", "other").replace("version: 2", "version: 1\ngroups: [smoke]"),
          "o.yaml")
    write(tmp_path, "task: broken\n", "broken.yaml")
    reg = TaskCatalog([tmp_path], host.families, host.loaders)
    assert sorted(reg.tasks.names()) == ["my_task", "other"]
    assert [t.name for t in reg.select(["smoke"])] == ["other"]
    assert {t.name for t in reg.select(["all"])} == {"my_task", "other"}
    assert [t.name for t in reg.select(["other,my_task", "other"])] == ["other", "my_task"]
    assert tmp_path / "broken.yaml" in reg.invalid
    with pytest.raises(UnknownNameError, match="Did you mean: my_task"):
        reg.select(["my_tsk"])


def test_shipped_tasks_all_validate(host):
    reg = TaskCatalog(host.task_dirs, host.families, host.loaders)
    assert not reg.invalid, {str(k): str(v) for k, v in reg.invalid.items()}
    assert "context_retrieval_synthetic" in reg.tasks
