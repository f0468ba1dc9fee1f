"""Classification metrics of the domain_adaptation family, pure numpy.

- :func:`top1_accuracy`: overall top-1 accuracy, the figure TRUST reports
  (Litrico et al., "TRUST: Leveraging Text Robustness for Unsupervised Domain
  Adaptation", AAAI 2026, Tables 1-2).
- :func:`mean_per_class_accuracy`: GeoNet's official figure (Kalluri et al.,
  "GeoNet: Benchmarking Unsupervised Adaptation across Geographies", CVPR 2023;
  official code ``percls_accuracy(all_pred, all_label, num_class).mean()``): the
  accuracy of every one of the ``n_classes`` classes, a class absent from
  ``y_true`` counting 0, averaged over all ``n_classes``.
- :func:`mean_present_class_accuracy`: the mean over the classes *present* in
  ``y_true`` of their recall (scikit-learn's ``balanced_accuracy_score``). The two
  agree when every class has a test item.
- :func:`class_stratified_bootstrap`: bootstrap replicates of the top-1 and of the
  present-class mean accuracy of several paired predictors at once, resampling
  items *within* each class (class sizes fixed, the usual scheme for class-balanced
  metrics). Per-item scores may be fractions (e.g. the share of training seeds that
  got an item right): a replicate of class c is a multinomial draw of n_c items,
  and its per-class score the count-weighted mean of the scores. The official
  figure is the present-class one times (present classes / n_classes), in every
  replicate.
"""

from __future__ import annotations

import numpy as np

from ...bootstrap import BootstrapSamples

CHUNK_ELEMENTS = 4_000_000


def _check(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be 1-D of equal length")
    return y_true, y_pred


def top1_accuracy(y_true, y_pred) -> float:
    """Fraction of items whose predicted class equals the true class (nan if empty)."""
    y_true, y_pred = _check(y_true, y_pred)
    return float(np.mean(y_true == y_pred)) if y_true.size else float("nan")


def per_class_accuracy(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Recall of each class ``0..n_classes-1`` (nan for classes with no item)."""
    y_true, y_pred = _check(y_true, y_pred)
    y_true = y_true.astype(np.int64)
    n = int(n_classes) if n_classes is not None else (int(y_true.max()) + 1 if y_true.size else 0)
    counts = np.bincount(y_true, minlength=n).astype(np.float64)
    hits = np.bincount(y_true, weights=(y_true == y_pred).astype(np.float64), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)


def mean_per_class_accuracy(y_true, y_pred, n_classes: int | None = None) -> float:
    """GeoNet's official mean per-class accuracy: per-class accuracy of classes
    ``0..n_classes-1``, 0 for a class with no item in ``y_true``, averaged over all
    ``n_classes`` (default: ``max(y_true) + 1``). nan when there are no classes."""
    acc = per_class_accuracy(y_true, y_pred, n_classes)
    return float(np.nan_to_num(acc, nan=0.0).mean()) if acc.size else float("nan")


def mean_present_class_accuracy(y_true, y_pred) -> float:
    """Mean recall over the classes present in ``y_true`` (scikit-learn's
    ``balanced_accuracy_score``)."""
    acc = per_class_accuracy(y_true, y_pred)
    acc = acc[~np.isnan(acc)]
    return float(acc.mean()) if acc.size else float("nan")


def class_stratified_bootstrap(scores: np.ndarray, labels: np.ndarray, n_resamples: int = 10_000,
                               seed: int = 0) -> tuple[BootstrapSamples, BootstrapSamples]:
    """Paired within-class bootstrap of M predictors' top-1 and present-class mean accuracy.

    ``scores`` [N, M]: predictor m's score on item i (bool correct, or a fraction in
    [0, 1]), ``labels`` [N]. Returns ``(top1, mpca_present)``: point estimates [M]
    and replicates [B, M] of the overall mean score and of the mean over present
    classes of the per-class mean score, all from the *same* resamples (so
    differences between columns are paired)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    n, m = scores.shape
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels {labels.shape} must have one entry per row of scores {scores.shape}")
    _, cls = np.unique(labels, return_inverse=True)
    c = int(cls.max()) + 1 if n else 0
    members = [np.flatnonzero(cls == j) for j in range(c)]
    top1_point = scores.mean(0) if n else np.full(m, np.nan)
    mpca_point = (np.mean([scores[idx].mean(0) for idx in members], axis=0) if c
                  else np.full(m, np.nan))
    rng = np.random.default_rng(seed)
    hits = np.zeros((n_resamples, m))       # resampled score sums over all items
    class_means = np.zeros((n_resamples, m))  # sum over classes of resampled class means
    for idx in members:
        values, nc = scores[idx], len(idx)
        step = max(1, CHUNK_ELEMENTS // nc)
        for start in range(0, n_resamples, step):
            b = min(step, n_resamples - start)
            counts = rng.multinomial(nc, np.full(nc, 1.0 / nc), size=b).astype(np.float64)  # [b, n_c]
            sums = counts @ values                                                         # [b, M]
            hits[start:start + b] += sums
            class_means[start:start + b] += sums / nc
    return (BootstrapSamples(top1_point, hits / max(n, 1)),
            BootstrapSamples(mpca_point, class_means / max(c, 1)))
