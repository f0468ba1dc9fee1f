"""Third-party discovery through the `ctxbench` entry-point group, and isolation of
broken plugins."""

import textwrap

import pytest

from ctxbench.plugin_host import load_plugins
from distutil import make_dist, run_cli

PLUGIN_SRC = textwrap.dedent('''
    import torch
    from ctxbench.backend import BackendSpec, Capabilities
    from ctxbench.hooks import hookimpl

    class Const:
        capabilities = Capabilities(normalized=True)
        def fingerprint(self): return "thirdparty-const:v1"
        def encode_images(self, images, contexts): return torch.ones(len(images), 4) / 2
        def encode_texts(self, texts, contexts): return torch.ones(len(texts), 4) / 2

    @hookimpl
    def ctxbench_backends():
        return [BackendSpec("thirdparty_const", lambda device="cpu", **a: Const(), "constant")]
''')


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    make_dist(tmp_path, "ctxbench_thirdparty", "ctxb_thirdparty",
              [("thirdparty", "ctxb_thirdparty")], PLUGIN_SRC)
    make_dist(tmp_path, "ctxbench_broken", "ctxb_broken", [("broken", "ctxb_broken")],
              "raise ImportError('needs libfoo >= 2')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_third_party_backend_is_discovered_and_broken_one_reported(third_party):
    host = load_plugins()
    assert "thirdparty_const" in host.backends
    assert host.backends.origin("thirdparty_const") == "thirdparty"
    assert "random" in host.backends  # first-party plugins still load
    failure = next(f for f in host.failures if f.plugin == "broken")
    assert "needs libfoo >= 2" in failure.error and failure.source == "ctxbench_broken"


def test_third_party_backend_runs_through_the_cli(third_party, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(["run", "--task", "context_retrieval_synthetic", "--backend", "thirdparty_const",
                    "--output-dir", str(out), "--no-cache", "--no-progress"], third_party)
    assert proc.returncode == 0, proc.stderr
    board = (tmp_path / "out.md").read_text()
    assert "thirdparty\\_const" in board
    # a constant embedding ties every candidate: Recall@1 is exactly 1/pool = 1/250
    assert "0.004" in board
    listing = run_cli(["list", "backends"], third_party).stdout
    assert "thirdparty_const" in listing and "FAILED plugin broken" in listing


def test_hook_that_raises_is_isolated():
    class Bad:
        __name__ = "bad_plugin"
        from ctxbench.hooks import hookimpl

        @hookimpl
        def ctxbench_backends(self):
            raise RuntimeError("boom")

    host = load_plugins(extra_plugins=(Bad(),))
    assert any("boom" in f.error for f in host.failures)
    assert "random" in host.backends


def test_wrong_record_type_is_reported():
    class Wrong:
        from ctxbench.hooks import hookimpl

        @hookimpl
        def ctxbench_backends(self):
            return ["not a spec"]

    host = load_plugins(extra_plugins=(Wrong(),))
    assert any("expected BackendSpec" in f.error for f in host.failures)
