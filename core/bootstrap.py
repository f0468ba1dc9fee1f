"""Vectorised (cluster) bootstrap for confidence intervals and paired tests.

Resampling clusters with replacement is equivalent to drawing, for each of B
replicates, a vector of multinomial counts w over the G clusters; a mean over the
resampled items is then (w @ sums) / (w @ counts). All metrics of a family share
the same count matrix, so paired differences (pattern minus no_ctx) use the same
resamples on both sides. Percentile intervals; two-sided p-value as in the
paper's cluster bootstrap test: p = min(1, 2 * min(P*(d <= 0), P*(d >= 0))),
with P* the bootstrap distribution of the difference, floored at 1/B (reported
as such, never as 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 10_000
CHUNK = 2_000  # replicates per block: bounds memory at CHUNK x G float64


@dataclass(frozen=True)
class BootstrapSamples:
    """B bootstrap replicates of M means, plus the point estimates."""

    point: np.ndarray    # [M]
    samples: np.ndarray  # [B, M]

    def ci(self, level: float = 0.95) -> np.ndarray:
        """[M, 2] percentile intervals (nan where a column is all-nan)."""
        alpha = (1 - level) / 2
        with np.errstate(all="ignore"):
            return np.nanquantile(self.samples, [alpha, 1 - alpha], axis=0).T


def cluster_means(values: np.ndarray, clusters: np.ndarray | None = None,
                  n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> BootstrapSamples:
    """Bootstrap the column means of ``values`` [Q, M] resampling ``clusters`` [Q].

    ``clusters=None`` resamples items independently. Items are weighted equally
    (a cluster contributes as many items as it has), the estimator the paper's
    per-query Recall@K averages use.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    q, m = values.shape
    if clusters is None:
        ids = np.arange(q)
    else:
        _, ids = np.unique(np.asarray(clusters), return_inverse=True)
    g = int(ids.max()) + 1 if q else 0
    sums = np.zeros((g, m))
    np.add.at(sums, ids, values)
    counts = np.bincount(ids, minlength=g).astype(np.float64)
    point = values.mean(axis=0) if q else np.full(m, np.nan)
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, m))
    for start in range(0, n_resamples, CHUNK):
        b = min(CHUNK, n_resamples - start)
        w = rng.multinomial(g, np.full(g, 1.0 / g), size=b).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + b] = (w @ sums) / (w @ counts)[:, None]
    return BootstrapSamples(point, out)


def two_sided_p(diff_samples: np.ndarray) -> np.ndarray:
    """Bootstrap p-value of H0: difference = 0, per column; floored at 1/B."""
    d = np.atleast_2d(np.asarray(diff_samples).T).T
    b = d.shape[0]
    le = (d <= 0).mean(axis=0)
    ge = (d >= 0).mean(axis=0)
    return np.clip(2 * np.minimum(le, ge), 1.0 / b, 1.0)
