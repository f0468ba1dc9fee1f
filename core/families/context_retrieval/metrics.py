"""Recall@K for single-target retrieval, with a defined treatment of ties.

For a query whose target scores t, let s = number of candidates scoring strictly
above t and e = number of *other* candidates scoring exactly t. Under uniform
random tie-breaking the target's rank is uniform on s+1 .. s+e+1, so

    E[hit@K] = clip((K - s) / (e + 1), 0, 1).

With no ties this is the usual indicator [rank <= K]. Reporting the expectation
makes a backend that outputs identical scores (e.g. a constant embedding) score
exactly chance instead of whatever index order a sort happens to produce.

Cosines computed in float32 carry rounding error of ~1e-7, so two candidates whose
embeddings are mathematically equidistant from the query can differ in the last
bit; scores within ``tie_tolerance`` (default 1e-6) of the target's are treated
as tied.
"""

from __future__ import annotations

from typing import Sequence

import torch


def recall_at_k(scores: torch.Tensor, targets: torch.Tensor, ks: Sequence[int],
                tie_tolerance: float = 1e-6) -> torch.Tensor:
    """Per-query expected hit@K. ``scores`` [Q, P], ``targets`` [Q] (column index of
    each query's correct candidate). Returns float64 [Q, len(ks)]."""
    scores = torch.as_tensor(scores)
    targets = torch.as_tensor(targets, dtype=torch.long)
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(f"scores must be [Q, P] and targets [Q]; got {tuple(scores.shape)} "
                         f"and {tuple(targets.shape)}")
    target_scores = scores.gather(1, targets[:, None])
    above = (scores > target_scores + tie_tolerance).sum(1).double()
    tied = ((scores - target_scores).abs() <= tie_tolerance).sum(1).double() - 1
    k = torch.tensor(list(ks), dtype=torch.float64)
    return ((k[None, :] - above[:, None]) / (tied[:, None] + 1)).clamp(0, 1)
