"""The conformance kit: good backends pass, each kind of broken backend fails the
check made for it, and the example third-party plugin installs, registers through
its entry point and passes - in code and through the pytest plugin."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hashlib  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import ctxbench  # noqa: E402
from ctxbench.backend import Capabilities  # noqa: E402
from ctxbench.inputs import context_key, pil_key, text_key  # noqa: E402
from ctxbench.testing import CHECKS, run_conformance  # noqa: E402
from ctxbench.testing import tiny_models  # noqa: E402
from ctxbench_plugins.random_backend import ctxbench_backends as random_backends  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "example_plugin"


class Toy:
    """A correct backend: a fixed unit vector per (input, context)."""

    dim = 8

    def __init__(self, image_context=True, text_context=True, normalized=True):
        self.capabilities = Capabilities(image_context=image_context, text_context=text_context,
                                         normalized=normalized, context_method="hash")

    def fingerprint(self):
        return "toy:v1"

    def _vec(self, key, n_in_batch):
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim)
        return v / np.linalg.norm(v)

    def _out(self, keys):
        return torch.tensor(np.stack([self._vec(k, len(keys)) for k in keys]), dtype=torch.float32)

    def encode_images(self, images, contexts):
        return self._out([pil_key(i) + context_key(c) for i, c in zip(images, contexts)])

    def encode_texts(self, texts, contexts):
        return self._out([text_key(t) + context_key(c) for t, c in zip(texts, contexts)])


class NotNormalised(Toy):
    def _out(self, keys):
        return 3.0 * super()._out(keys)


class BatchDependent(Toy):
    def _vec(self, key, n_in_batch):
        v = super()._vec(key, n_in_batch) + 0.01 * n_in_batch
        return v / np.linalg.norm(v)


class IgnoresImageContext(Toy):
    def encode_images(self, images, contexts):
        return super().encode_images(images, [None] * len(images))


class NonDeterministic(Toy):
    def _out(self, keys):
        out = super()._out(keys) + 1e-3 * torch.randn(len(keys), self.dim)
        return out / out.norm(dim=1, keepdim=True)


class UnstableFingerprint(Toy):
    def fingerprint(self):
        return f"toy:{id(self)}"


class FlatOutput(Toy):
    def encode_images(self, images, contexts):
        return super().encode_images(images, contexts)[:, 0]


class OtherTextDim(Toy):
    def encode_texts(self, texts, contexts):
        return torch.cat([super().encode_texts(texts, contexts)] * 2, dim=1) / 2 ** 0.5


class NaNs(Toy):
    def encode_texts(self, texts, contexts):
        out = super().encode_texts(texts, contexts)
        out[0, 0] = float("nan")
        return out


def test_a_correct_backend_passes_every_check():
    report = run_conformance(lambda device="cpu": Toy(), name="toy")
    assert report.ok, report.summary()
    assert [c.name for c in report.checks] == list(CHECKS)
    assert report.result("video").status == "skip"
    assert report.dim == 8 and report.fingerprint == "toy:v1"
    assert report.speed["images_per_s"] > 0 and "result: OK" in report.summary()


@pytest.mark.parametrize("cls, failing", [
    (NotNormalised, {"normalized"}),
    (BatchDependent, {"batch_invariance", "image_context", "text_context", "cached_encoder"}),
    (IgnoresImageContext, {"image_context"}),
    (NonDeterministic, {"determinism", "batch_invariance", "image_context", "text_context",
                        "cached_encoder"}),
    (UnstableFingerprint, {"fingerprint"}),
    (FlatOutput, {"image_output", "normalized", "determinism", "batch_invariance",
                  "image_context", "cached_encoder", "speed"}),
    (OtherTextDim, {"text_output", "cached_encoder", "speed"}),   # the encoder refuses it too
    (NaNs, {"text_output", "normalized", "determinism", "batch_invariance", "text_context",
            "cached_encoder", "speed"}),
])
def test_each_broken_backend_fails_its_check(cls, failing):
    report = run_conformance(lambda device="cpu": cls(), name=cls.__name__)
    assert not report.ok
    assert {c.name for c in report.failures()} == failing, report.summary()


def test_undeclared_context_is_skipped_and_build_failure_reported():
    report = run_conformance(lambda device="cpu": Toy(image_context=False, text_context=False))
    assert report.ok
    assert report.result("image_context").status == report.result("text_context").status == "skip"

    def broken(device="cpu", **args):
        raise RuntimeError("weights missing")
    report = run_conformance(broken, name="broken")
    assert report.result("build").status == "fail" and "weights missing" in report.result("build").detail
    assert all(c.status == "skip" for c in report.checks[1:])


def test_registered_spec_with_backend_args():
    spec = random_backends()[0]
    report = run_conformance(spec, {"dim": 12}, "cpu")
    assert report.ok and report.dim == 12 and report.args == {"dim": 12}
    assert "--backend-arg dim=12" in report.summary()


def test_a_real_model_backend_passes(tmp_path, monkeypatch):
    monkeypatch.setenv("CTXBENCH_CACHE", str(tmp_path / "cache"))
    from ctxbench_plugins.hf_clip import ctxbench_backends as hf_clip_backends
    path = tiny_models.build_clip(tmp_path / "clip", "clip")
    report = run_conformance(hf_clip_backends()[0], {"model": str(path), "context_fusion": "late"})
    assert report.ok, report.summary()
    assert report.capabilities["context_method"] == "late_fusion"


# ----------------------------------------------------------------------------- example plugin
def _write_dist_info(src: Path, target: Path) -> None:
    """Install the example the way a wheel would, from its own pyproject.toml."""
    import tomllib
    project = tomllib.loads((src / "pyproject.toml").read_text())["project"]
    shutil.copytree(src / "src" / "ctxbench_colour_histogram", target / "ctxbench_colour_histogram")
    info = target / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\n"
                                   f"Version: {project['version']}\n")
    lines = ["[ctxbench]"] + [f"{k} = {v}" for k, v in project["entry-points"]["ctxbench"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """pip-install the example package (no deps, no build isolation) into a temp
    target and put it on sys.path, as a user's environment would have it."""
    root = tmp_path_factory.mktemp("example")
    src = root / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    if importlib.util.find_spec("setuptools") is not None:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                               "--no-build-isolation", "--no-index", "--quiet", "--target",
                               str(target), str(src)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    else:   # no build backend in this environment: write the dist-info a wheel would
        _write_dist_info(src, target)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target, src
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.startswith("ctxbench_colour_histogram")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def test_example_plugin_registers_and_passes(installed_example):
    from ctxbench.plugin_host import load_plugins
    host = load_plugins()
    assert "colour-histogram" in host.backends, [f.error for f in host.failures]
    spec = host.backends.get("colour-histogram")
    report = run_conformance(spec, {"resolution": 8})
    assert report.ok, report.summary()
    assert report.capabilities["text_context"] and not report.capabilities["image_context"]
    # the toy space is meaningful: a red image is closest to the text "red"
    from PIL import Image
    backend = spec.factory(device="cpu")
    img = backend.encode_images([Image.new("RGB", (16, 16), (225, 35, 35))], [None])
    txt = backend.encode_texts(["red", "blue", "green"], [None] * 3)
    assert int((img @ txt.T).argmax()) == 0


def test_pytest_plugin_in_the_authors_repo(installed_example):
    """The author's own test file (BackendConformance subclasses) and the
    command-line mode, run by pytest with the ctxbench plugin loaded."""
    target, src = installed_example
    ctx_root = Path(ctxbench.__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(target), str(Path(ctxbench.__file__).parent.parent), str(ctx_root),
         os.environ.get("PYTHONPATH", "")]))
    plugin_file = Path(ctxbench.__file__).parent / "testing" / "pytest_plugin.py"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
           "ctxbench.testing.pytest_plugin", "--rootdir", str(src), "-o", "addopts=",
           str(src / "tests" / "test_conformance.py"), str(plugin_file),
           "--ctxbench-backend", "colour-histogram", "--ctxbench-backend-arg", "resolution=8"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=src, env=env, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # 4 classes (factory, registered name, args built in tmp_path, command line) x 14
    # checks; each skips image_context and video, which the plugin does not declare
    assert "48 passed, 8 skipped" in out, out[-1500:]
    assert "ctxbench conformance: colour-histogram" in out
    assert "instance methods are deprecated" not in out   # pytest 10 would refuse the fixture
    assert "--backend-arg palette=" in out and "fingerprint_covers_args  resolution=" in out
