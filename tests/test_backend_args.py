"""Issue 17, "every backend declares its arguments": each first-party declaration
matches its factory's keyword arguments; an unknown name or a wrong type is a usage
error (exit 2, did-you-mean) found before any model loads, in run and check-backend;
list backends --details shows the table; undeclared (third-party) backends still
run and the kit warns; a plugin that failed to import is named by check-backend."""

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import stale_fingerprint_plugin as stale
from ctxbench.backend import BackendArg, BackendSpec, check_backend_args
from ctxbench.cli import main
from ctxbench.errors import CtxbenchError
from ctxbench.testing import run_conformance
from distutil import make_dist

TESTS = Path(__file__).resolve().parent


def _classes():
    from ctxbench_plugins.hf_clip import HFDualEncoder
    from ctxbench_plugins.open_clip_backend import OpenClipBackend
    from ctxbench_plugins.random_backend import RandomBackend
    from ctxbench_plugins.vlm_caption import VLMCaptionBackend
    from ctxbench_plugins.vlm_embed import VLMEmbedBackend
    return {"random": RandomBackend, "open_clip": OpenClipBackend, "hf_clip": HFDualEncoder,
            "vlm_embed": VLMEmbedBackend, "vlm_caption": VLMCaptionBackend}


@pytest.mark.parametrize("name", ["random", "open_clip", "hf_clip", "vlm_embed", "vlm_caption"])
def test_declarations_match_the_factory(plugin_host, name):
    """Names, order-free, and defaults equal the constructor's keyword arguments."""
    params = {p.name: p.default for p in inspect.signature(_classes()[name]).parameters.values()
              if p.name != "device"}
    spec = plugin_host.backends.get(name)
    assert [a.name for a in spec.args] and {a.name for a in spec.args} == set(params)
    for arg in spec.args:
        if params[arg.name] is not inspect.Parameter.empty:
            assert arg.default == params[arg.name], arg.name
        assert arg.help and "\n" not in arg.help and arg.type_name()


def test_toy_clip_and_presets_declare_what_they_forward(plugin_host):
    from ctxbench_plugins.presets import load_presets
    from ctxbench_plugins.toy_clip_backend import PASSED_ARGS
    assert tuple(a.name for a in plugin_host.backends.get("toy_clip").args) == PASSED_ARGS
    presets = load_presets()
    assert presets
    for preset in presets:
        spec = plugin_host.backends.get(preset.name)
        assert spec.args == plugin_host.backends.get(preset.backend).args
        check_backend_args(spec, spec.default_args)   # every preset's own args are declared


SPEC = BackendSpec("probe", lambda device="cpu", **a: None, args=(
    BackendArg("dim", int, 64, "d"), BackendArg("weight", float, 0.5, "w"),
    BackendArg("mode", str, "a", "m", choices=("a", "b")), BackendArg("limit", int, None, "l"),
    BackendArg("flag", bool, False, "f")))


@pytest.mark.parametrize("args, message", [
    ({"dimm": 3}, "has no argument 'dimm'. Did you mean dim?"),
    ({"dim": "abc"}, "dim='abc' is str, expected int"),
    ({"dim": True}, "dim=True is bool, expected int"),
    ({"mode": "c"}, "mode='c' is not one of a, b"),
    ({"flag": 1}, "flag=1 is int, expected bool"),
])
def test_bad_arguments_are_refused(args, message):
    with pytest.raises(CtxbenchError, match=message.replace("?", r"\?").replace("(", r"\(")):
        check_backend_args(SPEC, args)


def test_good_arguments_pass_as_the_factory_gets_them():
    got = check_backend_args(SPEC, {"dim": 3, "weight": 1, "mode": "B", "limit": None})
    assert got == {"dim": 3, "weight": 1.0, "mode": "B", "limit": None}
    assert isinstance(got["weight"], float)
    undeclared = BackendSpec("old", lambda device="cpu", **a: None)
    assert check_backend_args(undeclared, {"anything": object}) == {"anything": object}


