"""context_retrieval: "same image, different meaning" (SPEC §1; Tsutsumi & Kohita,
seeds/000_*).

Score (paper eq. 2): f(I, q, C_I) = cos(phi(I, C_I), psi(q, C_I)), where C_I = pi(I)
is the context assigned to *candidate* image I. Four injection patterns (paper
Table 2): no_ctx phi(I), psi(q); query_ctx phi(I), psi(q, C); image_ctx
phi(I, C), psi(q); both_ctx phi(I, C), psi(q, C).

With ``query_context: candidate`` (default, eq. 2 as written) a query is encoded
once per distinct context in the pool and scored against the images carrying
that context: n_queries x n_contexts text encodings per level. ``query_context:
source`` encodes each query once with its own story (cheaper; the query's
context equals pi(target), a different estimator) and is recorded in the result.

Recall@K per level over the pool of all images of the source, ties counted as
expected recall (metrics/retrieval.py). 95% CIs and the pattern-minus-no_ctx
test use the cluster bootstrap over groups (movies), n = 10,000 by default, as
the paper. A backend that cannot take a context on a side gets n/a for the
patterns that need it; no silent fallback (the open_clip backend's late fusion
is an explicit, separately fingerprinted option).

Diagnostic (paper Fig. 2): per level, the mean semantic distance 1 - cos between
the queries written for the same image under different stories, embedded by the
backend's own text encoder without context.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch.nn.functional import normalize

from ...bootstrap import cluster_means, two_sided_p
from .data import LEVELS, ContextRetrievalDataset
from ...hooks import hookimpl
from .metrics import recall_at_k
from ...results import MetricValue
from ...registrations import FamilySpec, LoaderSpec, MetricSpec
from ..contract import EvalRequest, FamilyOutput

PATTERNS = ("no_ctx", "query_ctx", "image_ctx", "both_ctx")
IMAGE_SIDE = {"no_ctx": False, "query_ctx": False, "image_ctx": True, "both_ctx": True}
TEXT_SIDE = {"no_ctx": False, "query_ctx": True, "image_ctx": False, "both_ctx": True}

PROTOCOL_DEFAULTS = {
    "patterns": list(PATTERNS),
    "levels": list(LEVELS),
    "ks": [1, 5],
    "bootstrap_resamples": 10_000,
    "query_context": "candidate",   # or "source"
    "divergence": True,
}


def _check_protocol(p: dict) -> None:
    bad = [x for x in p["patterns"] if x not in PATTERNS]
    if bad:
        raise ValueError(f"protocol.patterns: unknown {bad}; allowed {list(PATTERNS)}")
    if "no_ctx" not in p["patterns"]:
        raise ValueError("protocol.patterns must include no_ctx (differences are taken against it)")
    if p["query_context"] not in ("candidate", "source"):
        raise ValueError("protocol.query_context must be 'candidate' or 'source'")


def _query_scores(req: EvalRequest, texts: list[str], targets: np.ndarray, images: torch.Tensor,
                  image_contexts: list[str], with_context: bool) -> torch.Tensor:
    enc = req.encoder
    if not with_context:
        return normalize(enc.texts(texts), dim=-1) @ images.T
    if req.protocol["query_context"] == "source":
        q = normalize(enc.texts(texts, [image_contexts[t] for t in targets]), dim=-1)
        return q @ images.T
    scores = torch.empty(len(texts), images.shape[0])
    columns: dict[str, list[int]] = {}
    for col, ctx in enumerate(image_contexts):
        columns.setdefault(ctx, []).append(col)
    for ctx, cols in columns.items():
        q = normalize(enc.texts(texts, [ctx] * len(texts)), dim=-1)
        scores[:, cols] = q @ images[cols].T
    return scores


def _divergence(req: EvalRequest, ds: ContextRetrievalDataset, level: str) -> MetricValue:
    pairs_a, pairs_b = [], []
    for image in ds.images:
        group = next(g for g in ds.groups if g.id == image.group)
        texts = [ds.queries[(image.id, s, level)] for s in group.story_ids
                 if (image.id, s, level) in ds.queries]
        for a, b in itertools.combinations(texts, 2):
            pairs_a.append(a)
            pairs_b.append(b)
    if not pairs_a:
        return MetricValue.not_applicable("no image has queries under two stories")
    ea = normalize(req.encoder.texts(pairs_a), dim=-1)
    eb = normalize(req.encoder.texts(pairs_b), dim=-1)
    dist = (1 - (ea * eb).sum(-1)).double().numpy()
    return MetricValue(float(dist.mean()), n=len(dist), note="mean 1 - cos between stories' queries")


def evaluate(req: EvalRequest) -> FamilyOutput:
    p = req.protocol
    _check_protocol(p)
    ds: ContextRetrievalDataset = req.dataset
    caps = req.encoder.capabilities
    refs = [image.ref for image in ds.images]
    image_contexts = [ds.stories[ds.assignment[image.id]].context_text() for image in ds.images]
    groups = np.array(ds.group_of_image())
    ks = [int(k) for k in p["ks"]]

    image_emb: dict[bool, torch.Tensor] = {}

    def images(with_context: bool) -> torch.Tensor:
        if with_context not in image_emb:
            ctx = image_contexts if with_context else None
            image_emb[with_context] = normalize(req.encoder.images(refs, ctx), dim=-1)
        return image_emb[with_context]

    metrics: dict[str, MetricValue] = {}
    table_r1: list[dict] = []
    rows = {pattern: {"pattern": pattern} for pattern in p["patterns"]}
    n_total = 0
    for li, level in enumerate(p["levels"]):
        queries = ds.evaluation_queries(level)
        if not queries:
            continue
        targets = np.array([t for t, _ in queries])
        texts = [q for _, q in queries]
        n_total += len(texts)
        hits: dict[str, np.ndarray] = {}
        for pattern in p["patterns"]:
            missing = [side for side, needed, ok in (
                ("image", IMAGE_SIDE[pattern], caps.image_context),
                ("text", TEXT_SIDE[pattern], caps.text_context)) if needed and not ok]
            if missing:
                for k in ks:
                    metrics[f"{level}/{pattern}/R@{k}"] = MetricValue.not_applicable(
                        f"backend takes no context on the {' and '.join(missing)} side")
                rows[pattern][level] = None
                continue
            scores = _query_scores(req, texts, targets, images(IMAGE_SIDE[pattern]),
                                   image_contexts, TEXT_SIDE[pattern])
            hits[pattern] = recall_at_k(scores, torch.from_numpy(targets), ks).numpy()

        names = [(pat, k) for pat in hits for k in ks]
        columns = np.stack([hits[pat][:, ki] for pat in hits for ki in range(len(ks))], axis=1)
        diff_names = [(pat, k) for pat in hits if pat != "no_ctx" for k in ks]
        diffs = [hits[pat][:, ki] - hits["no_ctx"][:, ki]
                 for pat in hits if pat != "no_ctx" for ki in range(len(ks))]
        if diffs:
            columns = np.concatenate([columns, np.stack(diffs, axis=1)], axis=1)
        boot = cluster_means(columns, groups[targets], p["bootstrap_resamples"], seed=req.seed + li)
        ci = boot.ci()
        for j, (pat, k) in enumerate(names):
            metrics[f"{level}/{pat}/R@{k}"] = MetricValue(float(boot.point[j]), tuple(ci[j]), len(texts))
            if k == 1:
                rows[pat][level] = round(float(boot.point[j]), 4)
        pvals = two_sided_p(boot.samples[:, len(names):]) if diffs else []
        for j, (pat, k) in enumerate(diff_names):
            col = len(names) + j
            metrics[f"{level}/{pat}-no_ctx/R@{k}"] = MetricValue(
                float(boot.point[col]), tuple(ci[col]), len(texts), float(pvals[j]),
                note="paired cluster bootstrap over groups")
            if k == 1:
                rows[pat][f"{level} diff"] = round(float(boot.point[col]), 4)
                rows[pat][f"{level} p"] = float(pvals[j])
        if p["divergence"]:
            metrics[f"{level}/query_divergence"] = _divergence(req, ds, level)
    table_r1 = list(rows.values())
    headline = [f"{level}/{pat}/R@1" for pat in ("no_ctx", "image_ctx") if pat in p["patterns"]
                for level in p["levels"]]
    details = {"pool_size": len(ds.images), "groups": len(ds.groups),
               "contexts": len(set(image_contexts)), "query_context": p["query_context"],
               "bootstrap": {"kind": "cluster over groups", "resamples": p["bootstrap_resamples"]},
               "context_method": caps.context_method}
    details.update({k: v for k, v in ds.meta.items() if k in ("source", "generator_version",
                                                              "no_context_ceiling")})
    return FamilyOutput(metrics, headline, {"Recall@1 by pattern and level": table_r1},
                        details, n_total)


def _load_json(options: dict, ctx) -> ContextRetrievalDataset:
    from .data import load_json
    from pathlib import Path
    path = Path(options["path"])
    if not path.is_absolute():
        path = ctx.task_file.parent / path
    root = options.get("image_root")
    ds = load_json(path, root)
    return _limit(ds, ctx.limit)


def _load_synthetic(options: dict, ctx) -> ContextRetrievalDataset:
    from .synthetic import build
    ds = build(**options)
    return _limit(ds, ctx.limit)


def _limit(ds: ContextRetrievalDataset, limit: int | None) -> ContextRetrievalDataset:
    """--limit N keeps the first groups holding at most N images (whole groups, so the
    cluster structure stays intact)."""
    if not limit or len(ds.images) <= limit:
        return ds
    keep_groups, count = [], 0
    for g in ds.groups:
        if count and count + len(g.image_ids) > limit:
            break
        keep_groups.append(g)
        count += len(g.image_ids)
    ids = {i for g in keep_groups for i in g.image_ids}
    return ContextRetrievalDataset(
        name=ds.name, images=[im for im in ds.images if im.id in ids],
        stories={s: st for s, st in ds.stories.items() if any(s in g.story_ids for g in keep_groups)},
        groups=keep_groups, assignment={i: s for i, s in ds.assignment.items() if i in ids},
        queries={k: v for k, v in ds.queries.items() if k[0] in ids},
        meta={**ds.meta, "limited_to": count})


@hookimpl
def ctxbench_families():
    return [FamilySpec(
        plots=_load_plots, name="context_retrieval", evaluate=evaluate,
        description="same image, different meaning: Recall@K per level L1-L4 under 4 context "
                    "injection patterns, cluster bootstrap over groups",
        protocol_defaults=PROTOCOL_DEFAULTS,
        metrics=("L*/*/R@*", "L*/*-no_ctx/R@*", "L*/query_divergence"))]


@hookimpl
def ctxbench_dataset_loaders():
    return [
        LoaderSpec("context_retrieval_json", _load_json, "context_retrieval",
                   "real data in ctxbench's documented JSON format (datasets/context_retrieval.py)",
                   {"path": "the JSON file", "image_root": "folder image paths are relative to "
                    "(default: the JSON's folder)"}),
        LoaderSpec("synthetic_context_retrieval", _load_synthetic, "context_retrieval",
                   "embedded synthetic movies built from the synthetic world",
                   {"n_groups": "number of groups (5 images each)", "images_per_group": "images per group",
                    "stories_per_group": "stories per group", "seed": "generator seed",
                    "size": "image side in pixels"}),
    ]


@hookimpl
def ctxbench_metrics():
    return [MetricSpec("recall@k", recall_at_k,
                       "single-target Recall@K with ties counted as expected recall",
                       family="context_retrieval",
                       reference="Tsutsumi & Kohita (seeds/000), Recall@1/@5 over the image pool")]


def _load_plots():
    from .plots import PLOTS
    return PLOTS
