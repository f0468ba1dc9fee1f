"""EPIC-KITCHENS-100 multi-instance retrieval (MIR) data: annotations, relevancy, clips.

Official files (github.com/epic-kitchens/epic-kitchens-100-annotations, folder
``retrieval_annotations/``; licence CC BY-NC 4.0):

- ``EPIC_100_retrieval_test.csv`` / ``.pkl``: one row per clip (9,668), columns
  narration_id, participant_id, video_id, narration_timestamp, start_timestamp,
  stop_timestamp, start_frame, stop_frame, narration, verb, verb_class, noun,
  noun_class, all_nouns, all_noun_classes. The ``.pkl`` is a pandas DataFrame
  indexed by narration_id; in the CSV the list columns are Python literals.
- ``EPIC_100_retrieval_test_sentence.csv`` / ``.pkl``: one row per caption
  (3,842), columns narration_id, narration.
- ``caption_relevancy_EPIC_100_retrieval_test.pkl`` (distributed with the
  challenge baselines, not in the annotations repository): a pickled float
  array [n_clips, n_captions].

Pickles are read only through :mod:`ctxbench.io.safe_pickle`.

Relevancy (``src/scripts/create_relevancy_files.py`` in
github.com/mwray/Joint-Part-of-Speech-Embeddings)::

    R[v, s] = (verb_iou + noun_iou) / 2,
    verb_iou = 1 if verb_class(v) == verb_class(s) else 0   (computed as 1/1 or 0/2)
    noun_iou = |N(v) & N(s)| / |N(v) | N(s)|                (N = set of all_noun_classes)

A caption's classes are those of the *clip its narration_id names*: the
official ``create_sentence_df`` takes ``verb_class`` and ``all_noun_classes``
from ``subset_df.iloc[0]``, the clip whose index it stores as the caption's
narration_id. For the first 3,835 captions that clip is the first one carrying
the caption's narration; for the last rows (added for action classes without a
caption of their own) a bug fixed in 2023 (commit d3e138b, "Fix narrations in
create_sentence_df()") stored the narration of the *previous* row, so six
official caption rows carry a narration_id whose clip has a different
narration (e.g. P22_04_144 "wash cooker": its clip says "cut slice"). The
released files were made before the fix; looking captions up by narration_id
reproduces them, looking them up by text would not. We compute the same
floating-point operations in the same order, so the derived matrix equals the
official one bit for bit.

Clips. Frames come from the official frame layout
(``rgb_frames/<participant>/<video>/frame_0000000001.jpg``, 1-based, the
``start_frame``..``stop_frame`` range inclusive) or are decoded from the video
files with PyAV (FFmpeg bindings, maintained, already torchvision's optional
video backend). ``n`` frames are sampled uniformly: the centres of ``n`` equal
segments of the range (the TSN test-time convention used by EPIC baselines).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...errors import DataNotFound, DatasetFormatError, PathEscapeError
from ...inputs import ImageRef

CLIPS_FILE = "EPIC_100_retrieval_test.csv"
SENTENCES_FILE = "EPIC_100_retrieval_test_sentence.csv"
RELEVANCY_FILE = "caption_relevancy_EPIC_100_retrieval_test.pkl"
CLIP_COLUMNS = ("narration_id", "participant_id", "video_id", "start_frame", "stop_frame",
                "narration", "verb_class", "all_noun_classes")
SENTENCE_COLUMNS = ("narration_id", "narration")
DEFAULT_FRAME_TEMPLATE = "{participant_id}/{video_id}/frame_{frame:010d}.jpg"
DEFAULT_VIDEO_TEMPLATE = "{participant_id}/videos/{video_id}.MP4"

OBTAIN = (
    "EPIC-KITCHENS-100 multi-instance retrieval test set. 1) Annotations: `git clone "
    "https://github.com/epic-kitchens/epic-kitchens-100-annotations` and copy "
    "retrieval_annotations/EPIC_100_retrieval_test.csv (or .pkl) and "
    "EPIC_100_retrieval_test_sentence.csv (or .pkl) into {annotations}. Optionally add the "
    "challenge's caption_relevancy_EPIC_100_retrieval_test.pkl (otherwise the relevancy is "
    "derived exactly as the official script does). 2) Frames or videos (licence CC BY-NC 4.0, "
    "https://epic-kitchens.github.io): with the download scripts "
    "(github.com/epic-kitchens/epic-kitchens-download-scripts) fetch the RGB frames and extract "
    "them so that {frames}/<participant>/<video>/frame_0000000001.jpg exists, or fetch the videos "
    "so that {videos}/<participant>/videos/<video>.MP4 exists (decoding needs `pip install av`). "
    "Set CTXBENCH_DATA to the folder that holds epic100/ if it is not ~/ctxbench-data.")


# ----------------------------------------------------------------------------- tables
@dataclass
class EpicClips:
    """The clip table (one row per video segment), validated and typed."""

    source: str
    narration_id: list[str]
    participant_id: list[str]
    video_id: list[str]
    start_frame: np.ndarray          # int64, 1-based, inclusive
    stop_frame: np.ndarray           # int64, inclusive
    narration: list[str]
    verb_class: np.ndarray           # int64
    noun_classes: list[tuple[int, ...]]

    def __len__(self) -> int:
        return len(self.narration_id)

    def subset(self, rows: Sequence[int]) -> "EpicClips":
        rows = list(rows)
        pick = lambda xs: [xs[i] for i in rows]  # noqa: E731
        return EpicClips(self.source, pick(self.narration_id), pick(self.participant_id),
                         pick(self.video_id), self.start_frame[rows], self.stop_frame[rows],
                         pick(self.narration), self.verb_class[rows], pick(self.noun_classes))


@dataclass
class EpicSentences:
    """The caption table: captions and the narration_id each one was taken from."""

    source: str
    narration_id: list[str]
    narration: list[str]

    def __len__(self) -> int:
        return len(self.narration_id)

    def subset(self, rows: Sequence[int]) -> "EpicSentences":
        rows = list(rows)
        return EpicSentences(self.source, [self.narration_id[i] for i in rows],
                             [self.narration[i] for i in rows])


def _read_table(path: Path, columns: Sequence[str]):
    """A DataFrame with ``narration_id`` as a column, from CSV or a pandas pickle."""
    import pandas as pd

    from ...io import safe_pickle

    if not path.is_file():
        raise DatasetFormatError(f"{path}: file not found")
    if path.suffix.lower() == ".pkl":
        df = safe_pickle.load(path)
        if not isinstance(df, pd.DataFrame):
            raise DatasetFormatError(f"{path}: expected a pickled pandas DataFrame, "
                                     f"found {type(df).__name__}")
        if "narration_id" not in df.columns:
            if df.index.name not in ("narration_id", "index", None) or \
                    isinstance(df.index, pd.RangeIndex):
                raise DatasetFormatError(f"{path}: no narration_id column or index "
                                         f"(index is named {df.index.name!r})")
            df = df.rename_axis("narration_id").reset_index()
        line_of = lambda i: f"row {i} (0-based)"  # noqa: E731
    elif path.suffix.lower() == ".csv":
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except Exception as exc:  # pandas' parser errors carry the line number
            raise DatasetFormatError(f"{path}: not a readable CSV ({exc})") from exc
        line_of = lambda i: f"line {i + 2}"  # noqa: E731  (header is line 1)
    else:
        raise DatasetFormatError(f"{path}: unsupported file type; use the official .csv or .pkl")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetFormatError(f"{path}: missing column(s) {missing}; expected the official "
                                 f"columns {list(columns)} (see ctxbench.families.multi_instance_retrieval.data)")
    return df, line_of


def _ints(values, path: Path, column: str, line_of) -> np.ndarray:
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        try:
            if isinstance(v, (float, np.floating)) and not float(v).is_integer():
                raise ValueError
            out[i] = int(v)
        except (TypeError, ValueError):
            raise DatasetFormatError(f"{path}: {line_of(i)}, field '{column}': expected an "
                                     f"integer, got {v!r}") from None
    return out


def _class_list(value: Any, path: Path, column: str, where: str) -> tuple[int, ...]:
    """``[2, 10]`` (a list, or its text as written in the CSV) -> (2, 10)."""
    items = value
    if isinstance(value, str):
        try:
            items = json.loads(value)
        except json.JSONDecodeError:
            try:
                items = ast.literal_eval(value)   # literals only: never executes code
            except (ValueError, SyntaxError):
                items = None
    if isinstance(items, np.ndarray):
        items = items.tolist()
    if not isinstance(items, (list, tuple)) or not items or not all(
            isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in items):
        raise DatasetFormatError(f"{path}: {where}, field '{column}': expected a non-empty list "
                                 f"of integer class ids such as [2, 10], got {value!r}")
    return tuple(int(x) for x in items)


def _strings(values, path: Path, column: str, line_of) -> list[str]:
    out = []
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v:
            raise DatasetFormatError(f"{path}: {line_of(i)}, field '{column}': expected a "
                                     f"non-empty string, got {v!r}")
        out.append(v)
    return out


def _unique_ids(ids: list[str], path: Path, line_of) -> None:
    seen: dict[str, int] = {}
    for i, x in enumerate(ids):
        if x in seen:
            raise DatasetFormatError(f"{path}: {line_of(i)}: narration_id {x!r} repeats "
                                     f"{line_of(seen[x])}; ids must be unique")
        seen[x] = i


def read_clips(path: str | Path) -> EpicClips:
    """Read ``EPIC_100_retrieval_test.csv`` or ``.pkl`` (official columns, see module doc)."""
    path = Path(path)
    df, line_of = _read_table(path, CLIP_COLUMNS)
    ids = _strings(df["narration_id"].tolist(), path, "narration_id", line_of)
    _unique_ids(ids, path, line_of)
    start = _ints(df["start_frame"].tolist(), path, "start_frame", line_of)
    stop = _ints(df["stop_frame"].tolist(), path, "stop_frame", line_of)
    bad = np.flatnonzero((start < 1) | (stop < start))
    if bad.size:
        i = int(bad[0])
        raise DatasetFormatError(f"{path}: {line_of(i)}: frame range {start[i]}..{stop[i]} is "
                                 f"invalid (need 1 <= start_frame <= stop_frame)")
    nouns = [_class_list(v, path, "all_noun_classes", line_of(i))
             for i, v in enumerate(df["all_noun_classes"].tolist())]
    return EpicClips(str(path), ids,
                     _strings(df["participant_id"].tolist(), path, "participant_id", line_of),
                     _strings(df["video_id"].tolist(), path, "video_id", line_of), start, stop,
                     _strings(df["narration"].tolist(), path, "narration", line_of),
                     _ints(df["verb_class"].tolist(), path, "verb_class", line_of), nouns)


def read_sentences(path: str | Path) -> EpicSentences:
    """Read ``EPIC_100_retrieval_test_sentence.csv`` or ``.pkl``."""
    path = Path(path)
    df, line_of = _read_table(path, SENTENCE_COLUMNS)
    ids = _strings(df["narration_id"].tolist(), path, "narration_id", line_of)
    _unique_ids(ids, path, line_of)
    return EpicSentences(str(path), ids, _strings(df["narration"].tolist(), path, "narration", line_of))


# ----------------------------------------------------------------------------- relevancy
def sentence_classes(clips: EpicClips, sentences: EpicSentences) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Each caption's (verb_class, noun classes): those of the clip its narration_id
    names (official create_sentence_df; see the module docstring)."""
    row_of = {nid: i for i, nid in enumerate(clips.narration_id)}
    rows = []
    for j, nid in enumerate(sentences.narration_id):
        if nid not in row_of:
            raise DatasetFormatError(
                f"{sentences.source}: caption row {j} ({sentences.narration[j]!r}) has narration_id "
                f"{nid!r}, which is not a clip of {clips.source}; the official relevancy takes a "
                f"caption's classes from that clip, so the two files must come from the same split")
        rows.append(row_of[nid])
    return clips.verb_class[rows], [clips.noun_classes[i] for i in rows]


