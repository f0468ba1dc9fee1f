"""multi_instance_retrieval: EPIC-KITCHENS-100 multi-instance retrieval (Damen et al.,
"Rescaling egocentric vision", IJCV 2022; challenge code by Wray et al.).

Clips are embedded from ``n_frames`` uniformly sampled frames: a backend with a
video encoder (``capabilities.video``) gets the frames as a clip; any other is
evaluated on the mean of its L2-normalised frame embeddings
(``CachedEncoder.videos``; :mod:`.tta`). Optional test-time augmentation (``tta_hflip``,
``tta_scales``) embeds each clip once per transform (a transformed frame is its
own ImageRef with its own cache key) and averages the L2-normalised clip
embeddings. Captions are embedded as text. Similarity = cosine.

Metrics (:mod:`ctxbench.families.multi_instance_retrieval.metrics`, exactly the official mAP.py / nDCG.py):
mAP and nDCG for V->T (clips query captions), T->V, and their average, as
fractions (the paper prints percentages: 66.78 mAP / 82.08 nDCG average). 95%
CIs: iid bootstrap over the queries of each direction, expanded percentile
(``ci(method="expanded")``; simulated with known truth, skewed per-query values,
its 95% interval covers 0.94 at the embedded 63 T->V queries, where the plain
percentile one covers 0.93);
the average's CI combines independent resamples of the two directions. Queries
without a relevant item give NaN, as in the official code (``nan_policy:
propagate``); ``nan_policy: omit`` averages over the others (the real test set
and the embedded one have none).

Artifact: ``mir_similarity.npz`` (``sim`` float32 [n_vis, n_txt], ``vis_ids``,
``txt_ids``) in the cell's artifact folder, from which ``ctxbench export-epic``
(:func:`ctxbench.families.multi_instance_retrieval.export.export_submission`) writes the challenge file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.nn.functional import normalize

from ...bootstrap import BootstrapSamples, cluster_means
from ...results import MetricValue
from ..contract import EvalRequest, FamilyOutput
from .export import SIMILARITY_ARTIFACT
from .metrics import mir_per_query
from .protocol import METRICS, check_protocol
from .tta import clip_embeddings, transform_ref, tta_transforms  # noqa: F401  (re-exported)


def _bootstrap(per_query: dict[str, np.ndarray], protocol: dict, seed: int, name: str,
               out: dict[str, MetricValue]) -> None:
    """``{name}_v2t``, ``{name}_t2v`` and ``{name}_avg`` with expanded-percentile iid
    bootstrap CIs over queries into ``out`` (see :mod:`ctxbench.bootstrap`); NaN
    queries handled as ``nan_policy`` says. The average's replicates combine
    independent resamples of the two directions, expanded for the smaller one."""
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
        lo, hi = bs.ci(method="expanded")[0]
        out[f"{name}_{d}"] = MetricValue(float(bs.point[0]), (float(lo), float(hi)), int(kept.size),
                                         note=note)
        samples[d] = bs
    if samples["v2t"] is None or samples["t2v"] is None:
        out[f"{name}_avg"] = MetricValue(float("nan"), None, note="a direction is NaN")
        return
    v, t = samples["v2t"], samples["t2v"]
    avg = BootstrapSamples((v.point + t.point) / 2, (v.samples + t.samples) / 2,
                           min(v.n_clusters, t.n_clusters))
    lo, hi = avg.ci(method="expanded")[0]
    point = (out[f"{name}_v2t"].value + out[f"{name}_t2v"].value) / 2
    out[f"{name}_avg"] = MetricValue(point, (float(lo), float(hi)),
                                     out[f"{name}_v2t"].n + out[f"{name}_t2v"].n,
                                     note="mean of V->T and T->V (official AVG)")


def evaluate(req: EvalRequest) -> FamilyOutput:
    """mAP and nDCG of the cosine similarity of clip and caption embeddings."""
    p = req.protocol
    check_protocol(p)
    n_frames = int(p["n_frames"])
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
