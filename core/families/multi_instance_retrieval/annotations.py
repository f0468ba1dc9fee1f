"""EPIC-KITCHENS-100 multi-instance retrieval (MIR) annotations: the clip and caption tables, the relevancy.

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
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...errors import DatasetFormatError

CLIPS_FILE = "EPIC_100_retrieval_test.csv"
SENTENCES_FILE = "EPIC_100_retrieval_test_sentence.csv"
RELEVANCY_FILE = "caption_relevancy_EPIC_100_retrieval_test.pkl"
CLIP_COLUMNS = ("narration_id", "participant_id", "video_id", "start_frame", "stop_frame",
                "narration", "verb_class", "all_noun_classes")
SENTENCE_COLUMNS = ("narration_id", "narration")


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
