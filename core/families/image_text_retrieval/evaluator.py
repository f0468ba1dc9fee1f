"""image_text_retrieval: CLIP_benchmark's zero-shot image-text retrieval on any set of
images with captions.

Every image of the dataset and every caption are embedded once (the cached
encoder skips duplicates, and a rerun reads them from the cache); similarity is
the cosine. Text -> image: each caption queries the pool of images, its own image
is the one correct answer. Image -> text: each image that has captions queries
the pool of captions, and is a hit when any of its captions is among the K best
(CLIP_benchmark, ``metrics/zeroshot_retrieval.py``). Ties count as expected recall
under random tie-breaking (:mod:`.metrics`), so a constant embedding scores chance.

95% CIs: cluster bootstrap over images (a caption belongs to its image's cluster;
an image -> text query is its own cluster), expanded percentile
(:mod:`ctxbench.bootstrap`; with hundreds of images it is nearly the plain
percentile interval). Both directions use the same seed, so with the same images
they draw the same resamples.
"""

from __future__ import annotations

import numpy as np
import torch

from ...bootstrap import cluster_means
from ...results import MetricValue
from ..contract import EvalRequest, FamilyOutput
from .data import ImageTextDataset
from .metrics import i2t_hits, t2i_hits
from .protocol import DIRECTION_NAMES, check_protocol


def _metrics(hits: np.ndarray, clusters: np.ndarray, direction: str, ks: list[int],
             resamples: int, seed: int, note: str, out: dict[str, MetricValue]) -> None:
    boot = cluster_means(hits, clusters, resamples, seed=seed)
    ci = boot.ci(method="expanded")
    for j, k in enumerate(ks):
        out[f"{direction}/R@{k}"] = MetricValue(float(boot.point[j]), (float(ci[j, 0]), float(ci[j, 1])),
                                                int(hits.shape[0]), note=note)


def evaluate(req: EvalRequest) -> FamilyOutput:
    """Recall@K in both directions (module docstring)."""
    p = req.protocol
    check_protocol(p)
    ds: ImageTextDataset = req.dataset
    ks = [int(k) for k in p["ks"]]
    resamples = int(p["bootstrap_resamples"])
    images = req.encoder.images(ds.images)
    texts = req.encoder.texts(ds.captions)
    owner = torch.tensor(ds.caption_image, dtype=torch.long)
    queries = ds.images_with_captions()
    t2i = t2i_hits(texts, images, owner, ks).numpy()
    i2t = i2t_hits(images, texts, owner, ks, torch.tensor(queries, dtype=torch.long)).numpy()
    metrics: dict[str, MetricValue] = {}
    _metrics(t2i, owner.numpy(), "t2i", ks, resamples, req.seed,
             "cluster bootstrap over images (expanded percentile)", metrics)
    _metrics(i2t, np.asarray(queries), "i2t", ks, resamples, req.seed,
             "bootstrap over images (expanded percentile)", metrics)
    head_k = 1 if 1 in ks else min(ks)
    headline = [f"t2i/R@{head_k}", f"i2t/R@{head_k}"]
    per_image = np.bincount(ds.caption_image, minlength=len(ds.images))[queries]
    table = [{"direction": d, "queries": DIRECTION_NAMES[d],
              **{f"R@{k}": round(metrics[f"{d}/R@{k}"].value, 4) for k in ks}}
             for d in ("t2i", "i2t")]
    details = {"n_images": len(ds.images), "n_captions": len(ds.captions),
               "captions_per_image": {"mean": round(float(per_image.mean()), 3),
                                      "min": int(per_image.min()), "max": int(per_image.max())},
               "chance_t2i_R@1": 1.0 / len(ds.images),
               "chance_i2t_R@1": float(per_image.mean()) / len(ds.captions),
               "bootstrap": {"kind": "cluster over images, expanded percentile",
                             "resamples": resamples}}
    details.update({k: v for k, v in ds.meta.items()
                    if k in ("captions_file", "images_root", "format", "images_without_captions",
                             "generator", "seed", "limited_to", "source")})
    return FamilyOutput(metrics, headline, {"Recall@K by direction": table}, details,
                        len(ds.captions) + len(queries))