@pytest.fixture
def never_built(monkeypatch):
    """The random backend raises if it is ever constructed."""
    from ctxbench_plugins import random_backend

    def refuse(self, *a, **k):
        raise AssertionError("a model was loaded before the arguments were checked")
    monkeypatch.setattr(random_backend.RandomBackend, "__init__", refuse)


@pytest.mark.parametrize("argv", [
    ["run", "--task", "context_retrieval_synthetic", "--backend", "random",
     "--backend-arg", "dimm=3"],
    ["run", "--task", "context_retrieval_synthetic", "--backend", "random",
     "--backend-arg", "dim=abc"],
    ["check-backend", "random", "--backend-arg", "dimm=3"],
    ["check-backend", "random", "--backend-arg", "seed=x"],
])
def test_cli_usage_error_before_any_model_loads(argv, never_built, tmp_path, capsys):
    extra = ["--output-dir", str(tmp_path / "out"), "--no-progress"] if argv[0] == "run" else []
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert "ctxbench: error: backend 'random'" in err and "Traceback" not in err
    assert ("Did you mean dim?" in err) if "dimm" in argv[-1] else ("expected int" in err)
    assert not list(tmp_path.rglob("*.json"))   # no cell ran


def test_list_backends_details_and_compact_list(capsys):
    assert main(["list", "backends", "--details", "random"]) == 0
    out = capsys.readouterr().out
    assert "seeded chance baseline" in out
    row = next(line for line in out.splitlines() if line.startswith("dim "))
    assert row.split()[:3] == ["dim", "int", "64"] and "embedding dimension" in row
    assert main(["list", "backends"]) == 0
    listing = capsys.readouterr().out
    assert "random" in listing and "embedding dimension" not in listing
    assert max(len(line) for line in listing.splitlines()) <= 160
    assert main(["list", "backends", "--details", "randon"]) == 2
    assert "Did you mean: random" in capsys.readouterr().err


def test_check_backend_names_a_plugin_that_failed_to_import(tmp_path, monkeypatch, capsys):
    make_dist(tmp_path, "ctxbench_fancy", "ctxb_fancy", [("fancy_clip", "ctxb_fancy")],
              "import os\nraise ImportError('needs libfoo >= 2')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check-backend", "fancy_clip"]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'fancy_clip'" in err and "failed to load" in err
    assert "plugin fancy_clip (ctxbench_fancy)" in err and "needs libfoo >= 2" in err
    assert f"(at {tmp_path / 'ctxb_fancy.py'}:2)" in err


def test_undeclared_backend_runs_and_the_kit_warns():
    spec = BackendSpec("old", lambda device="cpu", **a: stale.StaleTemplate(**a))
    report = run_conformance(spec, {"dim": 8})
    check = report.result("fingerprint_covers_args")
    assert report.ok and check.status == "skip" and check.detail.startswith("warning:")


def test_reproduce_lines_are_runnable(plugin_host):
    report = run_conformance(plugin_host.backends.get("random"), {"dim": 12, "seed": 3},
                             vary_args=False)
    assert report.reproduce == ("ctxbench check-backend random --backend-arg dim=12 "
                                "--backend-arg seed=3 --device cpu --no-vary-args")
    assert main(report.reproduce.split()[1:]) == 0
    report = run_conformance(stale.StaleTemplate, {"dim": 8, "template": "x {}"},
                             declared_args=stale.ARGS)
    assert report.reproduce.startswith("python -c ")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(["bash", "-c", report.reproduce.replace("python", sys.executable, 1)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"fingerprint: {report.fingerprint}" in proc.stdout
    assert "FAIL  fingerprint_covers_args  template=" in proc.stdout
    lam = run_conformance(lambda device="cpu": stale.StaleTemplate(), name="lam").reproduce
    assert "cannot be imported by name" in lam and "run_conformance" in lam
