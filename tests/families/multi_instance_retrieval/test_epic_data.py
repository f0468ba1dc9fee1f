"""EPIC-KITCHENS-100 MIR data: official-format fixtures (CSV and pandas pickles,
written here), relevancy derivation, restricted unpickling, frame layout, video
decoding, and a check against the real official files when they are present."""

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ctxbench.io import safe_pickle
from ctxbench.families.multi_instance_retrieval import data as epic
from ctxbench.errors import DataNotFound, DatasetFormatError, PathEscapeError

REAL = Path(__file__).resolve().parents[4] / "shared/data/epic100"

# narration_id, participant, video, start, stop, narration, verb, verb_class, nouns, noun classes
CLIPS = [
    ("P01_01_0", "P01", "P01_01", 1, 20, "take plate", "take", 0, ["plate"], [2]),
    ("P01_01_1", "P01", "P01_01", 15, 30, "put down plate", "put-down", 1, ["plate"], [2]),
    ("P01_01_2", "P01", "P01_01", 25, 28, "take plate", "take", 0, ["plate"], [2]),
    ("P01_01_3", "P01", "P01_01", 5, 12, "wash plate and cup", "wash", 2, ["plate", "cup"], [2, 5]),
    ("P02_03_0", "P02", "P02_03", 3, 18, "take cup", "take", 0, ["cup"], [5]),
    ("P02_03_1", "P02", "P02_03", 10, 24, "put plate in sink", "put", 1, ["plate", "sink"], [2, 9]),
    ("P02_03_2", "P02", "P02_03", 20, 29, "take cup", "pick-up", 3, ["cup"], [5]),
]
# as the official create_sentence_df writes them: one row per distinct narration (first
# clip), then one per action class left without a caption (3_5, clip P02_03_2) whose
# narration is, by the pre-2023 bug, the previous row's: "put plate in sink".
SENTENCES = [("P01_01_0", "take plate"), ("P01_01_1", "put down plate"),
             ("P01_01_3", "wash plate and cup"), ("P02_03_0", "take cup"),
             ("P02_03_1", "put plate in sink"), ("P02_03_2", "put plate in sink")]


def clips_frame():
    rows = [{"narration_id": c[0], "participant_id": c[1], "video_id": c[2],
             "narration_timestamp": "00:00:01.00", "start_timestamp": "00:00:00.00",
             "stop_timestamp": "00:00:01.00", "start_frame": c[3], "stop_frame": c[4],
             "narration": c[5], "verb": c[6], "verb_class": c[7], "noun": c[8][0],
             "noun_class": c[9][0], "all_nouns": c[8], "all_noun_classes": c[9]} for c in CLIPS]
    return pd.DataFrame(rows)


