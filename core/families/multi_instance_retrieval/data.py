"""EPIC-KITCHENS-100 multi-instance retrieval (MIR): the dataset the family evaluates
and the loader of the real test set.

The annotation files and the official relevancy are read by :mod:`.annotations`,
the clips' frames by :mod:`.clips`; this module joins them into an
:class:`MIRDataset` and applies ``--limit``. The names of both modules are
re-exported here (``data`` is the family's "real formats" entry point).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...errors import DataNotFound
from ...io.paths import contained, option_path
from .annotations import (CLIP_COLUMNS, CLIPS_FILE, RELEVANCY_FILE, SENTENCE_COLUMNS,  # noqa: F401
                          SENTENCES_FILE, EpicClips, EpicSentences, derive_relevancy,
                          load_relevancy, read_clips, read_sentences, relevancy_from_classes,
                          sentence_classes)
from .clips import (DEFAULT_FRAME_TEMPLATE, DEFAULT_VIDEO_TEMPLATE, FrameDirClip,  # noqa: F401
                    VideoFileClip, decode_video_frames, sample_frame_indices, video_identity)

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


MIN_LIMIT_CLIPS = 24   # below this a ranking over soft relevance is nearly all relevant


def limit_indices(relevancy: np.ndarray, limit: int | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``--limit``: the first ``limit`` clips (raised to :data:`MIN_LIMIT_CLIPS`: with
    a handful of clips every item is partly relevant and chance scores mAP near 1),
    the captions with R == 1 to one of them, then the clips with R == 1 to one of
    those captions (so every query of both directions keeps a relevant item, as on
    the full test set). ``None`` when nothing is cut."""
    if limit is None:
        return None
    limit = max(int(limit), MIN_LIMIT_CLIPS)
    if limit >= relevancy.shape[0]:
        return None
    rows = np.arange(limit)
    cols = np.flatnonzero((relevancy[rows] == 1).any(axis=0))
    rows = rows[(relevancy[np.ix_(rows, cols)] == 1).any(axis=1)]
    return rows, cols


def _existing(folder: Path, name: str) -> Path | None:
    """``folder/name``, or the same file with the other official suffix (.csv <-> .pkl)."""
    path = contained(folder, name, f"annotation file name {name!r}")
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
    """The real test set (see :mod:`.annotations` and :mod:`.clips`); raises
    DataNotFound with instructions when the annotation files or the frames/videos
    are absent.

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
    rel, rel_source = _relevancy(annotations_dir, relevancy, clips, sentences)
    cut = limit_indices(rel, limit)
    if cut is not None:
        clips, sentences, rel = clips.subset(cut[0]), sentences.subset(cut[1]), rel[np.ix_(*cut)]
    if use_frames:
        sources = _frame_sources(clips, frames, frame_template, how)
    else:
        sources = _video_sources(clips, videos, video_template, how)
    return MIRDataset(
        name="epic100_mir", vis_ids=list(clips.narration_id), txt_ids=list(sentences.narration_id),
        captions=list(sentences.narration), relevancy=rel, clips=sources,
        meta={"relevancy_source": rel_source, "clips_file": str(clips_path),
              "sentences_file": str(sentences_path), "frames": "frames" if use_frames else "video"})


def _relevancy(annotations_dir: Path, relevancy: str, clips: EpicClips,
               sentences: EpicSentences) -> tuple[np.ndarray, str]:
    """The relevancy matrix the ``relevancy`` option asks for, and where it came from."""
    shape = (len(clips), len(sentences))
    if relevancy == "derive":
        return derive_relevancy(clips, sentences), "derived"
    if relevancy == "auto":
        candidate = annotations_dir / RELEVANCY_FILE
        if candidate.is_file():
            return load_relevancy(candidate, shape), str(candidate)
        return derive_relevancy(clips, sentences), "derived"
    path = Path(relevancy)
    path = path if path.is_absolute() else contained(annotations_dir, relevancy,
                                                      "dataset option relevancy")
    return load_relevancy(path, shape), str(path)


def _frame_sources(clips: EpicClips, frames: Path, template: str, how: str) -> list[FrameDirClip]:
    sources = [FrameDirClip(frames, template, p, v, int(a), int(b), nid)
               for p, v, a, b, nid in zip(clips.participant_id, clips.video_id, clips.start_frame,
                                          clips.stop_frame, clips.narration_id)]
    first = sources[0].frame_path(int(clips.start_frame[0]))
    if not first.is_file():
        raise DataNotFound(f"frames_dir {frames} exists but {first} (first frame of clip "
                           f"{clips.narration_id[0]}) does not; set the dataset option "
                           f"frame_template to your layout (now {template!r}). {how}")
    return sources


def _video_sources(clips: EpicClips, videos: Path, template: str, how: str) -> list[VideoFileClip]:
    identities: dict = {}
    sources = [VideoFileClip(videos, template, p, v, a, b, nid, identities)
               for p, v, a, b, nid in zip(clips.participant_id, clips.video_id, clips.start_frame,
                                          clips.stop_frame, clips.narration_id)]
    if not sources[0].path().is_file():
        raise DataNotFound(f"videos_dir {videos} exists but {sources[0].path()} does not; set "
                           f"the dataset option video_template (now {template!r}). {how}")
    return sources


def load_from_options(options: dict, ctx) -> MIRDataset:
    """The ``epic100_mir`` loader: folders are task-relative
    (:func:`ctxbench.io.paths.option_path`), ``--limit`` as :func:`limit_indices`."""
    if "annotations_dir" not in options:
        raise ValueError("dataset option annotations_dir is required")
    return load_epic_mir(
        option_path(options, "annotations_dir", ctx), frames_dir=option_path(options, "frames_dir", ctx),
        videos_dir=option_path(options, "videos_dir", ctx),
        clips_file=options.get("clips_file", CLIPS_FILE),
        sentences_file=options.get("sentences_file", SENTENCES_FILE),
        relevancy=str(options.get("relevancy", "auto")),
        frame_template=options.get("frame_template", DEFAULT_FRAME_TEMPLATE),
        video_template=options.get("video_template", DEFAULT_VIDEO_TEMPLATE),
        limit=getattr(ctx, "limit", None))
