"""The family's registration: a light __init__, the protocol check, the metric names
the evaluator emits, and the loaders' path handling (task-relative, symlinks refused)."""

import os

import pytest
from PIL import Image

from ctxbench.encoder import CachedEncoder
from ctxbench.errors import PathEscapeError, ProtocolError
from ctxbench.families import context_retrieval as family
from ctxbench.families.context_retrieval import evaluator
from ctxbench.families.context_retrieval.protocol import PROTOCOL_DEFAULTS, check_protocol, metric_names
from ctxbench.families.context_retrieval.synthetic import build
from ctxbench.families.contract import EvalRequest
from ctxbench.registrations import LoadContext
from ctxbench_plugins.random_backend import RandomBackend

from test_context_retrieval_data import _write_dataset


# (the light-import check of this family's hooks is in tests/core/test_family_contract.py)


def test_spec_declares_protocol_check_metric_names_and_plots():
    spec, = family.ctxbench_families()
    assert spec.check_protocol is check_protocol and spec.metric_names is metric_names
    assert spec.protocol_defaults == PROTOCOL_DEFAULTS and not getattr(spec, "metrics", ())
    assert callable(spec.plots) and len(spec.plots()) >= 1
    check_protocol(dict(PROTOCOL_DEFAULTS))


@pytest.mark.parametrize("option, value, words", [
    ("patterns", ["no_ctx", "sideways_ctx"], "sideways_ctx"),
    ("patterns", ["image_ctx"], "no_ctx"),
    ("patterns", "no_ctx", "list"),
    ("patterns", ["no_ctx", "no_ctx"], "repeated"),
    ("levels", ["L5"], "L5"),
    ("ks", [0], "integers >= 1"),
    ("ks", [1, 1], "repeated"),
    ("ks", [True], "integers >= 1"),
    ("bootstrap_resamples", 0, "integer >= 1"),
    ("bootstrap_resamples", 10.5, "integer >= 1"),
    ("query_context", "target", "candidate"),
    ("divergence", "yes", "true or false"),
])
def test_check_protocol_names_the_option(option, value, words):
    with pytest.raises(ProtocolError, match=words) as info:
        check_protocol({**PROTOCOL_DEFAULTS, option: value})
    assert info.value.option == option


@pytest.mark.parametrize("backend, protocol", [
    (RandomBackend, {}),
    (RandomBackend, {"patterns": ["no_ctx", "both_ctx"], "levels": ["L2", "L4"], "ks": [1, 3],
                     "divergence": False}),
])
def test_emitted_metric_names_are_the_declared_ones(backend, protocol):
    dataset = build(n_groups=3, seed=0)
    p = {**PROTOCOL_DEFAULTS, "bootstrap_resamples": 50, **protocol}
    enc = CachedEncoder(backend(), cache=None, progress=False)
    out = evaluator.evaluate(EvalRequest(task=None, dataset=dataset, encoder=enc, protocol=p))
    declared = metric_names(p)
    assert len(declared) == len(set(declared))
    emitted = set(out.metrics)
    assert emitted <= set(declared), emitted - set(declared)
    assert enc.capabilities.image_context and enc.capabilities.text_context
    assert emitted == set(declared)     # a backend taking context on both sides emits them all
    assert set(out.headline) <= set(declared)


def _ctx(task_file, limit=None):
    return LoadContext("cr", task_file, limit=limit)


def test_json_loader_resolves_paths_against_the_task_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _write_dataset(data)
    task = tmp_path / "tasks" / "cr.yaml"
    task.parent.mkdir()
    ds = family.load_json({"path": "../data/cr.json", "image_root": "../data"}, _ctx(task))
    assert len(ds.images) == 6
    assert len(family.load_json({"path": "../data/cr.json"}, _ctx(task, limit=3)).images) == 3


def test_json_loader_refuses_a_symlinked_folder_leading_out(tmp_path):
    """A link *inside* the image root that points outside it (here a whole folder)
    is refused through the registered loader, as a literal '..' is."""
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (4, 4)).save(outside / "secret.png")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "linked")

    def mutate(doc):
        doc["groups"][0]["images"][0]["path"] = "linked/secret.png"
    path = _write_dataset(root, mutate)
    with pytest.raises(PathEscapeError, match=r"groups\[0\]\.images\[0\]\.path.*outside"):
        family.load_json({"path": str(path)}, _ctx(None))
    # a link that stays inside the root is fine
    os.symlink(root / "imgs", root / "alias")

    def inside(doc):
        doc["groups"][0]["images"][0]["path"] = "alias/0_0.png"
    family.load_json({"path": str(_write_dataset(root, inside))}, _ctx(None))
