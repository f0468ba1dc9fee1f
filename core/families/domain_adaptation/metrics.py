"""Classification metrics of the domain_adaptation family, pure numpy.

- :func:`top1_accuracy`: overall top-1 accuracy, the figure TRUST reports
  (Litrico et al., "TRUST: Leveraging Text Robustness for Unsupervised Domain
  Adaptation", AAAI 2026, Tables 1-2).
- :func:`mean_per_class_accuracy`: the mean over classes of per-class recall, the
  official GeoNet figure (Kalluri et al., CVPR 2023; ViLab-UCSD/GeoNet
  ``UDA_trainer/val.py`` -> ``percls_accuracy``). Classes absent from ``y_true``
  are left out of the mean (their recall is undefined).
- :func:`class_stratified_bootstrap`: bootstrap replicates of the per-class
  accuracies of several paired predictors at once, resampling items *within* each
  class (class sizes fixed, the usual scheme for class-balanced metrics). The
  project's ``cluster_means`` bootstraps means of per-item values; the mean
  per-class accuracy is a ratio of per-class sums, so it needs this dedicated
  resampler. It is exact and vectorised: inside a class only the joint
  correctness *pattern* of the M predictors matters (2**M patterns), so a
  replicate of class c is a multinomial draw of n_c items over those patterns.
"""

from __future__ import annotations

import numpy as np

from ...bootstrap import BootstrapSamples

MAX_PREDICTORS = 12   # 2**12 patterns per class at most
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
    """Mean of per-class recall over the classes present in ``y_true`` (GeoNet)."""
    acc = per_class_accuracy(y_true, y_pred, n_classes)
    acc = acc[~np.isnan(acc)]
    return float(acc.mean()) if acc.size else float("nan")


def class_stratified_bootstrap(correct: np.ndarray, labels: np.ndarray, n_resamples: int = 10_000,
                               seed: int = 0) -> tuple[BootstrapSamples, BootstrapSamples]:
    """Paired within-class bootstrap of M predictors' top-1 and mean per-class accuracy.

    ``correct`` [N, M] (bool: predictor m right on item i), ``labels`` [N].
    Returns ``(top1, mpca)``: point estimates [M] and replicates [B, M] of the overall
    top-1 accuracy and of the mean per-class accuracy, from the *same* resamples (so
    differences between columns are paired).
    """
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim == 1:
        correct = correct[:, None]
    n, m = correct.shape
    if m > MAX_PREDICTORS:
        raise ValueError(f"at most {MAX_PREDICTORS} predictors at once, got {m}")
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels {labels.shape} must have one entry per row of correct {correct.shape}")
    _, cls = np.unique(labels, return_inverse=True)
    c = int(cls.max()) + 1 if n else 0
    code = correct.astype(np.int64) @ (1 << np.arange(m, dtype=np.int64))      # [N]
    n_pat = 1 << m
    freq = np.zeros((c, n_pat))
    np.add.at(freq, (cls, code), 1.0)
    sizes = freq.sum(axis=1)                                                  # [C]
    bits = ((np.arange(n_pat)[:, None] >> np.arange(m)[None, :]) & 1).astype(np.float64)  # [P, M]
    class_hits = freq @ bits                                                  # [C, M]
    top1_point = class_hits.sum(0) / max(n, 1)
    mpca_point = (class_hits / sizes[:, None]).mean(0) if c else np.full(m, np.nan)
    rng = np.random.default_rng(seed)
    top1 = np.empty((n_resamples, m))
    mpca = np.empty((n_resamples, m))
    pvals = freq / sizes[:, None]
    nn = sizes.astype(np.int64)
    step = max(1, CHUNK_ELEMENTS // max(1, c * n_pat))
    for start in range(0, n_resamples, step):
        b = min(step, n_resamples - start)
        draws = rng.multinomial(nn, pvals, size=(b, c)).astype(np.float64)    # [b, C, P]
        hits = draws @ bits                                                   # [b, C, M]
        top1[start:start + b] = hits.sum(1) / max(n, 1)
        mpca[start:start + b] = (hits / sizes[None, :, None]).mean(1)
    return BootstrapSamples(top1_point, top1), BootstrapSamples(mpca_point, mpca)
