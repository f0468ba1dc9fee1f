"""Issue 14, stale cache from an incomplete fingerprint: a plugin whose fingerprint()
ignores an argument that changes the embeddings still gets fresh embeddings when
that argument changes (the runner keys the cache on the canonical args too), and
the conformance kit's fingerprint_covers_args names the argument.

A new member of the class - any backend that forgets an argument in its
fingerprint - is caught the same way: the cache test holds for every argument
(the key includes all of them), and the kit varies every declared argument."""

import pytest

import stale_fingerprint_plugin as stale
from ctxbench.plugin_host import load_plugins
from ctxbench.runner import Runner, RunOptions
from ctxbench.task_catalog import TaskCatalog
from ctxbench.testing import run_conformance


@pytest.fixture(scope="module")
def host():
    return load_plugins(extra_plugins=(stale,))


def _run(host, tmp_path, cache, template, name):
    tasks = TaskCatalog(host.task_dirs, host.families, host.loaders).select(
        ["context_retrieval_synthetic"])
    opts = RunOptions(output_dir=tmp_path / name, cache_dir=cache, progress=False, limit=8,
                      log=lambda m: None)
    (result,) = Runner(host, opts).run(tasks, [("stale_template", {"template": template})])
    assert result.status == "ok", result.error
    return result


def test_changed_argument_gets_fresh_embeddings(host, tmp_path):
    cache = tmp_path / "cache"
    first = _run(host, tmp_path, cache, "a photo of {}", "a")
    second = _run(host, tmp_path, cache, "a drawing of {}", "b")
    assert first.fingerprint == second.fingerprint   # the plugin's own bug, unchanged
    assert second.encoder_stats["forward_passes"] > 0, second.encoder_stats
    assert first.metrics != second.metrics   # the texts were embedded again, differently
    again = _run(host, tmp_path, cache, "a photo of {}", "c")
    assert again.encoder_stats["forward_passes"] == 0   # the same args still hit the cache
    assert again.metrics == first.metrics


def test_conformance_kit_flags_the_forgotten_argument(host):
    report = run_conformance(host.backends.get("stale_template"), {}, "cpu")
    check = report.result("fingerprint_covers_args")
    assert check.status == "fail", report.summary()
    assert "template='a drawing of {}'" in check.detail and "dim" not in check.detail.split(
        "changes")[0]
    assert not report.ok


def test_an_honest_fingerprint_passes(host, monkeypatch):
    monkeypatch.setattr(stale.StaleTemplate, "fingerprint",
                        lambda self: f"stale-template:v1:dim={self.dim}:t={self.template}")
    report = run_conformance(host.backends.get("stale_template"), {}, "cpu")
    check = report.result("fingerprint_covers_args")
    assert check.status == "pass", check.detail
    assert "dim=17: fingerprint follows" in check.detail