def write_fixtures(folder: Path, kind: str = "csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    clips = clips_frame()
    sentences = pd.DataFrame(SENTENCES, columns=["narration_id", "narration"])
    if kind == "csv":
        clips["all_nouns"] = clips["all_nouns"].map(str)          # "['plate', 'cup']"
        clips["all_noun_classes"] = clips["all_noun_classes"].map(str)
        clips.to_csv(folder / "EPIC_100_retrieval_test.csv", index=False)
        sentences.to_csv(folder / "EPIC_100_retrieval_test_sentence.csv", index=False)
    else:   # the official pickles are DataFrames indexed by narration_id
        clips.set_index("narration_id").to_pickle(folder / "EPIC_100_retrieval_test.pkl")
        sentences.set_index("narration_id").rename_axis("index").to_pickle(
            folder / "EPIC_100_retrieval_test_sentence.pkl")
    return folder


def reference_relevancy():
    """Straightforward loops over the official formula, classes via narration_id."""
    by_id = {c[0]: c for c in CLIPS}
    out = np.zeros((len(CLIPS), len(SENTENCES)))
    for i, c in enumerate(CLIPS):
        for j, (nid, _) in enumerate(SENTENCES):
            s = by_id[nid]
            verb = 1.0 if c[7] == s[7] else 0.0
            a, b = set(c[9]), set(s[9])
            out[i, j] = (verb + len(a & b) / len(a | b)) / 2
    return out


def write_frames(root: Path) -> Path:
    for c in CLIPS:
        folder = root / c[1] / c[2]
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(c[3], c[4] + 1):
            path = folder / f"frame_{f:010d}.jpg"
            if not path.exists():
                Image.new("RGB", (8, 8), (f * 8 % 256, 0, 0)).save(path)
    return root


# ----------------------------------------------------------------------------- tables
@pytest.mark.parametrize("kind", ["csv", "pkl"])
def test_reads_official_tables(tmp_path, kind):
    folder = write_fixtures(tmp_path, kind)
    clips = epic.read_clips(folder / f"EPIC_100_retrieval_test.{kind}")
    sentences = epic.read_sentences(folder / f"EPIC_100_retrieval_test_sentence.{kind}")
    assert clips.narration_id == [c[0] for c in CLIPS]
    assert clips.noun_classes[3] == (2, 5) and clips.verb_class.tolist() == [c[7] for c in CLIPS]
    assert clips.start_frame.tolist() == [c[3] for c in CLIPS]
    assert sentences.narration_id == [s[0] for s in SENTENCES]
    assert sentences.narration[-1] == "put plate in sink"


def test_relevancy_takes_caption_classes_from_the_narration_id_clip(tmp_path):
    folder = write_fixtures(tmp_path)
    clips = epic.read_clips(folder / "EPIC_100_retrieval_test.csv")
    sentences = epic.read_sentences(folder / "EPIC_100_retrieval_test_sentence.csv")
    rel = epic.derive_relevancy(clips, sentences)
    assert np.array_equal(rel, reference_relevancy())
    # the last caption's text is "put plate in sink" but its classes are P02_03_2's
    # (pick-up, {cup}): clip P02_03_2 is an exact match, the "put plate in sink" clip is not
    assert rel[6, 5] == 1.0 and rel[5, 5] == 0.0 and rel[5, 4] == 1.0
    assert rel[0, 0] == 1.0 and rel[3, 0] == pytest.approx(0.25)   # wash {plate,cup} vs take {plate}


def test_relevancy_from_classes_matches_formula_on_random_sets():
    rng = np.random.default_rng(0)
    vis_v, txt_v = rng.integers(0, 4, 40), rng.integers(0, 4, 25)
    vis_n = [sorted(set(rng.integers(0, 6, rng.integers(1, 4)).tolist())) for _ in range(40)]
    txt_n = [sorted(set(rng.integers(0, 6, rng.integers(1, 4)).tolist())) for _ in range(25)]
    got = epic.relevancy_from_classes(vis_v, vis_n, txt_v, txt_n, chunk_rows=7)
    for i in range(40):
        for j in range(25):
            a, b = set(vis_n[i]), set(txt_n[j])
            want = ((1 / 1 if vis_v[i] == txt_v[j] else 0 / 2) + len(a & b) / len(a | b)) / 2
            assert got[i, j] == want      # bit for bit, as the official script


def test_malformed_tables_name_the_file_line_and_field(tmp_path):
    folder = write_fixtures(tmp_path)
    path = folder / "EPIC_100_retrieval_test.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[2, "all_noun_classes"] = "[plate]"
    df.to_csv(path, index=False)
    with pytest.raises(DatasetFormatError, match=r"line 4, field 'all_noun_classes'"):
        epic.read_clips(path)
    df.drop(columns=["verb_class"]).to_csv(path, index=False)
    with pytest.raises(DatasetFormatError, match=r"missing column.*verb_class"):
        epic.read_clips(path)
    df = clips_frame()
    df.loc[1, "stop_frame"] = 3
    df.assign(all_noun_classes=df.all_noun_classes.map(str)).to_csv(path, index=False)
    with pytest.raises(DatasetFormatError, match=r"line 3: frame range 15..3"):
        epic.read_clips(path)


def test_caption_whose_narration_id_is_not_a_clip_is_refused(tmp_path):
    folder = write_fixtures(tmp_path)
    pd.DataFrame([("P09_09_9", "take plate")], columns=["narration_id", "narration"]).to_csv(
        folder / "EPIC_100_retrieval_test_sentence.csv", index=False)
    clips = epic.read_clips(folder / "EPIC_100_retrieval_test.csv")
    sentences = epic.read_sentences(folder / "EPIC_100_retrieval_test_sentence.csv")
    with pytest.raises(DatasetFormatError, match="P09_09_9"):
        epic.derive_relevancy(clips, sentences)


def test_pickled_relevancy_is_loaded_and_checked(tmp_path):
    path = tmp_path / "rel.pkl"
    with open(path, "wb") as f:
        pickle.dump(reference_relevancy(), f, protocol=2)
    assert np.array_equal(epic.load_relevancy(path, (7, 6)), reference_relevancy())
    with pytest.raises(DatasetFormatError, match=r"shape \(7, 6\).*6 clips x 7 captions"):
        epic.load_relevancy(path, (6, 7))
    with open(path, "wb") as f:
        pickle.dump({"not": "an array"}, f)
    with pytest.raises(DatasetFormatError, match="2-D float array"):
        epic.load_relevancy(path, (7, 6))


# ----------------------------------------------------------------------------- pickles
class Malicious:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_anything(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Malicious(marker))
    with pytest.raises(safe_pickle.UnsafePickleError, match=r"system"):
        safe_pickle.loads(payload)
    # the same payload as a dataset file, through the loader
    folder = write_fixtures(tmp_path / "ann")
    write_frames(tmp_path / "frames")
    (folder / epic.RELEVANCY_FILE).write_bytes(payload)
    with pytest.raises(safe_pickle.UnsafePickleError, match=epic.RELEVANCY_FILE):
        epic.load_epic_mir(folder, frames_dir=tmp_path / "frames")
    (folder / "EPIC_100_retrieval_test.csv").unlink()
    (folder / "EPIC_100_retrieval_test.pkl").write_bytes(payload)
    with pytest.raises(safe_pickle.UnsafePickleError):
        epic.read_clips(folder / "EPIC_100_retrieval_test.pkl")
    assert not marker.exists()


def test_restricted_unpickler_reads_numpy_and_pandas_of_any_protocol():
    df = clips_frame().set_index("narration_id")
    for protocol in (2, 4, 5):
        back = safe_pickle.loads(pickle.dumps(df, protocol=protocol))
        assert back.equals(df)
        arr = np.arange(6, dtype=np.float32).reshape(2, 3)
        assert np.array_equal(safe_pickle.loads(pickle.dumps(arr, protocol=protocol)), arr)


def test_numpy_1_pickles_are_mapped_to_numpy_2_locations():
    # numpy < 2 (and the official files) name numpy.core.multiarray._reconstruct
    arr = np.arange(4.0).reshape(2, 2)
    data = pickle.dumps(arr, protocol=2)
    assert b"numpy._core.multiarray" in data
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert np.array_equal(safe_pickle.loads(old), arr)


def test_refuses_other_harmless_looking_globals():
    import collections
    with pytest.raises(safe_pickle.UnsafePickleError, match="collections.Counter"):
        safe_pickle.loads(pickle.dumps(collections.Counter("ab")))
    with pytest.raises(DatasetFormatError, match="truncated"):
        safe_pickle.loads(pickle.dumps(np.zeros(3))[:-5])


# ----------------------------------------------------------------------------- clips
def test_uniform_frame_sampling():
    assert epic.sample_frame_indices(1, 100, 4) == [13, 38, 63, 88]   # segment centres
    assert epic.sample_frame_indices(5, 5, 3) == [5, 5, 5]
    assert epic.sample_frame_indices(10, 13, 4) == [10, 11, 12, 13]
    with pytest.raises(ValueError):
        epic.sample_frame_indices(1, 10, 0)


def test_frame_layout_clips_and_loader(tmp_path):
    folder = write_fixtures(tmp_path / "ann", "pkl")
    frames = write_frames(tmp_path / "rgb_frames")
    ds = epic.load_epic_mir(folder, frames_dir=frames, relevancy="derive")
    assert ds.vis_ids == [c[0] for c in CLIPS] and ds.captions[0] == "take plate"
    assert np.array_equal(ds.relevancy, reference_relevancy())
    refs = ds.clips[1].frames(4)                       # frames 15..30
    assert [Path(r.label).name for r in refs] == [f"frame_{f:010d}.jpg" for f in (17, 21, 25, 29)]
    assert refs[0].load().getpixel((0, 0))[0] == 17 * 8 % 256
    assert len({r.key for r in refs}) == 4
    # a pickled relevancy beside the annotations is preferred in "auto" mode
    with open(folder / epic.RELEVANCY_FILE, "wb") as f:
        pickle.dump(reference_relevancy() * 0 + 0.5, f)
    ds = epic.load_epic_mir(folder, frames_dir=frames)
    assert ds.meta["relevancy_source"].endswith(epic.RELEVANCY_FILE) and ds.relevancy[0, 0] == 0.5


def test_limit_keeps_queries_with_a_relevant_item(tmp_path, monkeypatch):
    # the 7-clip fixture is below the floor test_mir_limit.py covers: test the cut alone
    monkeypatch.setattr("ctxbench.families.multi_instance_retrieval.data.MIN_LIMIT_CLIPS", 1)
    folder = write_fixtures(tmp_path / "ann")
    frames = write_frames(tmp_path / "rgb_frames")
    ds = epic.load_epic_mir(folder, frames_dir=frames, limit=2)
    assert ds.vis_ids == ["P01_01_0", "P01_01_1"] and ds.txt_ids == ["P01_01_0", "P01_01_1"]
    assert (ds.relevancy == 1).any(axis=1).all() and (ds.relevancy == 1).any(axis=0).all()


def test_path_escape_from_ids_is_refused(tmp_path):
    clip = epic.FrameDirClip(tmp_path, epic.DEFAULT_FRAME_TEMPLATE, "..", "..", 1, 4, "bad")
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        clip.frames(2)
    clip = epic.FrameDirClip(tmp_path, "/etc/{video_id}", "P01", "passwd", 1, 4, "bad")
    with pytest.raises(PathEscapeError, match="absolute"):
        clip.frames(1)


def test_missing_data_raises_data_not_found_with_instructions(tmp_path):
    with pytest.raises(DataNotFound, match="epic-kitchens-100-annotations"):
        epic.load_epic_mir(tmp_path / "nothing", frames_dir=tmp_path / "frames")
    folder = write_fixtures(tmp_path / "ann")
    with pytest.raises(DataNotFound, match="neither frames_dir"):
        epic.load_epic_mir(folder, frames_dir=tmp_path / "frames", videos_dir=tmp_path / "videos")
    (tmp_path / "frames").mkdir()
    with pytest.raises(DataNotFound, match="frame_template"):
        epic.load_epic_mir(folder, frames_dir=tmp_path / "frames")


def write_video(path: Path, n_frames: int = 20, fps: int = 10):
    av = pytest.importorskip("av")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for k in range(1, n_frames + 1):
            image = Image.new("RGB", (32, 32), (k * 12, k * 12, k * 12))
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_clips_decode_the_sampled_frames(tmp_path):
    path = tmp_path / "videos" / "P01" / "videos" / "P01_01.MP4"
    write_video(path)
    images = epic.decode_video_frames(path, [1, 10, 20, 10])
    means = [np.asarray(im, dtype=float).mean() for im in images]
    assert means == pytest.approx([12, 120, 240, 120], abs=8)
    clip = epic.VideoFileClip(tmp_path / "videos", epic.DEFAULT_VIDEO_TEMPLATE, "P01", "P01_01", 5, 16)
    refs = clip.frames(3)                          # frames 7, 11, 15
    got = [np.asarray(r.load(), dtype=float).mean() for r in refs]
    assert got == pytest.approx([84, 132, 180], abs=8)
    assert len({r.key for r in refs}) == 3
    with pytest.raises(DatasetFormatError, match="past the end"):
        epic.decode_video_frames(path, [25])


def test_loader_uses_videos_when_frames_are_absent(tmp_path):
    folder = write_fixtures(tmp_path / "ann")
    for video in ("P01_01", "P02_03"):
        write_video(tmp_path / "videos" / video[:3] / "videos" / f"{video}.MP4", n_frames=30)
    ds = epic.load_epic_mir(folder, frames_dir=tmp_path / "none", videos_dir=tmp_path / "videos")
    assert ds.meta["frames"] == "video"
    assert np.asarray(ds.clips[4].frames(1)[0].load(), dtype=float).mean() == pytest.approx(
        11 * 12, abs=8)                            # clip 3..18: centre frame 11


# ----------------------------------------------------------------------------- real files
@pytest.mark.skipif(not (REAL / "EPIC_100_retrieval_test.csv").is_file(),
                    reason=f"official EPIC-100 retrieval annotations not found at {REAL}")
def test_real_official_files():
    clips = epic.read_clips(REAL / "EPIC_100_retrieval_test.csv")
    sentences = epic.read_sentences(REAL / "EPIC_100_retrieval_test_sentence.csv")
    assert (len(clips), len(sentences)) == (9668, 3842)
    clips_pkl = epic.read_clips(REAL / "EPIC_100_retrieval_test.pkl")
    sentences_pkl = epic.read_sentences(REAL / "EPIC_100_retrieval_test_sentence.pkl")
    assert clips_pkl.narration_id == clips.narration_id
    assert clips_pkl.noun_classes == clips.noun_classes
    assert np.array_equal(clips_pkl.verb_class, clips.verb_class)
    assert sentences_pkl.narration == sentences.narration
    # six caption rows name a clip whose narration differs (the pre-2023 bug)
    narration_of = dict(zip(clips.narration_id, clips.narration))
    odd = [j for j, (nid, text) in enumerate(zip(sentences.narration_id, sentences.narration))
           if narration_of[nid] != text]
    assert odd == [3835, 3836, 3838, 3839, 3840, 3841]
    rel = epic.derive_relevancy(clips, sentences)
    assert rel.shape == (9668, 3842)
    assert (rel == 1).any(axis=1).all() and (rel == 1).any(axis=0).all()   # no NaN queries
    # bit-for-bit against the official loops on a sample of clips
    row_of = {nid: i for i, nid in enumerate(clips.narration_id)}
    txt = [row_of[nid] for nid in sentences.narration_id]
    for i in np.random.default_rng(0).choice(9668, 40, replace=False):
        a = set(clips.noun_classes[i])
        want = [((1 / 1 if clips.verb_class[i] == clips.verb_class[t] else 0 / 2)
                 + len(a & set(clips.noun_classes[t])) / len(a | set(clips.noun_classes[t]))) / 2
                for t in txt]
        assert np.array_equal(rel[i], np.array(want))
