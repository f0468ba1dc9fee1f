"""metadata_sentiment loaders: FI folders + sidecar, manifests, Hugging Face sources,
polarity mapping, label distributions, splits, path safety, clear errors."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctxbench.families.metadata_sentiment.data import FI_EMOTIONS, parse_tags, stratified_limit, to_polarity
from ctxbench.families.metadata_sentiment.data_files import load_folders, load_manifest
from ctxbench.families.metadata_sentiment.data_hf import load_hf
from ctxbench.errors import DataNotFound, DatasetFormatError, PathEscapeError

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


def _png(path: Path, i: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), COLOURS[i % 4]).save(path)
    # make every file's bytes unique (keys are content hashes)
    with open(path, "ab") as fh:
        fh.write(bytes([i % 256, i // 256]))


def _fi(root: Path, per_class: int = 2) -> None:
    for k, emotion in enumerate(FI_EMOTIONS):
        for j in range(per_class):
            _png(root / emotion / f"{emotion}_{j}.jpg", k * per_class + j)


def test_parse_tags_formats_and_threshold():
    assert parse_tags([{"name": "dog", "score": 0.9}, {"name": "cat", "score": 0.3}], 0.4, "x") == ("dog",)
    assert parse_tags([["tree", 0.5], ["dog", 0.95]], 0.4, "x") == ("dog", "tree")
    assert parse_tags({"a": 0.41, "b": 0.39}, 0.4, "x") == ("a",)
    assert parse_tags("dog:0.9;tree:0.2;sky:0.6", 0.4, "x") == ("dog", "sky")
    assert parse_tags(["dog", "sky"], 0.4, "x") == ("dog", "sky")
    assert parse_tags("dog:0.9;tree:0.2", 0.1, "x") == ("dog", "tree")
    assert parse_tags([["cat", 0.1]], 0.4, "x") is None and parse_tags(None, 0.4, "x") is None
    with pytest.raises(DatasetFormatError, match="line 3: field 'tags'"):
        parse_tags([["dog", "high"]], 0.4, "m.jsonl: line 3")


def test_fi_folders_with_sidecar(tmp_path):
    root = tmp_path / "fi"
    _fi(root)
    side = tmp_path / "meta.jsonl"
    side.write_text("\n".join(json.dumps(r) for r in [
        {"image": "awe/awe_0.jpg", "caption": "a vast canyon", "scene": "canyon",
         "tags": [["rock", 0.8], ["person", 0.2]], "mood_words": "grand"},
        {"image": "fear/fear_1.jpg", "caption": "", "tags": {"spider": 0.97}},
        {"image": "fear/not_there.jpg", "caption": "unused"},
    ]) + "\n")
    ds = load_folders(root, metadata=side, text_fields=["mood_words"])
    assert len(ds) == 16 and ds.classes == FI_EMOTIONS
    np.testing.assert_array_equal(ds.labels, np.repeat(np.arange(8), 2))
    i = [im.label for im in ds.images].index(str((root / "awe/awe_0.jpg").resolve()))
    assert ds.text["caption"][i] == "a vast canyon" and ds.text["scene"][i] == "canyon"
    assert ds.objects[i] == ("rock",) and ds.text["mood_words"][i] == "grand"
    j = [im.label for im in ds.images].index(str((root / "fear/fear_1.jpg").resolve()))
    assert ds.text["caption"][j] is None and ds.objects[j] == ("spider",) and ds.text["scene"][j] is None
    assert ds.meta["metadata_matched"] == 2 and ds.meta["metadata_unmatched"] == 1
    assert ds.splits is None and ds.images[0].load().size == (8, 8)


def test_prefix_layout(tmp_path):
    for k, emotion in enumerate(FI_EMOTIONS):
        _png(tmp_path / "art" / f"{emotion}_{k}.jpg", k)
    ds = load_folders(tmp_path / "art", layout="prefix", name="artphoto")
    np.testing.assert_array_equal(ds.labels, np.arange(8))
    _png(tmp_path / "art" / "unknown_1.jpg", 99)
    with pytest.raises(DatasetFormatError, match="unknown_1.jpg"):
        load_folders(tmp_path / "art", layout="prefix")


def test_missing_data_gives_instructions(tmp_path):
    with pytest.raises(DataNotFound) as info:
        load_folders(tmp_path / "nope")
    msg = str(info.value)
    assert str(tmp_path / "nope") in msg and "amusement, anger, awe" in msg and "AAAI 2016" in msg
    _fi(tmp_path / "fi")
    with pytest.raises(DataNotFound, match="sidecar"):
        load_folders(tmp_path / "fi", metadata=tmp_path / "missing.jsonl")
    with pytest.raises(DataNotFound, match="manifest"):
        load_manifest(tmp_path / "none.csv")


def test_sidecar_path_escape_refused(tmp_path):
    root = tmp_path / "fi"
    _fi(root)
    side = tmp_path / "meta.jsonl"
    side.write_text(json.dumps({"image": "../outside.jpg", "caption": "x"}) + "\n")
    with pytest.raises(PathEscapeError, match="line 1"):
        load_folders(root, metadata=side)
    side.write_text(json.dumps({"image": "/etc/passwd"}) + "\n")
    with pytest.raises(PathEscapeError, match="absolute"):
        load_folders(root, metadata=side)


def test_symlink_escape_refused(tmp_path):
    root = tmp_path / "data"
    _png(tmp_path / "secret.png", 0)
    root.mkdir()
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    man = root / "m.csv"
    man.write_text("image,label\nlink.png,awe\n")
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        load_manifest(man)


def test_manifest_csv_labels_splits_and_polarity(tmp_path):
    rows = ["image,label,split,caption,tags,scene"]
    for i in range(16):
        _png(tmp_path / "img" / f"{i}.png", i)
        split = ["train", "train", "validation", "test"][i % 4]
        rows.append(f"img/{i}.png,{FI_EMOTIONS[i % 8]},{split},cap {i},dog:0.9;cat:0.1,")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    ds = load_manifest(tmp_path / "m.csv")
    assert set(ds.splits) == {"train", "val", "test"}
    assert [len(ds.splits[k]) for k in ("train", "val", "test")] == [8, 4, 4]
    assert ds.objects[0] == ("dog",) and ds.text["scene"][0] is None and ds.text["caption"][3] == "cap 3"
    pol = to_polarity(ds)
    assert pol.classes == ("negative", "positive")
    positive = {"amusement", "awe", "contentment", "excitement"}
    np.testing.assert_array_equal(pol.labels, [FI_EMOTIONS[i % 8] in positive for i in range(16)])
    assert load_manifest(tmp_path / "m.csv", polarity=True).labels.tolist() == pol.labels.tolist()


def test_manifest_errors_name_the_line(tmp_path):
    _png(tmp_path / "a.png", 0)
    (tmp_path / "m.csv").write_text("image,label\na.png,awe\na.png,joy\n")
    with pytest.raises(DatasetFormatError, match=r"line 3.*listed twice"):
        load_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("image,label\na.png,joy\n")
    with pytest.raises(DatasetFormatError, match=r"m.csv: line 2: field 'label' = 'joy'.*classes"):
        load_manifest(tmp_path / "m.csv")
    (tmp_path / "m.jsonl").write_text('{"image": "a.png", "label": "awe"}\n{bad json\n')
    with pytest.raises(DatasetFormatError, match="line 2: invalid JSON"):
        load_manifest(tmp_path / "m.jsonl")
    (tmp_path / "m.jsonl").write_text('{"image": "a.png", "distribution": [1, 2]}\n')
    with pytest.raises(DatasetFormatError, match="line 1: field 'distribution'"):
        load_manifest(tmp_path / "m.jsonl")
    (tmp_path / "m.jsonl").write_text('{"image": "a.png", "label": "awe", "split": "holdout"}\n')
    with pytest.raises(DatasetFormatError, match="field 'split'"):
        load_manifest(tmp_path / "m.jsonl")


def test_manifest_jsonl_label_distributions(tmp_path):
    lines = []
    for i in range(8):
        _png(tmp_path / f"{i}.png", i)
        votes = [0] * 8
        votes[i] = 5
        votes[(i + 1) % 8] = 3
        row = {"image": f"{i}.png", "distribution": votes, "caption": f"c{i}"}
        if i == 0:
            row["distribution"] = {"awe": 1, "fear": 3}
        lines.append(json.dumps(row))
    (tmp_path / "ldl.jsonl").write_text("\n".join(lines))
    ds = load_manifest(tmp_path / "ldl.jsonl")
    assert ds.distributions.shape == (8, 8)
    np.testing.assert_allclose(ds.distributions.sum(1), 1.0)
    np.testing.assert_allclose(ds.distributions[1, [1, 2]], [5 / 8, 3 / 8])
    assert ds.labels[0] == FI_EMOTIONS.index("fear")             # argmax of the distribution
    np.testing.assert_array_equal(ds.labels[1:], np.arange(1, 8))
    pol = to_polarity(ds)
    # item 1: anger 5/8 (negative) + awe 3/8 (positive)
    np.testing.assert_allclose(pol.distributions[1], [5 / 8, 3 / 8])
    assert pol.labels[1] == 0


def test_stratified_limit_keeps_classes(tmp_path):
    root = tmp_path / "fi"
    _fi(root, per_class=5)
    ds = load_folders(root)
    small = stratified_limit(ds, 16, seed=0)
    assert len(small) == 16 and np.bincount(small.labels).tolist() == [2] * 8
    assert stratified_limit(ds, None) is ds


def _hf_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({"img": datasets.Image(), "emotion": datasets.ClassLabel(names=list(FI_EMOTIONS)),
                               "blip": datasets.Value("string"), "objs": datasets.Value("string")})

    def part(offset, n):
        return datasets.Dataset.from_dict(
            {"img": [Image.new("RGB", (6, 6), (offset * 10 + i, 0, 0)) for i in range(n)],
             "emotion": [(offset + i) % 8 for i in range(n)],
             "blip": [f"caption {offset + i}" if i % 3 else None for i in range(n)],
             "objs": ["dog:0.9;cat:0.2"] * n}, features=feats)
    return datasets.DatasetDict({"train": part(0, 8), "validation": part(8, 4), "test": part(12, 4)})


def test_hf_save_to_disk_folder_with_own_splits(tmp_path):
    dd = _hf_dataset(tmp_path)
    dd.save_to_disk(str(tmp_path / "hf"))
    ds = load_hf(str(tmp_path / "hf"), image_column="img", label_column="emotion", caption_column="blip",
                 tags_column="objs")
    assert ds.classes == FI_EMOTIONS and len(ds) == 16
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 8, "val": 4, "test": 4}
    assert ds.labels[ds.splits["test"]].tolist() == [(12 + i) % 8 for i in range(4)]
    assert ds.text["caption"][0] is None and ds.text["caption"][1] == "caption 1"
    assert ds.objects[0] == ("dog",)
    assert ds.images[1].load().getpixel((0, 0)) == (1, 0, 0)
    assert len({im.key for im in ds.images}) == 16
    with pytest.raises(DatasetFormatError, match="column 'nope' not found"):
        load_hf(str(tmp_path / "hf"), image_column="nope", label_column="emotion")


def test_hf_parquet_folder(tmp_path):
    dd = _hf_dataset(tmp_path)
    folder = tmp_path / "pq"
    folder.mkdir()
    for name, part in dd.items():
        part.to_parquet(str(folder / f"{name}.parquet"))
    ds = load_hf(str(folder), image_column="img", label_column="emotion", caption_column="blip")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 8, "val": 4, "test": 4}
    # one split only: un-split data (the evaluator draws a seeded stratified split);
    # ClassLabel ids are mapped by name, so a reordered 'classes' option stays correct
    single = tmp_path / "single"
    single.mkdir()
    dd["train"].to_parquet(str(single / "train.parquet"))
    reordered = tuple(reversed(FI_EMOTIONS))
    one = load_hf(str(single), image_column="img", label_column="emotion", classes=reordered)
    assert one.splits is None and len(one) == 8
    assert [one.classes[k] for k in one.labels] == [FI_EMOTIONS[i % 8] for i in range(8)]


def test_hf_offline_uncached_hub_id_fails_fast(tmp_path):
    """In a fresh interpreter with HF_HUB_OFFLINE=1 and empty caches: DataNotFound at once."""
    code = ("import time; t = time.time()\n"
            "from ctxbench.families.metadata_sentiment.data_hf import load_hf\n"
            "from ctxbench.errors import DataNotFound\n"
            "try:\n"
            "    load_hf('ctxbench-test-owner/not-a-cached-dataset')\n"
            "except DataNotFound as exc:\n"
            "    print('DATANOTFOUND', round(time.time() - t, 2), exc)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"),
           "HF_DATASETS_CACHE": str(tmp_path / "hf_home" / "datasets")}
    start = time.time()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "DATANOTFOUND" in out.stdout, out.stderr[-2000:]
    assert "HF_HUB_OFFLINE=1" in out.stdout and "load_dataset('ctxbench-test-owner/not-a-cached-dataset')" in out.stdout
    assert time.time() - start < 60


def test_symlink_out_of_the_root_is_refused_by_every_path_reading_loader(tmp_path):
    """A link inside the data root pointing outside it is refused like a literal '..'
    (resolve-then-contain), by each registered loader that reads paths."""
    from ctxbench.families.metadata_sentiment import loaders
    from ctxbench.registrations import LoadContext
    ctx = LoadContext("t", tmp_path / "task.yaml")
    _png(tmp_path / "secret" / "s.png", 99)
    # folders: an image of a class folder is a link out
    root = tmp_path / "fi"
    _fi(root)
    (root / "awe" / "link.jpg").symlink_to(tmp_path / "secret" / "s.png")
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        loaders.load_folders({"root": "fi"}, ctx)
    # folders: a whole class folder is a link out
    root2 = tmp_path / "fi2"
    _fi(root2)
    for f in (root2 / "fear").iterdir():
        f.unlink()
    (root2 / "fear").rmdir()
    _png(tmp_path / "secret" / "fear" / "f.jpg", 98)
    (root2 / "fear").symlink_to(tmp_path / "secret" / "fear")
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        loaders.load_folders({"root": "fi2"}, ctx)
    # sidecar metadata naming a link out
    root3 = tmp_path / "fi3"
    _fi(root3)
    (root3 / "link.jpg").symlink_to(tmp_path / "secret" / "s.png")
    (tmp_path / "side.jsonl").write_text(json.dumps({"image": "link.jpg", "caption": "x"}) + "\n")
    with pytest.raises(PathEscapeError, match="line 1"):
        loaders.load_folders({"root": "fi3", "metadata": "side.jsonl"}, ctx)
    # manifest naming a link out
    (tmp_path / "fi3" / "m.csv").write_text("image,label\nlink.jpg,awe\n")
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        loaders.load_manifest({"path": "fi3/m.csv"}, ctx)
    # Hugging Face data folder (imagefolder) holding a link out
    pytest.importorskip("datasets")
    hf = tmp_path / "hf" / "train"
    for i in range(3):
        _png(hf / f"ok{i}.png", i)
    (hf / "link.png").symlink_to(tmp_path / "secret" / "s.png")
    (hf / "metadata.csv").write_text("file_name,label\nlink.png,awe\nok0.png,fear\nok1.png,awe\nok2.png,fear\n")
    with pytest.raises(PathEscapeError, match="outside the dataset folder"):
        loaders.load_hf({"path": "hf"}, ctx)


def test_limit_keeps_at_most_n_items_every_class_in_proportion():
    from ctxbench.families.metadata_sentiment.data import allocate
    assert allocate(np.array([5] * 8), 16).tolist() == [2] * 8
    # Hamilton: quotas 6.5, 2.6, 0.9 -> floors 6, 2, 1 (at least one); the leftover item goes
    # to the group furthest below its share (2.6 - 2 > 6.5 - 6 > 0.9 - 1)
    assert allocate(np.array([65, 26, 9]), 10).tolist() == [6, 3, 1]
    assert allocate(np.array([65, 26, 9]), 20).tolist() == [13, 5, 2]
    assert allocate(np.array([3, 3, 3]), 2).tolist() == [1, 1, 1]     # fewer than one per class: one each
    from ctxbench.families.metadata_sentiment import loaders
    from ctxbench.registrations import LoadContext
    full = loaders.load_synthetic({"n_per_class": 5}, LoadContext("t", Path("t.yaml")))
    assert len(full) == 40
    for n in (13, 25):
        small = loaders.load_synthetic({"n_per_class": 5}, LoadContext("t", Path("t.yaml"), seed=1, limit=n))
        counts = np.bincount(small.labels, minlength=8)
        assert len(small) == n and counts.min() >= 1 and counts.max() - counts.min() <= 1
        assert small.meta["limit"] == {"requested": n, "kept": n, "of": 40, "stratified_by": "class",
                                       "per_class": counts.tolist()}
    for n in (40, 1000):     # at least the set's size: a no-op
        same = loaders.load_synthetic({"n_per_class": 5}, LoadContext("t", Path("t.yaml"), limit=n))
        assert len(same) == 40 and "limit" not in same.meta


def test_limit_changes_the_evaluated_n():
    from ctxbench.encoder import CachedEncoder
    from ctxbench.families.contract import EvalRequest
    from ctxbench.families.metadata_sentiment import loaders
    from ctxbench.families.metadata_sentiment.evaluator import evaluate
    from ctxbench.families.metadata_sentiment.protocol import PROTOCOL_DEFAULTS
    from ctxbench.registrations import LoadContext
    from ctxbench_plugins.random_backend import RandomBackend
    ns = []
    for limit in (None, 24, 10_000):
        ds = loaders.load_synthetic({"n_per_class": 6}, LoadContext("t", Path("t.yaml"), limit=limit))
        out = evaluate(EvalRequest(task=None, dataset=ds, encoder=CachedEncoder(RandomBackend(dim=8), None,
                                                                                progress=False),
                                   protocol={**PROTOCOL_DEFAULTS, "protocols": ["zero_shot"],
                                             "bootstrap_resamples": 20}, seed=0))
        ns.append(out.n)
        assert (out.details.get("limit") or {}).get("kept", out.n) == out.n
    assert ns == [48, 24, 48]
