"""The evaluation memo (issue 18, cell_memo.py): a ``--rerun`` whose inputs are all
unchanged restores the evaluation; any change to the data, the images, the
embeddings, the artifacts or the code evaluates again; results are identical."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import memo_toy_plugin as toy
from ctxbench import cell_memo, inputs
from ctxbench.cache import EmbeddingCache
from ctxbench.cell_memo import NotMemoizable, code_identity, dataset_digest
from ctxbench.inputs import ImageRef
from ctxbench.plugin_host import load_plugins
from ctxbench.runner import Runner, RunOptions
from ctxbench.task_catalog import TaskCatalog

RESULT_FIELDS = ("cell_id", "status", "metrics", "headline", "tables", "details", "n", "fingerprint")


@pytest.fixture(scope="module")
def host():
    return load_plugins(extra_plugins=(toy,), entry_points=False)


@pytest.fixture(autouse=True)
def _counts(monkeypatch):
    toy.reset()
    inputs._FILE_KEYS.clear()
    decodes = []
    real = ImageRef.load
    monkeypatch.setattr(ImageRef, "load", lambda self: decodes.append(self.label) or real(self))
    yield decodes
    inputs._FILE_KEYS.clear()
    inputs.set_file_hash_store(None)


def run(host, root: Path, **options):
    """One run of the toy task on the pixels backend; (result, result file JSON, log)."""
    tasks = TaskCatalog([root / "tasks"], host.families, host.loaders).select([toy.TASK])
    log: list[str] = []
    opts = RunOptions(output_dir=root / "out", cache_dir=root / "cache", progress=False,
                      rerun=True, log=log.append, **options)
    inputs._FILE_KEYS.clear()   # as a new process: only the persisted hash store remains
    (result,) = Runner(host, opts).run(tasks, [("pixels", {})])
    assert result.status == "ok", result.error
    path = root / "out" / toy.TASK / f"{result.cell_id}.json"
    doc = json.loads(path.read_text())
    return result, {k: doc[k] for k in RESULT_FIELDS}, "\n".join(log)


def test_warm_rerun_restores_the_evaluation_bit_for_bit(host, tmp_path, _counts):
    toy.write_task(tmp_path)
    cold, cold_doc, cold_log = run(host, tmp_path)
    assert toy.COUNTS == {"evaluations": 1, "builds": 1, "images_encoded": 4}
    assert "ok in" in cold_log and "0 of 4 encodings cached" in cold_log
    assert "evaluation cached" not in cold_log
    decodes_cold = len(_counts)
    warm, warm_doc, warm_log = run(host, tmp_path)
    assert toy.COUNTS == {"evaluations": 1, "builds": 1, "images_encoded": 4}, "did work again"
    assert len(_counts) == decodes_cold, "decoded an image"
    assert warm_doc == cold_doc
    assert "4 of 4 encodings cached, evaluation cached" in warm_log
    assert warm.encoder_stats["evaluation_reused"] == 1
    assert warm.encoder_stats["forward_passes"] == 0 and warm.encoder_stats["cache_hits"] == 4
    assert cold.encoder_stats["evaluation_reused"] == 0


def test_changed_labels_evaluate_again_from_cached_embeddings(host, tmp_path):
    toy.write_task(tmp_path)
    _, cold, _ = run(host, tmp_path)
    toy.write_task(tmp_path, labels=(4, 3, 2, 1))
    _, changed, log = run(host, tmp_path)
    assert toy.COUNTS["evaluations"] == 2 and toy.COUNTS["images_encoded"] == 4
    assert changed["metrics"] != cold["metrics"] and "evaluation cached" not in log
    _, again, _ = run(host, tmp_path)
    assert toy.COUNTS["evaluations"] == 2 and again == changed


def test_a_changed_image_is_encoded_and_evaluated_again(host, tmp_path):
    toy.write_task(tmp_path)
    _, cold, _ = run(host, tmp_path)
    toy.write_image(tmp_path / "data" / "0.png", (0, 0, 0))
    _, changed, _ = run(host, tmp_path)
    assert toy.COUNTS["evaluations"] == 2 and toy.COUNTS["images_encoded"] == 5
    assert changed["details"]["first"] == [0.0, 0.0, 0.0] != cold["details"]["first"]


def test_lost_embeddings_are_encoded_and_evaluated_again(host, tmp_path):
    toy.write_task(tmp_path)
    _, cold, _ = run(host, tmp_path)
    for seg in (tmp_path / "cache" / "embeddings").glob("*/seg-*"):
        seg.unlink()
    _, again, _ = run(host, tmp_path)
    assert toy.COUNTS["evaluations"] == 2 and toy.COUNTS["images_encoded"] == 8
    assert again == cold


def test_a_lost_artifact_evaluates_again_and_is_rewritten(host, tmp_path):
    toy.write_task(tmp_path, protocol={"artifact": True})
    result, cold, _ = run(host, tmp_path)
    artifact = Path(cold["details"]["artifact"])
    run(host, tmp_path)
    assert toy.COUNTS["evaluations"] == 1
    artifact.unlink()
    _, again, _ = run(host, tmp_path)
    assert toy.COUNTS["evaluations"] == 2 and artifact.is_file() and again == cold
    artifact.write_bytes(b"edited")
    os.utime(artifact, ns=(1, 1))
    run(host, tmp_path)
    assert toy.COUNTS["evaluations"] == 3


def test_a_dataset_holding_a_path_is_always_evaluated(host, tmp_path):
    toy.write_task(tmp_path, keep_path=True)
    run(host, tmp_path)
    run(host, tmp_path)
    assert toy.COUNTS["evaluations"] == 2 and toy.COUNTS["images_encoded"] == 4
    assert not list((tmp_path / "cache" / "evaluations").glob("*.npz"))


def test_memo_off_or_no_cache_evaluates_every_time(host, tmp_path):
    toy.write_task(tmp_path)
    run(host, tmp_path, cell_memo=False)
    _, _, log = run(host, tmp_path, cell_memo=False)
    assert toy.COUNTS["evaluations"] == 2 and toy.COUNTS["images_encoded"] == 4
    assert "4 of 4 encodings cached" in log and "evaluation cached" not in log
    run(host, tmp_path, use_cache=False)
    assert toy.COUNTS["evaluations"] == 3


def test_the_key_follows_the_code_and_the_protocol(host, tmp_path, monkeypatch):
    toy.write_task(tmp_path)
    run(host, tmp_path)
    real = cell_memo.code_identity
    monkeypatch.setattr(cell_memo, "code_identity", lambda folder: real(folder) + [["x.py", 1, 1]])
    run(host, tmp_path)
    assert toy.COUNTS["evaluations"] == 2
    monkeypatch.setattr(cell_memo, "code_identity", real)
    toy.write_task(tmp_path, protocol={"scale": 2.0})
    _, doubled, _ = run(host, tmp_path)
    assert toy.COUNTS["evaluations"] == 3
    assert doubled["metrics"]["score"]["value"] > 0


def test_code_identity_changes_with_any_source_file(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    before = code_identity(pkg)
    cell_memo._CODE.clear()
    (pkg / "a.py").write_text("x = 22\n")
    assert code_identity(pkg) != before
    cell_memo._CODE.clear()
    (pkg / "b.py").write_text("")
    assert len(code_identity(pkg)) == 2


@dataclass
class Item:
    name: str
    ref: ImageRef
    tags: tuple


def _refs():
    return [ImageRef("k1", lambda: None, "a"), ImageRef("k2", lambda: None, "b")]


def test_dataset_digest_sees_every_value_order_and_type():
    def ds(**change):
        base = {"items": [Item("x", _refs()[0], ("t",)), Item("y", _refs()[1], ())],
                "labels": np.array([1, 2, 3]), "names": ["a", "b"], "meta": {"n": 2, "f": 0.5}}
        base.update(change)
        return base
    d = dataset_digest(ds())
    assert d == dataset_digest(ds())
    variants = [ds(labels=np.array([1, 2, 4])), ds(labels=np.array([1, 2, 3], dtype=np.int32)),
                ds(names=["b", "a"]), ds(names=("a", "b")), ds(meta={"f": 0.5, "n": 2}),
                ds(meta={"n": 2.0, "f": 0.5}), ds(meta={"n": 2, "f": 0.5, "g": None}),
                ds(items=[Item("x", ImageRef("k3", lambda: None, "a"), ("t",)),
                          Item("y", _refs()[1], ())]),
                ds(items=[Item("x", _refs()[0], ["t"]), Item("y", _refs()[1], ())])]
    digests = {dataset_digest(v) for v in variants}
    assert d not in digests and len(digests) == len(variants)


@pytest.mark.parametrize("value", [Path("/data"), lambda: 1, object(), {"a": [Path("x")]}])
def test_dataset_digest_refuses_what_it_cannot_see(value):
    with pytest.raises(NotMemoizable):
        dataset_digest({"x": value})


def test_locations_digest_needs_every_key_where_it_was(tmp_path):
    cache = EmbeddingCache(tmp_path).for_backend("fp")
    cache.put_many(["a", "b"], np.ones((2, 3)))
    where = cache.locations_digest({"a", "b"})
    assert where is not None and where == EmbeddingCache(tmp_path).for_backend("fp").locations_digest(["b", "a"])
    assert cache.locations_digest({"a", "c"}) is None
    cache.put_many(["a"], np.zeros((1, 3)))   # "a" now served from another segment
    assert cache.locations_digest({"a", "b"}) != where
