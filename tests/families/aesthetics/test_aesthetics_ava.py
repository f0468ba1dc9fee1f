"""Loaders of the aesthetics family: AVA files, a `datasets` copy, parameter sweeps."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctxbench.families.aesthetics.ava import load_ava
from ctxbench.families.aesthetics.data import AestheticsDataset
from ctxbench.families.aesthetics.param_sweep import load_param_sweep
from ctxbench.errors import DataNotFound, DatasetFormatError, PathEscapeError
from ctxbench.registrations import LoadContext

TAGS = "1 Abstract\n2 Landscape\n3 Black and White\n"
CHALLENGES = "1 Sky\n2 Portraits\n"


def _row(i, image_id, votes, t1=0, t2=0, ch=1):
    return " ".join(str(x) for x in [i, image_id, *votes, t1, t2, ch])


def _write_ava(root: Path, lines: list[str], images: list[int]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "AVA.txt").write_text("\n".join(lines) + "\n")
    (root / "tags.txt").write_text(TAGS)
    (root / "challenges.txt").write_text(CHALLENGES)
    (root / "images").mkdir(exist_ok=True)
    for image_id in images:
        Image.new("RGB", (8, 8), (image_id % 255, 10, 20)).save(root / "images" / f"{image_id}.jpg")


def ctx(root: Path, limit=None) -> LoadContext:
    return LoadContext("ava_test", root / "task.yaml", seed=0, limit=limit)


@pytest.fixture
def ava_root(tmp_path):
    root = tmp_path / "ava"
    lines = [
        _row(1, 1001, [0, 0, 1, 2, 3, 4, 0, 0, 0, 0], 1, 2),      # line 1: ok
        _row(2, 1002, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 2, 0),      # line 2: ok, MOS 10
        "3 1003 0 0 1 2 3 4 0 0 0 1 0",                           # line 3: 13 columns
        _row(4, 1004, [0] * 10, 1, 0),                            # line 4: no votes
        _row(5, 1001, [1] * 10, 1, 0),                            # line 5: duplicate id
        "6 1006 0 0 x 2 3 4 0 0 0 0 1 0 1",                       # line 6: not an integer
        _row(7, 1007, [0, 1, 0, 0, 0, 0, 0, 0, 0, 0], 99, 3),     # line 7: unknown tag 99
        _row(8, 1008, [0, 0, 0, 0, 5, 5, 0, 0, 0, 0], 3, 0),      # line 8: image missing
        "",                                                       # blank lines are ignored
        _row(10, 1010, [0, 0, 0, 1, 1, 1, 1, 0, 0, 0], 2, 3),     # line 10: ok
        _row(11, 1011, [0, 0, 0, 0, 0, 0, 1, -1, 0, 0], 2, 0),    # line 11: negative count
    ]
    _write_ava(root, lines, images=[1001, 1002, 1007, 1010, 1011])
    lists = root / "aesthetics_image_lists"
    lists.mkdir()
    (lists / "generic_test.jpgl").write_text("1002\n1010\n99999\nnot-an-id\n")
    return root


def test_ava_rows_mos_and_report(ava_root):
    ds = load_ava({"root": str(ava_root), "test_list": "aesthetics_image_lists/generic_test.jpgl"},
                  ctx(ava_root))
    assert isinstance(ds, AestheticsDataset)
    assert ds.ids == ["1001", "1002", "1007", "1010"]
    mos = dict(zip(ds.ids, ds.mos))
    assert mos["1001"] == pytest.approx((3 * 1 + 4 * 2 + 5 * 3 + 6 * 4) / 10)
    assert mos["1002"] == pytest.approx(10.0)
    np.testing.assert_allclose(ds.distribution.sum(axis=1), 1.0)
    assert ds.tags[ds.ids.index("1007")].tolist() == [0, 3]          # unknown tag removed
    assert ds.tag_names[3] == "Black and White"
    assert ds.challenge_names == {1: "Sky", 2: "Portraits"}
    assert dict(zip(ds.ids, ds.split)) == {"1001": "trainval", "1002": "test", "1007": "trainval",
                                           "1010": "test"}
    rep = ds.report.to_json()
    by_line = {(i["kind"], i["line"]) for i in rep["issues"] if i["file"].endswith("AVA.txt")}
    assert by_line == {("wrong_column_count", 3), ("no_votes", 4), ("duplicate_id", 5),
                       ("not_integer", 6), ("unknown_tag", 7), ("missing_image", 8),
                       ("negative_votes", 11)}
    assert rep["by_kind"]["list_malformed"] == 1                     # 'not-an-id' in the list
    assert any("generic_test" in k for k in rep["filtered"])          # id 99999 not in AVA.txt
    assert all(i["action"] for i in rep["issues"])
    # the refs load the right files
    assert ds.refs[0].load().size == (8, 8)


def test_ava_strict_mode_names_file_and_line(ava_root):
    with pytest.raises(DatasetFormatError, match=r"AVA\.txt, line 3: expected 15 columns"):
        load_ava({"root": str(ava_root), "strict": True}, ctx(ava_root))


def test_ava_nothing_valid_left(tmp_path):
    root = tmp_path / "ava"
    _write_ava(root, [_row(1, 5, [0] * 10), "garbage line"], images=[])
    with pytest.raises(DatasetFormatError, match="no usable image"):
        load_ava({"root": str(root)}, ctx(root))


def test_ava_missing_data_gives_instructions(tmp_path):
    with pytest.raises(DataNotFound, match="AVA_dataset release"):
        load_ava({"root": str(tmp_path / "nowhere")}, ctx(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFound, match="AVA.txt"):
        load_ava({"root": "empty"}, ctx(tmp_path))                   # relative to the task file


def test_ava_paths_cannot_escape_root(ava_root):
    with pytest.raises(PathEscapeError):
        load_ava({"root": str(ava_root), "images_dir": "../elsewhere"}, ctx(ava_root))
    with pytest.raises(PathEscapeError):
        load_ava({"root": str(ava_root), "image_pattern": "../{id}.jpg"}, ctx(ava_root))
    with pytest.raises(PathEscapeError):
        load_ava({"root": str(ava_root), "ava_file": "/etc/passwd"}, ctx(ava_root))
    with pytest.raises(DatasetFormatError, match="placeholder"):
        load_ava({"root": str(ava_root), "image_pattern": "{id}{x}.jpg"}, ctx(ava_root))


def test_ava_min_tag_images_and_limit(ava_root):
    ds = load_ava({"root": str(ava_root), "min_tag_images": 2}, ctx(ava_root))
    # tag counts among valid rows: 1 -> 1 (1001), 2 -> 3 (1001, 1002, 1010), 3 -> 3 (1007, 1010, 1008)
    assert 1 not in set(ds.tags.ravel().tolist())
    assert all((t > 0).any() for t in ds.tags)
    assert any("fewer than 2" in k for k in ds.report.filtered)
    # --limit keeps at least 5 images per (split, tag 1): here every image, recorded in meta
    full = load_ava({"root": str(ava_root)}, ctx(ava_root))
    small = load_ava({"root": str(ava_root)}, ctx(ava_root, limit=2))
    assert small.ids == full.ids and "limit" not in full.meta
    assert small.meta["limit"]["limit"] == 2 and small.meta["limit"]["raised_to"] >= len(small)
    big = load_ava({"root": str(ava_root)}, ctx(ava_root, limit=1000))
    assert big.ids == full.ids and "raised_to" not in big.meta["limit"]     # a no-op


def test_ava_limit_keeps_every_split_and_tag(tmp_path):
    root = tmp_path / "ava"
    ids = list(range(2000, 2120))                     # 120 images, tags 1..3, 40 each
    lines = [_row(k + 1, i, [0, 0, 0, 1, 2, 3, 2, 1, 0, 0], t1=1 + k % 3) for k, i in enumerate(ids)]
    _write_ava(root, lines, images=ids)
    lists = root / "aesthetics_image_lists"
    lists.mkdir()
    (lists / "test.jpgl").write_text("\n".join(str(i) for i in ids[:30]) + "\n")
    opts = {"root": str(root), "test_list": "aesthetics_image_lists/test.jpgl"}
    ds = load_ava(opts, ctx(root, limit=40))
    assert len(ds) == 40 and ds.meta["limit"]["kept"] == 40 and ds.meta["limit"]["of"] == 120
    for split in ("test", "trainval"):
        for tag in (1, 2, 3):
            assert ((ds.split == split) & (ds.tags[:, 0] == tag)).sum() >= 5
    tiny = load_ava(opts, ctx(root, limit=3))           # raised: 2 splits x 3 tags x 5
    assert len(tiny) == 30 and tiny.meta["limit"]["raised_to"] == 30


def test_ava_datasets_source(tmp_path):
    datasets = pytest.importorskip("datasets")
    root = tmp_path / "ava"
    root.mkdir()
    (root / "tags.txt").write_text(TAGS)
    (root / "img").mkdir()
    for i in range(4):
        Image.new("RGB", (6, 6), (i * 40, 0, 0)).save(root / "img" / f"{i}.png")
    table = datasets.Dataset.from_dict({
        "image_id": [10, 11, 12, 13],
        "image": [f"img/{i}.png" for i in range(4)],
        "votes": [[0, 0, 0, 0, 1, 1, 0, 0, 0, 0], [0] * 10, [0, 0, 0, 0, 0, 0, 0, 0, 2, 0],
                  [1, 2, 3]],
        "tag1": ["Landscape", "Abstract", "Portraiture", ""],
        "tag2": ["", "", "abstract", ""],
    })
    datasets.DatasetDict({"train": table.select([0, 1, 3]), "test": table.select([2])}
                         ).save_to_disk(str(root / "hf"))
    ds = load_ava({"root": str(root), "source": "datasets", "hf_path": "hf"}, ctx(root))
    assert ds.ids == ["10", "12"]
    assert ds.mos.tolist() == pytest.approx([5.5, 9.0])
    assert ds.split.tolist() == ["trainval", "test"]
    names = {ds.tag_names[t] for t in ds.tags.ravel() if t}
    assert names == {"Landscape", "Portraiture", "Abstract"}            # new name gets an id
    kinds = ds.report.to_json()["by_kind"]
    assert kinds == {"no_votes": 1, "bad_votes": 1}
    assert ds.refs[1].load().getpixel((0, 0))[0] == 80
    # an image path column cannot leave the root
    bad = datasets.Dataset.from_dict({"image_id": [1], "image": ["../x.png"],
                                      "votes": [[1] * 10], "tag1": [1], "tag2": [0]})
    bad.save_to_disk(str(root / "bad"))
    ds_bad = load_ava({"root": str(root), "source": "datasets", "hf_path": "bad"}, ctx(root))
    with pytest.raises(PathEscapeError):
        ds_bad.refs[0].load()
    with pytest.raises(DatasetFormatError, match="hf_columns"):
        load_ava({"root": str(root), "source": "datasets", "hf_path": "hf",
                  "hf_columns": {"votes": "ratings"}}, ctx(root))


# ----------------------------------------------------------------------------- sweeps
def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (value, value, value)).save(path)


def test_param_sweep_folder_layout(tmp_path):
    root = tmp_path / "sweep"
    for cfg in (1, 3, 9):
        for k in range(2):
            _png(root / "nature_walk" / f"cfg{cfg}" / f"{k}.png", cfg * 20 + k)
    _png(root / "nature_walk" / "best" / "0.png", 1)            # not a parameter value
    (root / "nature_walk" / "cfg3" / "notes.txt").write_text("ignored")
    ds = load_param_sweep({"root": str(root), "param_name": "cfg_scale",
                           "prompts": {"nature_walk": "Nature"}}, LoadContext("s", tmp_path / "t.yaml"))
    assert len(ds) == 6
    assert sorted(set(ds.params.tolist())) == [1.0, 3.0, 9.0]
    assert ds.prompts == {"nature_walk": "Nature"}
    assert ds.report.to_json()["by_kind"] == {"bad_param_dir": 1}
    default = load_param_sweep({"root": str(root)}, LoadContext("s", tmp_path / "t.yaml"))
    assert default.prompts == {"nature_walk": "nature walk"}


def test_param_sweep_limit(tmp_path):
    root = tmp_path / "sweep"
    for prompt in ("a", "b"):
        for cfg in (1, 5, 9):
            for k in range(6):
                _png(root / prompt / str(cfg) / f"{k}.png", cfg * 20 + k)
    full = load_param_sweep({"root": str(root)}, LoadContext("s", tmp_path / "t.yaml"))
    ds = load_param_sweep({"root": str(root)}, LoadContext("s", tmp_path / "t.yaml", limit=18))
    assert len(full) == 36 and len(ds) == 18 and ds.meta["limit"]["kept"] == 18
    cells = {(p, v) for p, v in zip(ds.prompt_ids, ds.params)}
    assert len(cells) == 6                                  # every prompt x cfg kept
    tiny = load_param_sweep({"root": str(root)}, LoadContext("s", tmp_path / "t.yaml", limit=1))
    assert len(tiny) == 12 and tiny.meta["limit"]["raised_to"] == 12     # 2 per cell
    same = load_param_sweep({"root": str(root)}, LoadContext("s", tmp_path / "t.yaml", limit=99))
    assert [r.key for r in same.refs] == [r.key for r in full.refs]


def test_param_sweep_manifest(tmp_path):
    root = tmp_path / "sweep"
    _png(root / "a.png", 1)
    _png(root / "b.png", 2)
    (root / "m.csv").write_text("path,prompt_id,param,prompt\na.png,p1,1,Nature\nb.png,p1,seven,Nature\n"
                                "c.png,p1,5,Nature\nb.png,p1,7,Nature\n")
    ds = load_param_sweep({"root": str(root), "manifest": "m.csv"}, LoadContext("s", tmp_path / "t.yaml"))
    assert ds.params.tolist() == [1.0, 7.0] and ds.prompts == {"p1": "Nature"}
    issues = {(i["kind"], i["line"]) for i in ds.report.issues}
    assert issues == {("bad_param", 3), ("missing_image", 4)}
    (root / "evil.csv").write_text("path,prompt_id,param\n../../etc/passwd,p,1\n")
    with pytest.raises(PathEscapeError, match="evil.csv, line 2"):
        load_param_sweep({"root": str(root), "manifest": "evil.csv"}, LoadContext("s", tmp_path / "t.yaml"))
    (root / "nohead.csv").write_text("file,prompt,value\n")
    with pytest.raises(DatasetFormatError, match="header lacks"):
        load_param_sweep({"root": str(root), "manifest": "nohead.csv"}, LoadContext("s", tmp_path / "t.yaml"))


def test_param_sweep_missing_data(tmp_path):
    with pytest.raises(DataNotFound, match="CFG scale 1, 3, 5, 7, 9"):
        load_param_sweep({"root": str(tmp_path / "none")}, LoadContext("s", tmp_path / "t.yaml"))


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_param_sweep_symlink_out_of_root_refused(tmp_path):
    outside = tmp_path / "outside.png"
    _png(outside, 3)
    root = tmp_path / "sweep"
    (root / "p" / "1").mkdir(parents=True)
    (root / "p" / "1" / "x.png").symlink_to(outside)
    with pytest.raises(PathEscapeError):
        load_param_sweep({"root": str(root)}, LoadContext("s", tmp_path / "t.yaml"))


# ----------------------------------------------------------------------------- symlinks out of the root
needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")


@needs_symlinks
def test_ava_image_symlink_out_of_root_refused(ava_root, tmp_path):
    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (8, 8)).save(outside)
    (ava_root / "images" / "1001.jpg").unlink()
    (ava_root / "images" / "1001.jpg").symlink_to(outside)
    with pytest.raises(PathEscapeError, match=r"AVA\.txt, line 1: image 1001.*outside"):
        load_ava({"root": str(ava_root)}, ctx(ava_root))
    with pytest.raises(PathEscapeError):          # also without the existence check
        load_ava({"root": str(ava_root), "check_images": False}, ctx(ava_root))


@needs_symlinks
def test_ava_files_symlinked_out_of_root_refused(ava_root, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (ava_root / "linked_images").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PathEscapeError, match="images_dir"):
        load_ava({"root": str(ava_root), "images_dir": "linked_images"}, ctx(ava_root))
    (tmp_path / "tags_elsewhere.txt").write_text(TAGS)
    (ava_root / "tags.txt").unlink()
    (ava_root / "tags.txt").symlink_to(tmp_path / "tags_elsewhere.txt")
    with pytest.raises(PathEscapeError, match="tags_file"):
        load_ava({"root": str(ava_root)}, ctx(ava_root))


@needs_symlinks
def test_ava_datasets_image_symlink_out_of_root_refused(tmp_path):
    datasets = pytest.importorskip("datasets")
    root = tmp_path / "ava"
    (root / "img").mkdir(parents=True)
    outside = tmp_path / "outside.png"
    Image.new("RGB", (6, 6)).save(outside)
    (root / "img" / "0.png").symlink_to(outside)
    Image.new("RGB", (6, 6)).save(root / "img" / "1.png")
    datasets.Dataset.from_dict({"image_id": [1, 2], "image": ["img/0.png", "img/1.png"],
                                "votes": [[1] * 10, [2] * 10], "tag1": [1, 1], "tag2": [0, 0]}
                               ).save_to_disk(str(root / "hf"))
    ds = load_ava({"root": str(root), "source": "datasets", "hf_path": "hf"}, ctx(root))
    assert ds.refs[1].load().size == (6, 6)
    with pytest.raises(PathEscapeError, match="row 0, column image"):
        ds.refs[0].load()
    absolute = datasets.Dataset.from_dict({"image_id": [1, 2],
                                           "image": [str(root / "img" / "1.png"), str(outside)],
                                           "votes": [[1] * 10, [2] * 10], "tag1": [1, 1], "tag2": [0, 0]})
    absolute.save_to_disk(str(root / "abs"))
    ds = load_ava({"root": str(root), "source": "datasets", "hf_path": "abs"}, ctx(root))
    assert ds.refs[0].load().size == (6, 6)                    # absolute, inside the root
    with pytest.raises(PathEscapeError, match="outside the dataset folder"):
        ds.refs[1].load()


@needs_symlinks
def test_param_sweep_manifest_symlink_out_of_root_refused(tmp_path):
    outside = tmp_path / "outside.png"
    _png(outside, 3)
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "x.png").symlink_to(outside)
    (root / "m.csv").write_text("path,prompt_id,param\nx.png,p,1\n")
    with pytest.raises(PathEscapeError, match="m.csv, line 2"):
        load_param_sweep({"root": str(root), "manifest": "m.csv"}, LoadContext("s", tmp_path / "t.yaml"))
