"""domain_adaptation loaders (DomainNet lists, GeoNet JSON and UniDA lists, datasets
folders), the embedded synthetic dataset, and the family's task files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctxbench.families.domain_adaptation import geonet, hf_folder, lists
from ctxbench.errors import DataNotFound, DatasetFormatError, PathEscapeError
from ctxbench.registrations import LoadContext
from ctxbench.families.domain_adaptation import synthetic as sd
from ctxbench.synthetic_world import SHAPES, STYLES

TASKS = Path(__file__).resolve().parents[3] / "tasks" / "domain_adaptation"


def _img(path: Path, colour=(10, 20, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path)


def _ctx(tmp_path: Path, limit=None) -> LoadContext:
    return LoadContext("t", tmp_path / "task.yaml", 0, limit)


# ----------------------------------------------------------------------------- DomainNet
@pytest.fixture
def domainnet(tmp_path):
    root = tmp_path / "DomainNet"
    rows = {"clipart": [("clipart/aircraft_carrier/clipart_001_000018.jpg", 0),
                        ("clipart/zebra/clipart_344_000001.jpg", 2), ("clipart/apple/c_1.jpg", 1)],
            "sketch": [("sketch/aircraft_carrier/s_1.jpg", 0), ("sketch/zebra/s_2.jpg", 2)]}
    for dom, items in rows.items():
        for split in ("train", "test"):
            (root / f"{dom}_{split}.txt").parent.mkdir(parents=True, exist_ok=True)
            (root / f"{dom}_{split}.txt").write_text("".join(f"{p} {lab}\n" for p, lab in items) + "\n")
            for p, _ in items:
                _img(root / p)
    captions = {"clipart/aircraft_carrier/clipart_001_000018.jpg": "a drawing of a big ship",
                "sketch/zebra/s_2.jpg": {"caption": "a striped horse", "tags": ["zebra", "sketch"]}}
    (root / "captions.json").write_text(json.dumps(captions))
    return root


def test_domainnet_lists_classes_labels_and_captions(domainnet, tmp_path):
    ds = lists.load_domainnet({"root": str(domainnet), "domains": ["clipart", "sketch"],
                            "captions": str(domainnet / "captions.json")}, _ctx(tmp_path))
    assert ds.classes == ["aircraft_carrier", "apple", "zebra"]
    sp = ds.domains["clipart"]["train"]
    assert sp.labels.tolist() == [0, 2, 1]
    assert sp.captions == ["a drawing of a big ship", None, None]
    sk = ds.domains["sketch"]["test"]
    assert sk.captions[1] == "a striped horse" and sk.tags[1] == ("zebra", "sketch")
    assert sk.texts() == [None, "a striped horse"]
    assert sp.refs[0].load().size == (4, 4)


def test_domainnet_relative_paths_resolve_against_the_task_file(domainnet, tmp_path):
    ds = lists.load_domainnet({"root": "DomainNet", "domains": ["sketch"]}, _ctx(tmp_path))
    assert len(ds.domains["sketch"]["train"]) == 2


def test_malformed_line_names_file_and_line(domainnet, tmp_path):
    f = domainnet / "sketch_train.txt"
    f.write_text("sketch/zebra/s_2.jpg 2\nsketch/zebra/s_3.jpg two\n")
    with pytest.raises(DatasetFormatError, match=re.escape(f"{f}:2")):
        lists.load_domainnet({"root": str(domainnet), "domains": ["sketch"]}, _ctx(tmp_path))


@pytest.mark.parametrize("bad", ["../outside.jpg 0", "sketch/../../x.jpg 0", "/etc/passwd 0"])
def test_path_escape_names_file_and_line(domainnet, tmp_path, bad):
    f = domainnet / "sketch_test.txt"
    f.write_text(f"sketch/zebra/s_2.jpg 2\n\n{bad}\n")
    with pytest.raises(PathEscapeError, match=re.escape(f"{f}:3")):
        lists.load_domainnet({"root": str(domainnet), "domains": ["sketch"]}, _ctx(tmp_path))


def test_inconsistent_label_numbering_is_refused(domainnet, tmp_path):
    (domainnet / "sketch_test.txt").write_text("sketch/apple/s_9.jpg 0\n")
    with pytest.raises(DatasetFormatError, match="one label numbering"):
        lists.load_domainnet({"root": str(domainnet), "domains": ["clipart", "sketch"]}, _ctx(tmp_path))


def test_missing_data_gives_instructions(tmp_path):
    with pytest.raises(DataNotFound, match="ai.bu.edu/M3SDA"):
        lists.load_domainnet({"root": str(tmp_path / "nope")}, _ctx(tmp_path))


def test_limit_subsamples_each_split_deterministically(domainnet, tmp_path):
    # 3 items of 3 classes: the limit never drops a class, so 2 keeps one per class
    a = lists.load_domainnet({"root": str(domainnet), "domains": ["clipart"]}, _ctx(tmp_path, limit=2))
    b = lists.load_domainnet({"root": str(domainnet), "domains": ["clipart"]}, _ctx(tmp_path, limit=2))
    assert len(a.domains["clipart"]["train"]) == 3
    assert a.domains["clipart"]["train"].ids == b.domains["clipart"]["train"].ids
    assert a.meta["limit"]["requested"] == 2 and a.meta["limit"]["test_items_kept"] == 3


def test_limit_keeps_at_most_n_test_items_over_all_domains_and_every_class():
    ctx = LoadContext("t", Path("task.yaml"), 0, 40)
    opts = {"domains": ["flat", "photo"], "per_class_train": 6, "per_class_val": 2, "per_class_test": 5}
    full = sd.load_synthetic(dict(opts), None)
    cut = sd.load_synthetic(dict(opts), ctx)
    n_test = sum(len(s["test"]) for s in cut.domains.values())
    assert sum(len(s["test"]) for s in full.domains.values()) == 80 and n_test == 40
    for dom, splits in cut.domains.items():
        assert set(splits["test"].labels) == set(range(len(cut.classes)))   # every class kept
        assert len(splits["train"]) == 40 and len(splits["val"]) == 16      # val (16) <= 40: unchanged
    assert cut.meta["limit"]["test_items_kept"] == 40 and cut.meta["limit"]["test_items_before"] == 80
    again = sd.load_synthetic(dict(opts), ctx)
    assert again.domains["photo"]["test"].ids == cut.domains["photo"]["test"].ids


def test_a_limit_larger_than_the_set_is_a_no_op():
    opts = {"domains": ["flat", "photo"], "per_class_train": 3, "per_class_val": 1, "per_class_test": 2}
    full = sd.load_synthetic(dict(opts), None)
    same = sd.load_synthetic(dict(opts), LoadContext("t", Path("task.yaml"), 0, 10_000))
    for dom in full.domains:
        for split in full.domains[dom]:
            assert same.domains[dom][split].ids == full.domains[dom][split].ids
    assert same.meta["limit"]["test_items_kept"] == same.meta["limit"]["test_items_before"] == 32


# ----------------------------------------------------------------------------- GeoNet
def _geonet(root: Path) -> Path:
    data = {"info": {}, "categories": [{"category_id": 0, "category_name": "colobus"},
                                       {"category_id": 1, "category_name": "flagpole"}]}
    n = 0
    for dom in ("usa", "asia"):
        for split in ("train", "test"):
            images, anns, metas = [], [], []
            for lab, cls in enumerate(("colobus", "flagpole")):
                n += 1
                fn = f"{dom}/{split}/{cls}/{n}.jpg"
                _img(root / fn)
                images.append({"id": n, "filename": fn})
                anns.append({"image_id": n, "category": lab, "class_name": cls})
                metas.append({"image_id": n, "caption": f"{cls} seen in {dom}",
                              "tags": "monkey,tree" if lab == 0 else "NULL", "description": "NULL"})
            data[f"{dom}_{split}"] = {"images": images, "annotations": anns, "metadata": metas}
    path = root / "metadata.json"
    path.write_text(json.dumps(data))
    return path


def test_geonet_json_joins_images_annotations_and_metadata(tmp_path):
    meta = _geonet(tmp_path / "GeoImNet")
    ds = geonet.load_geonet({"root": str(tmp_path / "GeoImNet"), "metadata": str(meta),
                         "text_fields": ["caption", "description", "tags"]}, _ctx(tmp_path))
    assert ds.classes == ["colobus", "flagpole"]
    sp = ds.domains["asia"]["train"]
    assert sp.labels.tolist() == [0, 1]
    assert sp.captions == ["colobus seen in asia, monkey, tree", "flagpole seen in asia"]
    assert sp.tags == [("monkey", "tree"), ()]


def test_geonet_json_errors_name_the_field(tmp_path):
    meta = _geonet(tmp_path / "g")
    data = json.loads(meta.read_text())
    del data["usa_test"]["annotations"][1]["category"]
    meta.write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError, match=r"usa_test\.annotations\[1\]: missing field 'category'"):
        geonet.load_geonet({"root": str(tmp_path / "g"), "metadata": str(meta)}, _ctx(tmp_path))
    data["usa_test"]["annotations"][1]["category"] = 1
    data["usa_test"]["images"][0]["filename"] = "../../secret.jpg"
    meta.write_text(json.dumps(data))
    with pytest.raises(PathEscapeError, match=r"usa_test\.images\[0\]\.filename"):
        geonet.load_geonet({"root": str(tmp_path / "g"), "metadata": str(meta)}, _ctx(tmp_path))


def test_geonet_missing_gives_instructions(tmp_path):
    with pytest.raises(DataNotFound, match="tarun005.github.io/GeoNet"):
        geonet.load_geonet({"root": str(tmp_path), "metadata": str(tmp_path / "none.json")}, _ctx(tmp_path))


def _write_geonet_lists(root, meta):
    """The UniDA-style ``<domain>_<split>.txt`` lists of the images in the metadata JSON."""
    data = json.loads(meta.read_text())
    for dom in ("usa", "asia"):
        for split in ("train", "test"):
            lines = [f"{im['filename']} {a['category']}" for im, a in
                     zip(data[f"{dom}_{split}"]["images"], data[f"{dom}_{split}"]["annotations"])]
            (root / f"{dom}_{split}.txt").write_text("\n".join(lines) + "\n")


def test_geonet_unida_lists_with_captions_from_the_metadata(tmp_path):
    root = tmp_path / "GeoNet"
    meta = _geonet(root)
    _write_geonet_lists(root, meta)
    ds = lists.load_geonet_lists({"root": str(root), "captions": str(meta)}, _ctx(tmp_path))
    assert ds.classes == ["colobus", "flagpole"]
    assert ds.domains["usa"]["test"].captions == ["colobus seen in usa", "flagpole seen in usa"]


def test_hf_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    imgs = [Image.new("RGB", (4, 4), (i * 40, 0, 0)) for i in range(4)]
    table = datasets.Dataset.from_dict(
        {"image": imgs, "label": [0, 1, 0, 1], "caption": ["a cat", "a dog", "NULL", "dog"],
         "domain": ["photo", "photo", "sketch", "sketch"]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"]),
                                    "caption": datasets.Value("string"), "domain": datasets.Value("string")}))
    datasets.DatasetDict({"train": table, "test": table}).save_to_disk(str(tmp_path / "hf"))
    ds = hf_folder.load_hf_domains({"path": str(tmp_path / "hf")}, _ctx(tmp_path))
    assert ds.classes == ["cat", "dog"]
    sk = ds.domains["sketch"]["test"]
    assert sk.labels.tolist() == [0, 1] and sk.captions == [None, "dog"]
    assert sk.refs[1].load().getpixel((0, 0)) == (120, 0, 0)
    assert sk.refs[0].key != sk.refs[1].key


# ----------------------------------------------------------------------------- symlinks
def _link_out(tmp_path: Path, root: Path, rel: str) -> Path:
    """Replace ``root/rel`` by a symlink to an image outside ``root``."""
    outside = tmp_path / "outside" / "secret.jpg"
    _img(outside, (200, 0, 0))
    link = root / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(outside)
    return link


def test_domainnet_list_refuses_a_symlink_out_of_the_root(domainnet, tmp_path):
    _link_out(tmp_path, domainnet, "sketch/zebra/s_2.jpg")
    f = domainnet / "sketch_train.txt"
    with pytest.raises(PathEscapeError, match=re.escape(f"{f}:2") + ".*outside the dataset root"):
        lists.load_domainnet({"root": str(domainnet), "domains": ["sketch"]}, _ctx(tmp_path))


def test_domainnet_list_refuses_a_symlinked_folder_out_of_the_root(domainnet, tmp_path):
    outside = tmp_path / "elsewhere"
    (domainnet / "sketch").rename(outside)
    (domainnet / "sketch").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathEscapeError, match=re.escape(f"{domainnet / 'sketch_train.txt'}:1")):
        lists.load_domainnet({"root": str(domainnet), "domains": ["sketch"]}, _ctx(tmp_path))


def test_a_symlink_that_stays_inside_the_root_is_accepted(domainnet, tmp_path):
    target = domainnet / "clipart" / "zebra" / "clipart_344_000001.jpg"
    link = domainnet / "sketch" / "zebra" / "s_2.jpg"
    link.unlink()
    link.symlink_to(target)
    ds = lists.load_domainnet({"root": str(domainnet), "domains": ["sketch"]}, _ctx(tmp_path))
    assert ds.domains["sketch"]["train"].refs[1].load().size == (4, 4)


def test_geonet_json_refuses_a_symlink_out_of_the_root(tmp_path):
    root = tmp_path / "g"
    meta = _geonet(root)
    _link_out(tmp_path, root, "usa/train/colobus/1.jpg")
    with pytest.raises(PathEscapeError, match=r"usa_train\.images\[0\]\.filename.*outside the dataset root"):
        geonet.load_geonet({"root": str(root), "metadata": str(meta)}, _ctx(tmp_path))


def test_geonet_lists_refuse_a_symlink_out_of_the_root(tmp_path):
    root = tmp_path / "GeoNet"
    meta = _geonet(root)
    _write_geonet_lists(root, meta)
    _link_out(tmp_path, root, "usa/train/colobus/1.jpg")
    with pytest.raises(PathEscapeError, match=re.escape(f"{root / 'usa_train.txt'}:1")):
        lists.load_geonet_lists({"root": str(root)}, _ctx(tmp_path))


def test_hf_folder_refuses_an_image_path_that_links_out_of_the_folder(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    root = tmp_path / "hfpq"
    _img(root / "inside.jpg")
    _link_out(tmp_path, root, "link.jpg")
    cell = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for split in ("train", "test"):
        pq.write_table(pa.table({"image": pa.array([{"bytes": None, "path": "inside.jpg"},
                                                    {"bytes": None, "path": "link.jpg"}], type=cell),
                                 "label": [0, 1], "domain": ["a", "a"]}), root / f"{split}.parquet")
    ds = hf_folder.load_hf_domains({"path": str(root)}, _ctx(tmp_path))
    refs = ds.domains["a"]["train"].refs
    assert refs[0].load().size == (4, 4)
    with pytest.raises(PathEscapeError, match=r"\[train\]\[1\]: image path.*outside the dataset root"):
        refs[1].key
    with pytest.raises(PathEscapeError):
        refs[1].load()


def test_hf_loader_leaves_the_environment_alone(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    table = datasets.Dataset.from_dict({"image": [Image.new("RGB", (4, 4))], "label": [0], "domain": ["a"]},
                                       features=datasets.Features({"image": datasets.Image(),
                                                                   "label": datasets.Value("int64"),
                                                                   "domain": datasets.Value("string")}))
    datasets.DatasetDict({"train": table, "test": table}).save_to_disk(str(tmp_path / "hf"))
    hf_folder.load_hf_domains({"path": str(tmp_path / "hf")}, _ctx(tmp_path))
    import os
    assert "HF_HUB_OFFLINE" not in os.environ


# ----------------------------------------------------------------------------- synthetic
@pytest.fixture(scope="module")
def synth():
    return sd.build(per_class={"train": 6, "val": 2, "test": 3}, seed=0)


def test_synthetic_domains_are_the_world_styles_and_classes_the_shapes(synth):
    assert list(synth.domains) == list(STYLES) and synth.classes == list(SHAPES)
    for dom, splits in synth.domains.items():
        assert {k: len(v) for k, v in splits.items()} == {"train": 48, "val": 16, "test": 24}
        for split in splits.values():
            for item_id, lab in zip(split.ids, split.labels):
                scene = synth.meta["scenes"][item_id]
                assert scene.style == dom and scene.objects[0].shape == synth.classes[lab]


def test_synthetic_caption_qualities_mean_what_they_say(synth):
    seen = set()
    for splits in synth.domains.values():
        for split in splits.values():
            for item_id, lab, cap, q in zip(split.ids, split.labels, split.captions, split.quality):
                seen.add(q)
                true = synth.classes[lab]
                named = [s for s in SHAPES if re.search(rf"\b{s}\b", cap)]
                if q == "full":
                    assert named == [true]
                elif q == "partial":
                    assert named == [] and "object" in cap
                elif q == "wrong":
                    assert len(named) == 1 and named[0] != true
                else:
                    assert named == [synth.meta["caption_scenes"][item_id].objects[0].shape]
    assert seen == set(sd.QUALITIES)


def test_synthetic_is_deterministic_and_domains_independent():
    a = sd.build(domains=("flat", "photo"), per_class={"train": 2, "val": 1, "test": 1}, seed=3)
    b = sd.build(domains=("photo",), per_class={"train": 2, "val": 1, "test": 1}, seed=3)
    assert a.domains["photo"]["train"].captions == b.domains["photo"]["train"].captions
    assert [r.key for r in a.domains["photo"]["test"].refs] == [r.key for r in b.domains["photo"]["test"].refs]
    c = sd.build(domains=("photo",), per_class={"train": 2, "val": 1, "test": 1}, seed=4)
    assert c.domains["photo"]["train"].captions != b.domains["photo"]["train"].captions


def test_synthetic_quality_mix_is_respected():
    ds = sd.build(domains=("flat",), per_class={"train": 50, "val": 0, "test": 0},
                  caption_quality={"full": 1.0, "unrelated": 1.0}, seed=0)
    q = np.array(ds.domains["flat"]["train"].quality)
    assert set(q) == {"full", "unrelated"} and 0.35 < (q == "full").mean() < 0.65
    with pytest.raises(ValueError, match="caption_quality"):
        sd.build(domains=("flat",), caption_quality={"great": 1.0})


# ----------------------------------------------------------------------------- task files
def test_task_files_parse_with_known_options_and_real_ones_skip_with_instructions(tmp_path, monkeypatch):
    from ctxbench.families import domain_adaptation as da
    from ctxbench.task_config import parse_task

    monkeypatch.setenv("CTXBENCH_DATA", str(tmp_path / "empty"))
    loaders = {spec.name: spec for spec in da.ctxbench_dataset_loaders()}
    names = set()
    for path in sorted(TASKS.glob("*.yaml")):
        task = parse_task(path)
        names.add(task.name)
        assert task.family == "domain_adaptation"
        assert set(task.protocol) <= set(da.PROTOCOL_DEFAULTS)
        spec = loaders[task.loader]
        assert set(task.options) <= set(spec.options)
        if task.loader != "synthetic_domain":
            with pytest.raises(DataNotFound, match="Get "):
                spec.load(task.options, LoadContext(task.name, path))
    assert {"domain_adaptation_synthetic", "geoimnet_usa_asia", "geoimnet_asia_usa", "geoplaces_usa_asia",
            "geoplaces_asia_usa", "domainnet_all_pairs"} <= names
