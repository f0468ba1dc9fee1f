"""context_retrieval data: the JSON loader for real data and the synthetic mini dataset."""

import json
import os

import pytest
import torch
from PIL import Image

from ctxbench.families.context_retrieval.data import LEVELS, load_json
from ctxbench.errors import DataNotFound, DatasetFormatError, PathEscapeError
from ctxbench.families.context_retrieval import synthetic as synth_cr

from oracle_backend import OracleBackend


# ----------------------------------------------------------------------------- JSON loader
def _write_dataset(tmp_path, mutate=None):
    (tmp_path / "imgs").mkdir(exist_ok=True)
    groups = []
    for g in range(2):
        stories = [{"id": f"m{g}_s{k}", "title": f"Movie {g} story {k}", "synopsis": f"Plot {g}{k}."}
                   for k in range(2)]
        images = []
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * g + 10 * i, 100, 200)).save(tmp_path / "imgs" / f"{g}_{i}.png")
            queries = {s["id"]: {lv: f"{lv} query {g}/{i}/{s['id']}" for lv in LEVELS} for s in stories}
            queries[f"m{g}_s1"]["L4"] = None   # explicitly missing
            images.append({"id": f"m{g}_i{i}", "path": f"imgs/{g}_{i}.png",
                           "story": f"m{g}_s{i % 2}", "queries": queries})
        groups.append({"id": f"m{g}", "stories": stories, "images": images})
    doc = {"name": "tiny", "groups": groups}
    if mutate:
        mutate(doc)
    path = tmp_path / "cr.json"
    path.write_text(json.dumps(doc))
    return path


def test_json_round_trip(tmp_path):
    ds = load_json(_write_dataset(tmp_path))
    assert ds.name == "tiny" and len(ds.images) == 6 and len(ds.stories) == 4 and len(ds.groups) == 2
    assert ds.assignment["m1_i1"] == "m1_s1"
    assert ds.queries[("m0_i2", "m0_s1", "L3")] == "L3 query 0/2/m0_s1"
    assert ("m0_i1", "m0_s1", "L4") not in ds.queries
    assert len(ds.evaluation_queries("L1")) == 6 and len(ds.evaluation_queries("L4")) == 4
    assert ds.group_of_image() == ["m0"] * 3 + ["m1"] * 3
    image = ds.images[4].ref.load()
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (50, 100, 200)   # group 1, image 1
    assert ds.images[0].ref.key != ds.images[1].ref.key


def test_missing_file_and_images_are_data_not_found(tmp_path):
    with pytest.raises(DataNotFound, match="MPII"):
        load_json(tmp_path / "absent.json")
    path = _write_dataset(tmp_path)
    os.remove(tmp_path / "imgs" / "1_2.png")
    with pytest.raises(DataNotFound, match=r"groups\[1\]\.images\[2\]\.path"):
        load_json(path)


@pytest.mark.parametrize("bad", ["../outside.png", "imgs/../../outside.png", "ABS", "LINK"])
def test_path_escape_refused(tmp_path, bad):
    root = tmp_path / "root"
    root.mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "outside.png")
    if bad == "ABS":
        bad = str(tmp_path / "outside.png")
    if bad == "LINK":
        (root / "imgs").mkdir()
        os.symlink(tmp_path / "outside.png", root / "imgs" / "link.png")
        bad = "imgs/link.png"

    def mutate(doc):
        doc["groups"][1]["images"][1]["path"] = bad
    with pytest.raises(PathEscapeError, match=r"groups\[1\]\.images\[1\]\.path") as info:
        load_json(_write_dataset(root, mutate))
    assert "cr.json" in str(info.value)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["groups"][0]["images"][2].pop("story"), r"groups\[0\]\.images\[2\]\.story"),
    (lambda d: d["groups"][1]["images"][0].update(story="m0_s0"), r"groups\[1\]\.images\[0\]\.story"),
    (lambda d: d["groups"][0]["images"][1]["queries"]["m0_s0"].pop("L2"),
     r"groups\[0\]\.images\[1\]\.queries\.m0_s0\.L2"),
    (lambda d: d["groups"][0]["images"][1]["queries"]["m0_s0"].update(L3=7),
     r"groups\[0\]\.images\[1\]\.queries\.m0_s0\.L3"),
    (lambda d: d["groups"][1]["images"][2].update(id="m1_i0"), r"groups\[1\]\.images\[2\]\.id"),
    (lambda d: d["groups"][1]["stories"][0].update(title=""), r"groups\[1\]\.stories\[0\]\.title"),
    (lambda d: d["groups"][0]["images"][0]["queries"].pop("m0_s0"), r"groups\[0\]\.images\[0\]\.queries"),
    (lambda d: d.update(groups={}), r"'groups'"),
])
def test_malformed_field_is_named(tmp_path, mutate, field):
    with pytest.raises(DatasetFormatError, match=field) as info:
        load_json(_write_dataset(tmp_path, mutate))
    assert "cr.json" in str(info.value) and "(" in str(info.value)   # file named, fix given


