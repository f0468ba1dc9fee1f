"""Recall@K of both retrieval directions, with ties counted as expected recall.

Text -> image: each caption has one correct image; the per-caption expected hit@K
is :func:`ctxbench.families.context_retrieval.metrics.recall_at_k` (with s
candidates strictly above the target and e others tied with it, E[hit@K] =
clip((K - s) / (e + 1), 0, 1)).

Image -> text: an image is a hit when *any* of its captions is among the K best
captions (CLIP_benchmark's ``recall_at_k`` on the image-to-text positive mask).
Let t be the best score of one of the image's captions, s the number of captions
scoring strictly above t (all negatives, t being the best positive), and among
the captions tied with t (within ``tie_tolerance``) m positives and e negatives.
Under uniform random tie-breaking the tied block is a random permutation, so
the image misses at K exactly when the first j = K - s places of the block are
all negatives:

    E[hit@K] = 0                                      if j <= 0
             = 1 - C(e, j) / C(m + e, j)              if 0 < j <= e
             = 1                                      if j > e

With one positive (m = 1) this is the text -> image formula. A backend that
gives every item the same embedding scores exactly chance in both directions.

Scores are computed in row blocks (:data:`BLOCK` queries at a time), so a large
pool never holds a dense queries x candidates matrix of more than BLOCK rows.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..context_retrieval.metrics import recall_at_k

__all__ = ["recall_at_k", "multi_positive_recall_at_k", "t2i_hits", "i2t_hits", "BLOCK"]

BLOCK = 512   # query rows scored at a time: bounds memory at ~BLOCK x pool floats


def multi_positive_recall_at_k(scores: torch.Tensor, positives: torch.Tensor, ks: Sequence[int],
                               tie_tolerance: float = 1e-6) -> torch.Tensor:
    """Per-query expected hit@K when a query has one or more correct candidates.
    ``scores`` [Q, P], ``positives`` bool [Q, P] (each row with at least one True).
    Returns float64 [Q, len(ks)] (module docstring)."""
    scores = torch.as_tensor(scores)
    positives = torch.as_tensor(positives, dtype=torch.bool)
    if scores.ndim != 2 or positives.shape != scores.shape:
        raise ValueError(f"scores and positives must both be [Q, P]; got {tuple(scores.shape)} "
                         f"and {tuple(positives.shape)}")
    if not bool(positives.any(1).all()):
        raise ValueError("every query needs at least one positive candidate")
    best = scores.masked_fill(~positives, float("-inf")).amax(1, keepdim=True)
    above = (scores > best + tie_tolerance).sum(1).double()
    tied = (scores - best).abs() <= tie_tolerance
    m = (tied & positives).sum(1).double()
    e = (tied & ~positives).sum(1).double()
    k = torch.tensor([float(x) for x in ks], dtype=torch.float64)
    j = k[None, :] - above[:, None]                         # free places in the tied block
    e2, n2 = e[:, None].expand_as(j), (m + e)[:, None].expand_as(j)
    jc = j.clamp(min=0)
    inside = (j > 0) & (j <= e2)
    # C(e, j) / C(m + e, j) through log-gamma (exact enough in float64 for any pool size)
    jc_in = torch.where(inside, jc, torch.zeros_like(jc))
    log_miss = (torch.lgamma(e2 + 1) - torch.lgamma(e2 - jc_in + 1)
                - torch.lgamma(n2 + 1) + torch.lgamma(n2 - jc_in + 1))
    hit = torch.where(inside, 1 - torch.exp(log_miss), (j > e2).double())
    return hit.clamp(0, 1)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.as_tensor(x).float(), dim=-1)


def t2i_hits(texts: torch.Tensor, images: torch.Tensor, owner: torch.Tensor,
             ks: Sequence[int]) -> torch.Tensor:
    """Text -> image expected hit@K [n_captions, len(ks)]: ``texts`` [T, D] and
    ``images`` [I, D] embeddings (cosine), ``owner`` [T] the image index of each caption."""
    texts, images = _unit(texts), _unit(images)
    owner = torch.as_tensor(owner, dtype=torch.long)
    out = [recall_at_k(texts[a:a + BLOCK] @ images.T, owner[a:a + BLOCK], ks)
           for a in range(0, texts.shape[0], BLOCK)]
    return torch.cat(out) if out else torch.zeros(0, len(ks), dtype=torch.float64)


def i2t_hits(images: torch.Tensor, texts: torch.Tensor, owner: torch.Tensor,
             ks: Sequence[int], queries: torch.Tensor | None = None) -> torch.Tensor:
    """Image -> text expected hit@K [len(queries), len(ks)]: ``queries`` the image
    indices to score (default: every image; each must own at least one caption)."""
    texts, images = _unit(texts), _unit(images)
    owner = torch.as_tensor(owner, dtype=torch.long)
    if queries is None:
        queries = torch.arange(images.shape[0])
    queries = torch.as_tensor(queries, dtype=torch.long)
    out = []
    for a in range(0, len(queries), BLOCK):
        rows = queries[a:a + BLOCK]
        out.append(multi_positive_recall_at_k(images[rows] @ texts.T,
                                              owner[None, :] == rows[:, None], ks))
    return torch.cat(out) if out else torch.zeros(0, len(ks), dtype=torch.float64)
