"""The image_text_folder loader (CSV, JSONL, COCO captions JSON) on small fixtures
written here, its errors (each naming the file and the line, row or field), the
example folder, and the embedded synthetic set."""

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from ctxbench.errors import DataNotFound, DatasetFormatError, PathEscapeError
from ctxbench.families.image_text_retrieval import synthetic
from ctxbench.families.image_text_retrieval.data import load_captions, load_from_options
from ctxbench.registrations import LoadContext

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "own_images"
CAPTIONS = {"a.png": ["a red square", "something red"], "sub/b.png": ["a green square"],
            "c.png": ["a blue square", "blue", "a square that is blue"]}


@pytest.fixture
def folder(tmp_path):
    """images/ with a.png, sub/b.png, c.png (distinct colours)."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for name, colour in zip(CAPTIONS, [(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        Image.new("RGB", (8, 8), colour).save(root / name)
    return tmp_path


def write_csv(folder, text, name="captions.csv"):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def csv_text():
    return "image,caption\n" + "".join(f"{img},\"{c}\"\n" for img, caps in CAPTIONS.items() for c in caps)


def write_jsonl(folder, lines, name="captions.jsonl"):
    path = folder / name
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


def coco_doc():
    names = list(CAPTIONS)
    return {"images": [{"id": 10 + i, "file_name": n} for i, n in enumerate(names)],
            "annotations": [{"id": k, "image_id": 10 + names.index(img), "caption": c}
                            for k, (img, c) in enumerate((img, c) for img, caps in CAPTIONS.items()
                                                         for c in caps)]}


def expected_pairs():
    return [(img, c) for img, caps in CAPTIONS.items() for c in caps]


def pairs(ds):
    return [(ds.image_ids[i], c) for c, i in zip(ds.captions, ds.caption_image)]


# ----------------------------------------------------------------------------- the three formats
def test_csv(folder):
    ds = load_captions(write_csv(folder, csv_text()), folder / "images")
    assert ds.image_ids == list(CAPTIONS) and pairs(ds) == expected_pairs()
    assert ds.meta["format"] == "csv" and ds.images_with_captions() == [0, 1, 2]
    assert ds.images[1].load().getpixel((0, 0)) == (0, 255, 0)


def test_csv_with_other_column_names_extra_columns_and_a_bom(folder):
    text = "\ufeffid,file,text\n" + "".join(f"{n},{img},{c}\n" for n, (img, c) in enumerate(expected_pairs()))
    ds = load_captions(write_csv(folder, text), folder / "images", image_column="file",
                       caption_column="text")
    assert pairs(ds) == expected_pairs()


def test_jsonl_with_caption_lists_and_single_captions(folder):
    lines = [{"image": "a.png", "caption": CAPTIONS["a.png"]}, "",
             {"image": "sub/b.png", "caption": "a green square", "extra": 1},
             {"image": "c.png", "caption": CAPTIONS["c.png"][:2]},
             {"image": "c.png", "caption": CAPTIONS["c.png"][2]}]
    ds = load_captions(write_jsonl(folder, lines), folder / "images")
    assert ds.image_ids == list(CAPTIONS) and pairs(ds) == expected_pairs()


def test_coco(folder):
    path = folder / "captions.json"
    doc = coco_doc()
    doc["images"].append({"id": 99, "file_name": "a.png"})   # same file: the same image
    path.write_text(json.dumps(doc))
    ds = load_captions(path, folder / "images")
    assert ds.image_ids == list(CAPTIONS) and pairs(ds) == expected_pairs()
    assert ds.meta["format"] == "coco"


def test_coco_image_without_captions_stays_in_the_pool(folder):
    Image.new("RGB", (8, 8), (9, 9, 9)).save(folder / "images" / "d.png")
    doc = coco_doc()
    doc["images"].append({"id": "d", "file_name": "d.png"})
    (folder / "c.json").write_text(json.dumps(doc))
    ds = load_captions(folder / "c.json", folder / "images")
    assert len(ds.images) == 4 and ds.images_with_captions() == [0, 1, 2]
    assert ds.meta["images_without_captions"] == 1


def test_two_paths_to_one_file_are_one_image(folder):
    ds = load_captions(write_csv(folder, "image,caption\na.png,x\n./sub/../a.png,y\n"), folder / "images")
    assert len(ds.images) == 1 and ds.caption_image == [0, 0]


def test_images_default_to_the_captions_folder_and_options_are_task_relative(folder):
    path = write_csv(folder / "images", csv_text())
    assert pairs(load_captions(path)) == expected_pairs()
    ctx = LoadContext("mine", folder / "task.yaml")
    ds = load_from_options({"captions": "images/captions.csv"}, ctx)
    assert ds.name == "mine" and pairs(ds) == expected_pairs()
    ds = load_from_options({"captions": "images/captions.csv", "images": "images"},
                           LoadContext("mine", folder / "task.yaml", limit=2))
    assert ds.image_ids == ["a.png", "sub/b.png"] and len(ds.captions) == 3
    assert ds.meta["limited_to"] == 2


def test_format_option_overrides_the_suffix(folder):
    path = write_csv(folder, csv_text(), name="captions.txt")
    with pytest.raises(DatasetFormatError, match=r"captions\.txt: unknown captions file type '\.txt'.*format"):
        load_captions(path, folder / "images")
    assert pairs(load_captions(path, folder / "images", fmt="csv")) == expected_pairs()


def test_the_three_example_files_give_the_same_dataset():
    got = [load_captions(EXAMPLE / name, EXAMPLE / "images")
           for name in ("captions.csv", "captions.jsonl", "captions_coco.json")]
    assert len(got[0].images) == 8 and len(got[0].captions) == 17
    for ds in got[1:]:
        assert pairs(ds) == pairs(got[0])
        assert [r.key for r in ds.images] == [r.key for r in got[0].images]


# ----------------------------------------------------------------------------- errors
def test_missing_column_names_the_file_the_header_and_the_option(folder):
    path = write_csv(folder, "file,caption\na.png,x\n")
    with pytest.raises(DatasetFormatError, match=r"captions\.csv: line 1: the header has no column "
                                                 r"'image' \(found: 'file', 'caption'\).*image_column"):
        load_captions(path, folder / "images")
    with pytest.raises(DatasetFormatError, match="caption_column"):
        load_captions(write_csv(folder, "image,text\na.png,x\n"), folder / "images")


def test_missing_image_names_the_file_and_the_row(folder):
    path = write_csv(folder, "image,caption\na.png,x\nnope.png,y\n")
    with pytest.raises(DatasetFormatError, match=r"captions\.csv: line 3: field 'image': "
                                                 r"'nope\.png': image file not found under"):
        load_captions(path, folder / "images")
    path = write_csv(folder, "image,caption\n" + "".join(f"n{i}.png,y\n" for i in range(8)))
    with pytest.raises(DatasetFormatError, match=r"line 2: field 'image': 'n0\.png': image file "
                                                 r"not found .* \(and 7 more: .*line 3.*, \.\.\.\)"):
        load_captions(path, folder / "images")


def test_missing_images_in_coco_name_the_field(folder):
    doc = coco_doc()
    doc["images"][1]["file_name"] = "gone.png"
    (folder / "c.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetFormatError, match=r"images\[1\]\.file_name.*'gone\.png'"):
        load_captions(folder / "c.json", folder / "images")


def test_path_escape_is_refused(folder):
    Image.new("RGB", (4, 4)).save(folder / "outside.png")
    path = write_csv(folder, "image,caption\na.png,x\n../outside.png,y\n")
    with pytest.raises(PathEscapeError, match=r"captions\.csv: line 3: field 'image': path "
                                              r"'\.\./outside\.png' resolves to .* outside the dataset root"):
        load_captions(path, folder / "images")
    absolute = write_csv(folder, f"image,caption\n{folder / 'outside.png'},y\n")
    with pytest.raises(PathEscapeError, match="absolute path"):
        load_captions(absolute, folder / "images")


def test_symlink_escape_is_refused(folder):
    Image.new("RGB", (4, 4)).save(folder / "outside.png")
    try:
        os.symlink(folder / "outside.png", folder / "images" / "link.png")
    except OSError:
        pytest.skip("no symlinks here")
    path = write_jsonl(folder, [{"image": "a.png", "caption": "x"}, {"image": "link.png", "caption": "y"}])
    with pytest.raises(PathEscapeError, match=r"captions\.jsonl: line 2: field 'image'.*outside"):
        load_captions(path, folder / "images")


@pytest.mark.parametrize("name,text,match", [
    ("captions.csv", "", r"captions\.csv: empty file"),
    ("captions.csv", "image,caption\n", r"captions\.csv: no captions"),
    ("captions.jsonl", "\n\n", r"captions\.jsonl: no captions"),
    ("captions.json", json.dumps({"images": [], "annotations": []}), r"captions\.json: no captions"),
])
def test_empty_files(folder, name, text, match):
    path = folder / name
    path.write_text(text)
    with pytest.raises(DatasetFormatError, match=match):
        load_captions(path, folder / "images")


def test_bad_json_line_names_the_line(folder):
    path = write_jsonl(folder, [{"image": "a.png", "caption": "x"}, '{"image": "c.png", caption: 1}'])
    with pytest.raises(DatasetFormatError, match=r"captions\.jsonl: line 2: invalid JSON"):
        load_captions(path, folder / "images")


@pytest.mark.parametrize("line,match", [
    ('["a.png", "x"]', r"line 1: expected a JSON object"),
    ('{"image": "a.png"}', r"line 1: no field 'caption' \(found: 'image'\).*caption_column"),
    ('{"image": "a.png", "caption": []}', r"line 1: field 'caption' is an empty list"),
    ('{"image": "a.png", "caption": ["ok", 3]}', r"line 1: field 'caption': expected a non-empty string"),
    ('{"image": "", "caption": "x"}', r"line 1: field 'image': expected an image path"),
])
def test_bad_jsonl_rows(folder, line, match):
    with pytest.raises(DatasetFormatError, match=match):
        load_captions(write_jsonl(folder, [line]), folder / "images")


@pytest.mark.parametrize("text,match", [
    ("image,caption\na.png,\n", r"line 2: field 'caption': expected a non-empty string"),
    ("image,caption\na.png,x,y\n", r"line 2: more fields than the header's 2; quote"),
    ("image,caption\na.png\n", r"line 2: field 'caption'"),
])
def test_bad_csv_rows(folder, text, match):
    with pytest.raises(DatasetFormatError, match=match):
        load_captions(write_csv(folder, text), folder / "images")


def test_non_utf8_names_the_line(folder):
    path = folder / "captions.csv"
    path.write_bytes(b"image,caption\na.png,ok\nc.png,caf\xe9\n")
    with pytest.raises(DatasetFormatError, match=r"captions\.csv: line 3: not UTF-8"):
        load_captions(path, folder / "images")


@pytest.mark.parametrize("change,match", [
    (lambda d: d.pop("annotations"), r"field 'annotations': missing"),
    (lambda d: d["annotations"][2].update(image_id=7), r"field 'annotations\[2\]\.image_id': 7 is not the id"),
    (lambda d: d["images"][2].update(id=10), r"field 'images\[2\]\.id': duplicate image id 10"),
    (lambda d: d["images"][0].pop("file_name"), r"field 'images\[0\]': expected an object with 'id' and 'file_name'"),
    (lambda d: d["annotations"][0].update(caption=" "), r"c\.json: annotations\[0\]: field 'caption'"),
])
def test_bad_coco_fields(folder, change, match):
    doc = coco_doc()
    change(doc)
    (folder / "c.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetFormatError, match=match):
        load_captions(folder / "c.json", folder / "images")


def test_invalid_coco_json_names_the_line(folder):
    (folder / "c.json").write_text('{"images": [],\n "annotations": [,]}')
    with pytest.raises(DatasetFormatError, match=r"c\.json: line 2: invalid JSON"):
        load_captions(folder / "c.json", folder / "images")


def test_absent_data_is_not_found_with_instructions(folder):
    with pytest.raises(DataNotFound, match=r"captions file .*nope\.csv not found.*'captions'"):
        load_captions(folder / "nope.csv", folder / "images")
    with pytest.raises(DataNotFound, match=r"images folder .*nowhere.*'images'"):
        load_captions(write_csv(folder, csv_text()), folder / "nowhere")
    with pytest.raises(ValueError, match="'captions' is required"):
        load_from_options({}, LoadContext("x", folder / "t.yaml"))


# ----------------------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_and_seeded():
    a, b = synthetic.build(n_images=30, seed=0), synthetic.build(n_images=30, seed=0)
    assert a.captions == b.captions and a.caption_image == b.caption_image
    assert [r.key for r in a.images] == [r.key for r in b.images]
    c = synthetic.build(n_images=30, seed=1)
    assert c.captions != a.captions
    assert len(a.captions) == 90 and a.caption_image[:4] == [0, 0, 0, 1]
    full = a.captions[::3]
    assert len(set(full)) == 30        # the world caption of every image is unique
    assert synthetic.build(n_images=30, captions_per_image=1).captions == full
    assert a.images[0].load().size == (64, 64)


def test_synthetic_options_and_limit():
    ds = synthetic.load_from_options({"n_images": 20, "captions_per_image": 2, "size": 32},
                                     LoadContext("t", Path("t.yaml"), limit=5))
    assert len(ds.images) == 5 and len(ds.captions) == 10 and ds.images[0].load().size == (32, 32)
    with pytest.raises(ValueError, match="captions_per_image"):
        synthetic.build(captions_per_image=4)
    with pytest.raises(ValueError, match="unknown option"):
        synthetic.load_from_options({"n_image": 3}, LoadContext("t", Path("t.yaml")))
