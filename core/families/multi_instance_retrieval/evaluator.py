"""multi_instance_retrieval: EPIC-KITCHENS-100 MIR (SPEC §3; seeds/002_*).

Clips are embedded from ``n_frames`` uniformly sampled frames: a backend with a
video encoder (``capabilities.video``) gets the frames as a clip; any other is
evaluated on the mean of its L2-normalised frame embeddings
(``CachedEncoder.videos``). Optional test-time augmentation (``tta_hflip``,
``tta_scales``) embeds each clip once per transform (a transformed frame is its
own ImageRef with its own cache key) and averages the L2-normalised clip
embeddings. Captions are embedded as text. Similarity = cosine.

Metrics (:mod:`ctxbench.families.multi_instance_retrieval.metrics`, exactly the official mAP.py / nDCG.py):
mAP and nDCG for V->T (clips query captions), T->V, and their average, as
fractions (the paper prints percentages: 66.78 mAP / 82.08 nDCG average). 95%
CIs: iid bootstrap over the queries of each direction (``cluster_means``); the
average's CI combines independent resamples of the two directions. Queries
without a relevant item give NaN, as in the official code (``nan_policy:
propagate``); ``nan_policy: omit`` averages over the others (the real test set
and the embedded one have none).

Artifact: ``mir_similarity.npz`` (``sim`` float32 [n_vis, n_txt], ``vis_ids``,
``txt_ids``) in the cell's artifact folder, from which ``ctxbench export-epic``
(:func:`ctxbench.families.multi_instance_retrieval.export.export_submission`) writes the challenge file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.nn.functional import normalize

from .export import SIMILARITY_ARTIFACT
from ...hooks import hookimpl
from ...results import MetricValue
from ...registrations import FamilySpec, LoaderSpec, MetricSpec
from ..contract import EvalRequest, FamilyOutput

FAMILY = "multi_instance_retrieval"
METRICS = ("map_avg", "ndcg_avg", "map_v2t", "map_t2v", "ndcg_v2t", "ndcg_t2v")
PROTOCOL_DEFAULTS = {
    "n_frames": 8,               # frames sampled uniformly per clip
    "tta_hflip": False,          # also embed horizontally flipped frames
    "tta_scales": [1.0],         # centre crops (fraction of the side) to average over
    "bootstrap_resamples": 10_000,
    "nan_policy": "propagate",   # official: a query with no relevant item makes the mean NaN
}


# ----------------------------------------------------------------------------- TTA
def _flip(image):
    from PIL import ImageOps
    return ImageOps.mirror(image)


def _centre_crop(image, scale: float):
    """The central ``scale`` fraction of each side, resized back to the original size."""
    w, h = image.size
    cw, ch = max(1, round(w * scale)), max(1, round(h * scale))
    left, top = (w - cw) // 2, (h - ch) // 2
    from PIL import Image
    return image.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BICUBIC)


def transform_ref(ref, flip: bool, scale: float):
    """A new ImageRef for ``ref`` under (flip, centre-crop scale); its key differs
    per transform, so the cache never mixes them. Identity returns ``ref``."""
    from ...inputs import ImageRef
    if not flip and scale == 1.0:
        return ref
    tag = f"tta:flip={int(flip)}:scale={scale!r}"

    def load():
        image = ref.load()
        if scale != 1.0:
            image = _centre_crop(image, scale)
        return _flip(image) if flip else image

    return ImageRef(lambda: hashlib.sha256(f"{ref.key}\0{tag}".encode()).hexdigest(), load,
                    label=f"{ref.label or ref.key[:12]}[{tag}]")


def tta_transforms(protocol: dict) -> list[tuple[bool, float]]:
    scales = protocol["tta_scales"]
    if not isinstance(scales, (list, tuple)) or not scales or not all(
            isinstance(s, (int, float)) and 0 < float(s) <= 1 for s in scales):
        raise ValueError("protocol.tta_scales must be a non-empty list of crop fractions in (0, 1], "
                         "e.g. [1.0, 0.875]")
    flips = (False, True) if protocol["tta_hflip"] else (False,)
    return [(f, float(s)) for s in scales for f in flips]


def clip_embeddings(encoder, clips, n_frames: int, transforms) -> torch.Tensor:
    """[n_clips, D] L2-normalised: per transform the backend's clip embedding (video
    encoder, or mean of normalised frame embeddings), normalised, averaged, normalised."""
    frames = [clip.frames(n_frames) for clip in clips]
    total = None
    for flip, scale in transforms:
        refs = [[transform_ref(r, flip, scale) for r in clip] for clip in frames]
        emb = normalize(encoder.videos(refs).float(), dim=-1)
        total = emb if total is None else total + emb
    return normalize(total, dim=-1)


# ----------------------------------------------------------------------------- metrics
def _bootstrap(per_query: dict[str, np.ndarray], protocol: dict, seed: int, name: str,
               out: dict[str, MetricValue]) -> None:
    from ...bootstrap import cluster_means

    b = int(protocol["bootstrap_resamples"])
    omit = protocol["nan_policy"] == "omit"
    samples = {}
    for i, d in enumerate(("v2t", "t2v")):
        values = per_query[d]
        missing = int(np.isnan(values).sum())
        note = ""
        if missing:
            note = (f"{missing} of {values.size} queries have no relevant item (R == 1 for mAP, "
                    f"R > 0 for nDCG): " + ("excluded (nan_policy: omit)" if omit else
                                            "the official mean is NaN; set protocol.nan_policy: omit"))
        kept = values[~np.isnan(values)] if omit else values
        if kept.size == 0 or (missing and not omit):
            out[f"{name}_{d}"] = MetricValue(float("nan"), None, int(values.size), note=note)
            samples[d] = None
            continue
        bs = cluster_means(kept[:, None], None, n_resamples=b, seed=seed + i)
        lo, hi = bs.ci()[0]
        out[f"{name}_{d}"] = MetricValue(float(bs.point[0]), (float(lo), float(hi)), int(kept.size),
                                         note=note)
        samples[d] = bs.samples[:, 0]
    if samples["v2t"] is None or samples["t2v"] is None:
        out[f"{name}_avg"] = MetricValue(float("nan"), None, note="a direction is NaN")
        return
    avg = (samples["v2t"] + samples["t2v"]) / 2
    lo, hi = np.nanquantile(avg, [0.025, 0.975])
    point = (out[f"{name}_v2t"].value + out[f"{name}_t2v"].value) / 2
    out[f"{name}_avg"] = MetricValue(point, (float(lo), float(hi)),
                                     out[f"{name}_v2t"].n + out[f"{name}_t2v"].n,
                                     note="mean of V->T and T->V (official AVG)")


def evaluate(req: EvalRequest) -> FamilyOutput:
    from .metrics import mir_per_query

    p = req.protocol
    if p["nan_policy"] not in ("propagate", "omit"):
        raise ValueError("protocol.nan_policy must be 'propagate' (official) or 'omit'")
    n_frames = int(p["n_frames"])
    if n_frames < 1:
        raise ValueError("protocol.n_frames must be >= 1")
    ds = req.dataset
    transforms = tta_transforms(p)
    vis = clip_embeddings(req.encoder, ds.clips, n_frames, transforms)
    txt = normalize(req.encoder.texts(ds.captions).float(), dim=-1)
    sim = (vis @ txt.T).numpy().astype(np.float32, copy=False)
    per = mir_per_query(sim, ds.relevancy)
    metrics: dict[str, MetricValue] = {}
    _bootstrap(per["map"], p, req.seed, "map", metrics)
    _bootstrap(per["ndcg"], p, req.seed + 2, "ndcg", metrics)
    ordered = {k: metrics[k] for k in METRICS}
    details = {"n_clips": len(ds.vis_ids), "n_captions": len(ds.txt_ids), "n_frames": n_frames,
               "tta": [{"hflip": f, "scale": s} for f, s in transforms],
               "video_encoder": bool(req.encoder.capabilities.video),
               "relevant_per_clip": float((ds.relevancy == 1).sum(axis=1).mean()),
               **{k: v for k, v in ds.meta.items() if k in ("relevancy_source", "generator", "frames")}}
    if req.artifact_dir is not None:
        artifact = Path(req.artifact_dir)
        artifact.mkdir(parents=True, exist_ok=True)
        np.savez(artifact / SIMILARITY_ARTIFACT, sim=sim, vis_ids=np.array(ds.vis_ids, dtype=str),
                 txt_ids=np.array(ds.txt_ids, dtype=str))
        details["similarity_artifact"] = str(artifact / SIMILARITY_ARTIFACT)
    finite = lambda v: v if v is not None and np.isfinite(v) else None  # noqa: E731  (JSON)
    table = [{"direction": d, "mAP": finite(metrics[f"map_{d}"].value),
              "nDCG": finite(metrics[f"ndcg_{d}"].value)} for d in ("v2t", "t2v", "avg")]
    return FamilyOutput(metrics=ordered, headline=list(METRICS), tables={"directions": table},
                        details=details, n=len(ds.vis_ids) + len(ds.txt_ids))


# ----------------------------------------------------------------------------- loaders
REAL_OPTIONS = {
    "annotations_dir": "folder with EPIC_100_retrieval_test(.csv|.pkl) and _sentence(.csv|.pkl)",
    "frames_dir": "rgb_frames folder: <participant>/<video>/frame_0000000001.jpg",
    "videos_dir": "videos folder (used when frames_dir is absent): <participant>/videos/<video>.MP4",
    "frame_template": "frame path under frames_dir (fields participant_id, video_id, frame)",
    "video_template": "video path under videos_dir (fields participant_id, video_id)",
    "clips_file": "clip table file name (default EPIC_100_retrieval_test.csv)",
    "sentences_file": "caption table file name (default EPIC_100_retrieval_test_sentence.csv)",
    "relevancy": "'auto' (pickled matrix if present, else derived), 'derive', or a file",
}
SYNTH_OPTIONS = {"n_clips": "number of clips (default 96)", "seed": "generator seed (default 0)",
                 "clip_length": "frames per clip before sampling (default 16)",
                 "size": "frame size in pixels (default 64)",
                 "max_objects": "objects per clip, 1..max (default 2)"}


def _resolve(value, ctx):
    if value is None:
        return None
    path = Path(str(value))
    return path if path.is_absolute() else ctx.task_file.parent / path


def load_real(options: dict, ctx):
    from .data import (CLIPS_FILE, DEFAULT_FRAME_TEMPLATE, DEFAULT_VIDEO_TEMPLATE,
                                 SENTENCES_FILE, load_epic_mir)
    if "annotations_dir" not in options:
        raise ValueError("dataset option annotations_dir is required")
    return load_epic_mir(
        _resolve(options["annotations_dir"], ctx), frames_dir=_resolve(options.get("frames_dir"), ctx),
        videos_dir=_resolve(options.get("videos_dir"), ctx),
        clips_file=options.get("clips_file", CLIPS_FILE),
        sentences_file=options.get("sentences_file", SENTENCES_FILE),
        relevancy=str(options.get("relevancy", "auto")),
        frame_template=options.get("frame_template", DEFAULT_FRAME_TEMPLATE),
        video_template=options.get("video_template", DEFAULT_VIDEO_TEMPLATE), limit=ctx.limit)


def load_synthetic(options: dict, ctx):
    from .data import limit_indices
    from .synthetic import build
    ds = build(**{k: int(options[k]) for k in SYNTH_OPTIONS if k in options})
    cut = limit_indices(ds.relevancy, ctx.limit)
    return ds if cut is None else ds.subset(*cut)


# ----------------------------------------------------------------------------- hooks
@hookimpl
def ctxbench_families():
    return [FamilySpec(plots=_load_plots, name=FAMILY, evaluate=evaluate, protocol_defaults=dict(PROTOCOL_DEFAULTS),
                       metrics=METRICS,
                       description="EPIC-KITCHENS-100 multi-instance retrieval: official mAP and "
                                   "nDCG (soft relevance), V->T, T->V, average")]


@hookimpl
def ctxbench_dataset_loaders():
    return [LoaderSpec("epic100_mir", load_real, FAMILY, "EPIC-KITCHENS-100 MIR test set "
                       "(official annotation files + frames or videos)", dict(REAL_OPTIONS)),
            LoaderSpec("synthetic_kitchen_mir", load_synthetic, FAMILY, "embedded kitchen clips "
                       "from the synthetic world (verb = motion, nouns = objects)",
                       dict(SYNTH_OPTIONS))]


@hookimpl
def ctxbench_metrics():
    from . import metrics as mir
    return [MetricSpec("mir_map", mir.mir_map, "mAP (R == 1 relevant, soft precision), "
                       "V->T / T->V / avg", FAMILY, True, mir.REFERENCE),
            MetricSpec("mir_ndcg", mir.mir_ndcg, "nDCG (linear gains, truncated at #R > 0), "
                       "V->T / T->V / avg", FAMILY, True, mir.REFERENCE)]


def _load_plots():
    from .plots import PLOTS
    return PLOTS