def test_invalid_json(tmp_path):
    path = tmp_path / "cr.json"
    path.write_text("{not json")
    with pytest.raises(DatasetFormatError, match="cr.json"):
        load_json(path)


# ----------------------------------------------------------------------------- synthetic
@pytest.fixture(scope="module")
def synth():
    return synth_cr.build()


def test_synthetic_shape_and_determinism(synth):
    again = synth_cr.build()
    assert [i.id for i in synth.images] == [i.id for i in again.images]
    assert [i.ref.key for i in synth.images] == [i.ref.key for i in again.images]
    assert synth.queries == again.queries and synth.assignment == again.assignment
    assert synth.stories == again.stories
    assert synth_cr.build(seed=1).queries != synth.queries
    assert len(synth.images) == 40 and len(synth.groups) == 8
    assert synth.meta["generator_version"] and synth.meta["seed"] == 0
    names = [a["protagonist"] for a in synth.meta["story_attrs"].values()]
    assert len(set(names)) == len(names)
    for group in synth.groups:
        assert len(group.image_ids) == 5
        assert len({synth.assignment[i] for i in group.image_ids}) >= 2
        genres = [synth.meta["story_attrs"][s]["genre"] for s in group.story_ids]
        assert len(set(genres)) == len(genres)


def test_synthetic_queries(synth):
    for level in LEVELS:
        texts = [q for _, q in synth.evaluation_queries(level)]
        assert len(texts) == 40 and len(set(texts)) == 40, level
    for group in synth.groups:
        s0, s1 = group.story_ids[:2]
        for iid in group.image_ids:
            assert synth.queries[(iid, s0, "L1")] == synth.queries[(iid, s1, "L1")]
            for level in ("L2", "L3", "L4"):
                assert synth.queries[(iid, s0, level)] != synth.queries[(iid, s1, level)]
    scenes, attrs = synth.meta["scenes"], synth.meta["story_attrs"]
    for (iid, sid, level), text in synth.queries.items():
        assert synth_cr.query_text(scenes[iid], attrs[sid], level) == text


def test_no_context_ceiling(synth):
    ceiling = synth.meta["no_context_ceiling"]
    assert ceiling["L1"] == 1.0
    assert ceiling["L3"] < 0.7 and ceiling["L4"] < 0.7
    assert ceiling["L1"] >= ceiling["L2"] >= ceiling["L3"] >= ceiling["L4"] > 0


def _expected_r1(scores, targets):
    """Recall@1 with uniform random tie-breaking (expected value)."""
    hits = []
    for row, target in zip(scores, targets):
        top = row.max()
        hits.append(float(row[target] == top) / float((row == top).sum()))
    return sum(hits) / len(hits)


def test_oracle_backend_reaches_ceilings():
    ds = synth_cr.build(n_groups=4)
    oracle = OracleBackend(ds)
    pixels = [im.ref.load() for im in ds.images]
    with_ctx = oracle.encode_images(pixels, [ds.stories[ds.assignment[im.id]].context_text() for im in ds.images])
    without = oracle.encode_images(pixels, [None] * len(pixels))
    assert with_ctx.dtype == torch.float32 and torch.allclose(with_ctx.norm(dim=1), torch.ones(len(pixels)))
    for level in LEVELS:
        targets, texts = zip(*ds.evaluation_queries(level))
        q = oracle.encode_texts(list(texts), [None] * len(texts))
        assert _expected_r1(q @ with_ctx.T, targets) == 1.0
        assert _expected_r1(q @ without.T, targets) == pytest.approx(ds.meta["no_context_ceiling"][level])