def relevancy_from_classes(vis_verbs: Sequence[int], vis_nouns: Sequence[Sequence[int]],
                           txt_verbs: Sequence[int], txt_nouns: Sequence[Sequence[int]],
                           chunk_rows: int = 2048) -> np.ndarray:
    """R [n_vis, n_txt] float64 = (verb_iou + noun_iou) / 2 (official formula).

    Vectorised: noun-set intersections are counted once per pair of *distinct*
    noun sets (as the official script does) by a 0/1 matrix product, then
    expanded by fancy indexing, in row chunks."""
    vis_verbs = np.asarray(vis_verbs, dtype=np.int64)
    txt_verbs = np.asarray(txt_verbs, dtype=np.int64)
    if len(vis_verbs) != len(vis_nouns) or len(txt_verbs) != len(txt_nouns):
        raise ValueError("verbs and noun lists must have the same length on each side")
    sets: dict[frozenset, int] = {}
    vis_set = np.array([sets.setdefault(frozenset(n), len(sets)) for n in vis_nouns], dtype=np.intp)
    txt_set = np.array([sets.setdefault(frozenset(n), len(sets)) for n in txt_nouns], dtype=np.intp)
    if any(len(s) == 0 for s in sets):
        raise ValueError("every clip and caption needs at least one noun class "
                         "(the official IoU would be 0/0)")
    classes = sorted(set().union(*sets))
    col = {c: i for i, c in enumerate(classes)}
    hot = np.zeros((len(sets), len(classes)), dtype=np.float64)
    for s, i in sets.items():
        hot[i, [col[c] for c in s]] = 1.0
    inter = hot @ hot.T                      # exact small integers
    size = hot.sum(axis=1)
    union = size[:, None] + size[None, :] - inter
    noun_iou = inter / union                 # the official int / int in float64
    out = np.empty((len(vis_verbs), len(txt_verbs)), dtype=np.float64)
    txt_cols = noun_iou[:, txt_set]          # [n_sets, n_txt]
    for a in range(0, len(vis_verbs), chunk_rows):
        b = min(len(vis_verbs), a + chunk_rows)
        block = out[a:b]
        np.take(txt_cols, vis_set[a:b], axis=0, out=block, mode="clip")  # "raise" buffers `out`
        block += (vis_verbs[a:b, None] == txt_verbs[None, :])   # verb_iou: 1.0 or 0.0
        block /= 2
    return out


def derive_relevancy(clips: EpicClips, sentences: EpicSentences) -> np.ndarray:
    """The official caption relevancy for these two tables."""
    txt_verbs, txt_nouns = sentence_classes(clips, sentences)
    return relevancy_from_classes(clips.verb_class, clips.noun_classes, txt_verbs, txt_nouns)


def load_relevancy(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A pickled relevancy matrix (restricted unpickler), checked against ``shape``."""
    from ...io import safe_pickle

    path = Path(path)
    obj = safe_pickle.load(path)
    if hasattr(obj, "to_numpy") and not isinstance(obj, np.ndarray):  # a DataFrame
        obj = obj.to_numpy()
    if not isinstance(obj, np.ndarray) or obj.ndim != 2 or not (
            np.issubdtype(obj.dtype, np.floating) or np.issubdtype(obj.dtype, np.integer)):
        raise DatasetFormatError(f"{path}: expected a pickled 2-D float array [clips, captions], "
                                 f"found {type(obj).__name__} {getattr(obj, 'shape', '')}")
    if tuple(obj.shape) != tuple(shape):
        raise DatasetFormatError(f"{path}: relevancy has shape {obj.shape} but the annotation files "
                                 f"give {shape[0]} clips x {shape[1]} captions; use the relevancy "
                                 f"file of the same split (or remove it to derive the matrix)")
    obj = obj.astype(np.float64, copy=False)
    if not np.isfinite(obj).all() or obj.min() < 0 or obj.max() > 1:
        raise DatasetFormatError(f"{path}: relevancy values must be finite and in [0, 1]")
    return obj


# ----------------------------------------------------------------------------- clips
def sample_frame_indices(start: int, stop: int, n: int) -> list[int]:
    """``n`` frame numbers spread uniformly over ``start..stop`` (inclusive): the
    centre of each of ``n`` equal segments. Short clips repeat frames."""
    if n < 1:
        raise ValueError("n_frames must be >= 1")
    length = stop - start + 1
    return [int(start + ((2 * i + 1) * length) // (2 * n)) for i in range(n)]


def _inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative``, refusing anything that leaves ``root`` lexically."""
    if os.path.isabs(relative):
        raise PathEscapeError(f"{what}: {relative!r} is absolute; it must stay inside {root}")
    joined = os.path.normpath(os.path.join(str(root), relative))
    base = os.path.normpath(str(root))
    if os.path.commonpath([joined, base]) != base:
        raise PathEscapeError(f"{what}: {relative!r} points outside the dataset root {root}")
    return Path(joined)


def _template_fields(template: str, fields: dict[str, Any], what: str) -> str:
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise DatasetFormatError(f"{what}: template {template!r} is invalid ({exc}); allowed "
                                 f"fields: {', '.join(fields)}") from None


@dataclass
class FrameDirClip:
    """A clip read from extracted frames: ``root / template.format(...)``."""

    root: Path
    template: str
    participant_id: str
    video_id: str
    start_frame: int
    stop_frame: int
    narration_id: str = ""

    def frame_path(self, frame: int) -> Path:
        fields = {"participant_id": self.participant_id, "video_id": self.video_id, "frame": frame,
                  "narration_id": self.narration_id}
        rel = _template_fields(self.template, fields, f"clip {self.narration_id}")
        return _inside(self.root, rel, f"clip {self.narration_id}")

    def frames(self, n: int) -> list[ImageRef]:
        return [ImageRef.from_path(self.frame_path(f))
                for f in sample_frame_indices(self.start_frame, self.stop_frame, n)]


def video_identity(path: Path, block: int = 1 << 16) -> str:
    """Content key of a (large) video file without reading it all: size, first
    and last 64 KiB."""
    size = path.stat().st_size
    h = hashlib.sha256(f"video\0{size}\0".encode())
    with open(path, "rb") as f:
        h.update(f.read(block))
        if size > block:
            f.seek(max(block, size - block))
            h.update(f.read(block))
    return h.hexdigest()


def decode_video_frames(path: Path, frame_numbers: Sequence[int]):
    """PIL frames at 1-based ``frame_numbers`` (frame k at time (k - 1) / fps, the
    numbering of EPIC's extracted frames). Seeks once to the first one, then decodes
    forward; a number past the end of the stream is an error naming the file."""
    try:
        import av
    except ImportError:
        raise DataNotFound("decoding EPIC videos needs PyAV: `pip install av` "
                           "(a ctxbench dependency: reinstall with `pip install -e .`), "
                           "or use extracted frames "
                           "(dataset option frames_dir)") from None
    wanted = sorted(set(int(f) for f in frame_numbers))
    got: dict[int, Any] = {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise DatasetFormatError(f"{path}: the video stream has no frame rate")
            fps = float(rate)
            base = stream.start_time or 0
            first_time = (wanted[0] - 1) / fps
            container.seek(int(base + first_time / stream.time_base), stream=stream, backward=True)
            pending = list(wanted)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                number = int(round(float((frame.pts - base) * stream.time_base) * fps)) + 1
                while pending and pending[0] <= number:
                    got[pending.pop(0)] = frame.to_image()
                if not pending:
                    break
    except (av.error.FFmpegError, OSError) as exc:
        raise DatasetFormatError(f"{path}: cannot decode video ({exc})") from exc
    if len(got) != len(wanted):
        missing = [f for f in wanted if f not in got]
        raise DatasetFormatError(f"{path}: frame(s) {missing[:5]} are past the end of the video; "
                                 f"check start_frame/stop_frame against the video's frame rate")
    return [got[int(f)] for f in frame_numbers]


class VideoFileClip:
    """A clip decoded from a video file with PyAV. The sampled frames of a clip are
    decoded together on first use (one seek) and released once all were handed out."""

    def __init__(self, root: Path, template: str, participant_id: str, video_id: str,
                 start_frame: int, stop_frame: int, narration_id: str = "",
                 identities: dict | None = None):
        self.root, self.template = Path(root), template
        self.participant_id, self.video_id, self.narration_id = participant_id, video_id, narration_id
        self.start_frame, self.stop_frame = int(start_frame), int(stop_frame)
        self._identities = identities if identities is not None else {}  # shared per dataset
        self._decoded: dict[int, Any] = {}
        self._served: set[int] = set()
        self._lock = threading.Lock()

    def path(self) -> Path:
        fields = {"participant_id": self.participant_id, "video_id": self.video_id,
                  "narration_id": self.narration_id}
        rel = _template_fields(self.template, fields, f"clip {self.narration_id}")
        return _inside(self.root, rel, f"clip {self.narration_id}")

    def _video_key(self) -> str:
        path = self.path()
        if path not in self._identities:
            try:
                self._identities[path] = video_identity(path)
            except FileNotFoundError:
                raise DatasetFormatError(f"video not found: {path} (clip {self.narration_id})") from None
        return self._identities[path]

    def _frame(self, numbers: tuple[int, ...], number: int):
        with self._lock:
            if number not in self._decoded:
                self._decoded = dict(zip(numbers, decode_video_frames(self.path(), numbers)))
                self._served = set()
            image = self._decoded[number]
            self._served.add(number)
            if self._served >= set(self._decoded):
                self._decoded = {}
            return image

    def frames(self, n: int) -> list[ImageRef]:
        numbers = tuple(sample_frame_indices(self.start_frame, self.stop_frame, n))
        return [ImageRef(lambda f=f: hashlib.sha256(f"{self._video_key()}\0{f}".encode()).hexdigest(),
                         lambda f=f: self._frame(numbers, f), label=f"{self.path()}#frame{f}")
                for f in numbers]


# ----------------------------------------------------------------------------- dataset
@dataclass
class MIRDataset:
    """What the multi_instance_retrieval family evaluates.

    ``clips[i].frames(n)`` gives the ImageRefs of clip ``vis_ids[i]``;
    ``captions[j]`` is caption ``txt_ids[j]``; ``relevancy`` is [n_vis, n_txt]."""

    name: str
    vis_ids: list[str]
    txt_ids: list[str]
    captions: list[str]
    relevancy: np.ndarray
    clips: list[Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        n_vis, n_txt = len(self.vis_ids), len(self.txt_ids)
        if self.relevancy.shape != (n_vis, n_txt) or len(self.clips) != n_vis \
                or len(self.captions) != n_txt:
            raise ValueError(f"{self.name}: inconsistent sizes: {n_vis} clips, {len(self.clips)} "
                             f"clip sources, {n_txt} captions ({len(self.captions)} texts), "
                             f"relevancy {self.relevancy.shape}")

    def subset(self, rows: Sequence[int], cols: Sequence[int]) -> "MIRDataset":
        return MIRDataset(self.name, [self.vis_ids[i] for i in rows], [self.txt_ids[j] for j in cols],
                          [self.captions[j] for j in cols], self.relevancy[np.ix_(rows, cols)],
                          [self.clips[i] for i in rows], dict(self.meta))


def limit_indices(relevancy: np.ndarray, limit: int | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``--limit``: the first ``limit`` clips, the captions with R == 1 to one of
    them, then the clips with R == 1 to one of those captions (so every query of
    both directions keeps a relevant item, as on the full test set). ``None`` when
    nothing is cut."""
    if limit is None or limit >= relevancy.shape[0]:
        return None
    rows = np.arange(max(1, int(limit)))
    cols = np.flatnonzero((relevancy[rows] == 1).any(axis=0))
    rows = rows[(relevancy[np.ix_(rows, cols)] == 1).any(axis=1)]
    return rows, cols


def _existing(folder: Path, name: str) -> Path | None:
    """``folder/name``, or the same file with the other official suffix (.csv <-> .pkl)."""
    path = _inside(folder, name, "annotations")
    if path.is_file():
        return path
    other = path.with_suffix(".pkl" if path.suffix.lower() == ".csv" else ".csv")
    return other if other.is_file() else None


def load_epic_mir(annotations_dir: str | Path, *, frames_dir: str | Path | None = None,
                  videos_dir: str | Path | None = None, clips_file: str = CLIPS_FILE,
                  sentences_file: str = SENTENCES_FILE, relevancy: str = "auto",
                  frame_template: str = DEFAULT_FRAME_TEMPLATE,
                  video_template: str = DEFAULT_VIDEO_TEMPLATE,
                  limit: int | None = None) -> MIRDataset:
    """The real test set (see module docstring); raises DataNotFound with
    instructions when the annotation files or the frames/videos are absent.

    ``relevancy``: ``"auto"`` (the pickled matrix if ``RELEVANCY_FILE`` is in
    ``annotations_dir``, else derived), ``"derive"``, or a file name/path."""
    annotations_dir = Path(annotations_dir)
    frames = Path(frames_dir) if frames_dir else None
    videos = Path(videos_dir) if videos_dir else None
    how = OBTAIN.format(annotations=annotations_dir, frames=frames or "<frames_dir>",
                        videos=videos or "<videos_dir>")
    clips_path = _existing(annotations_dir, clips_file)
    sentences_path = _existing(annotations_dir, sentences_file)
    if clips_path is None or sentences_path is None:
        missing = clips_file if clips_path is None else sentences_file
        raise DataNotFound(f"{annotations_dir / missing} not found. {how}")
    use_frames = frames is not None and frames.is_dir()
    use_videos = not use_frames and videos is not None and videos.is_dir()
    if not (use_frames or use_videos):
        raise DataNotFound(f"no clip frames: neither frames_dir ({frames}) nor videos_dir "
                           f"({videos}) is a folder. {how}")
    clips = read_clips(clips_path)
    sentences = read_sentences(sentences_path)
    shape = (len(clips), len(sentences))
    if relevancy == "derive":
        rel, rel_source = derive_relevancy(clips, sentences), "derived"
    elif relevancy == "auto":
        candidate = annotations_dir / RELEVANCY_FILE
        if candidate.is_file():
            rel, rel_source = load_relevancy(candidate, shape), str(candidate)
        else:
            rel, rel_source = derive_relevancy(clips, sentences), "derived"
    else:
        path = Path(relevancy)
        path = path if path.is_absolute() else _inside(annotations_dir, relevancy, "relevancy")
        rel, rel_source = load_relevancy(path, shape), str(path)
    cut = limit_indices(rel, limit)
    if cut is not None:
        clips, sentences, rel = clips.subset(cut[0]), sentences.subset(cut[1]), rel[np.ix_(*cut)]
    if use_frames:
        sources = [FrameDirClip(frames, frame_template, p, v, int(a), int(b), nid)
                   for p, v, a, b, nid in zip(clips.participant_id, clips.video_id, clips.start_frame,
                                              clips.stop_frame, clips.narration_id)]
        first = sources[0].frame_path(int(clips.start_frame[0]))
        if not first.is_file():
            raise DataNotFound(f"frames_dir {frames} exists but {first} (first frame of clip "
                               f"{clips.narration_id[0]}) does not; set the dataset option "
                               f"frame_template to your layout (now {frame_template!r}). {how}")
    else:
        identities: dict = {}
        sources = [VideoFileClip(videos, video_template, p, v, a, b, nid, identities)
                   for p, v, a, b, nid in zip(clips.participant_id, clips.video_id, clips.start_frame,
                                              clips.stop_frame, clips.narration_id)]
        if not sources[0].path().is_file():
            raise DataNotFound(f"videos_dir {videos} exists but {sources[0].path()} does not; set "
                               f"the dataset option video_template (now {video_template!r}). {how}")
    return MIRDataset(
        name="epic100_mir", vis_ids=list(clips.narration_id), txt_ids=list(sentences.narration_id),
        captions=list(sentences.narration), relevancy=rel, clips=sources,
        meta={"relevancy_source": rel_source, "clips_file": str(clips_path),
              "sentences_file": str(sentences_path), "frames": "frames" if use_frames else "video"})
