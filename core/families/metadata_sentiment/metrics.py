"""Classification metrics (pure numpy): accuracy, per-class accuracy, macro and
weighted F1, KL divergence to label distributions.

Everything is computed from a confusion matrix ``C[t, p]`` (rows: true class,
columns: predicted class), which may carry leading batch dimensions: the same
code scores one test set or B bootstrap resamples at once (a resample is a vector
of multinomial item counts, so its confusion matrix is ``counts @ onehot(t*K+p)``).

Definitions (the conventions of scikit-learn's ``f1_score`` with
``zero_division=0``, the figures SentiFormer and its baselines report):

- accuracy = trace(C) / sum(C);
- per-class accuracy of class k (its recall) = C[k, k] / sum_p C[k, p]
  (undefined, NaN, for a class with no true item);
- F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k) (the harmonic mean of precision and
  recall, 0 when TP_k = 0);
- macro F1 (``macro_F1``) = unweighted mean of F1_k over the classes that occur
  among the true *or* predicted labels (scikit-learn's default label set,
  ``f1_score(average="macro")``);
- weighted F1 (``weighted_F1``) = sum_k support_k F1_k / sum_k support_k (support =
  true count; ``average="weighted"``);
- positive-class F1 (``F1_positive``, binary tasks) = F1 of class 1 ("positive"),
  0 when the class is neither true nor predicted (``f1_score(pos_label=1)``,
  ``average="binary"``). Papers that write "F1" for binary sentiment may mean either
  this or macro F1; both are reported, under names that say which.

KL divergence (label distribution learning, e.g. Twitter_LDL; Yang et al. 2017):
KL(p || q) = sum_k p_k log(p_k / q_k) (natural log; direction: true || predicted) with
0 log 0 = 0 and q clipped at ``eps`` (default 1e-12): where q_k = 0 and p_k > 0 the
term is p_k log(p_k / eps), so the figure then depends on eps.
"""

from __future__ import annotations

import numpy as np


def _labels(y, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {y.shape}")
    if y.size and (not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    return y.astype(np.int64)


def confusion_matrix(y_true, y_pred, n_classes: int, counts=None) -> np.ndarray:
    """``C[..., t, p]``: (weighted) number of items of true class t predicted as p.

    ``counts`` (optional, ``[Q]`` or ``[B, Q]``) weights each item, e.g. bootstrap
    multiplicities; the result then has the leading shape of ``counts``."""
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} items but y_pred has {p.size}")
    k = int(n_classes)
    for name, y in (("y_true", t), ("y_pred", p)):
        if y.size and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"{name} has class indices outside 0..{k - 1}")
    cell = t * k + p
    if counts is None:
        return np.bincount(cell, minlength=k * k).reshape(k, k).astype(np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape[-1] != t.size:
        raise ValueError(f"counts has {counts.shape[-1]} columns for {t.size} items")
    onehot = np.zeros((t.size, k * k))
    onehot[np.arange(t.size), cell] = 1.0
    return (counts @ onehot).reshape(*counts.shape[:-1], k, k)


def scores_from_confusion(conf: np.ndarray) -> dict[str, np.ndarray]:
    """accuracy, macro_F1, weighted_F1 (shape ``conf.shape[:-2]``) and
    per_class_accuracy, f1 (shape ``conf.shape[:-1]``; NaN for a class neither true
    nor predicted) of confusion matrices."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    support = conf.sum(axis=-1)          # true counts per class
    predicted = conf.sum(axis=-2)        # predicted counts per class
    total = support.sum(axis=-1)
    fp, fn = predicted - tp, support - tp
    present = (support + predicted) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(present, 2 * tp / (2 * tp + fp + fn), np.nan)
        accuracy = tp.sum(axis=-1) / total
        per_class = np.where(support > 0, tp / support, np.nan)
        macro = np.nansum(np.where(present, f1, 0.0), axis=-1) / present.sum(axis=-1)
        weighted = np.nansum(np.where(support > 0, f1 * support, 0.0), axis=-1) / total
    return {"accuracy": accuracy, "macro_F1": macro, "weighted_F1": weighted,
            "per_class_accuracy": per_class, "f1": f1}


def accuracy(y_true, y_pred) -> float:
    """Fraction of items whose predicted class equals the true class."""
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape or t.size == 0:
        raise ValueError("accuracy needs two non-empty label arrays of the same length")
    return float((t == p).mean())


def _n(y_true, y_pred, n_classes):
    if n_classes is None:
        n_classes = int(max(np.max(y_true), np.max(y_pred))) + 1
    return n_classes


def per_class_accuracy(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Recall of every class (NaN for a class without true items)."""
    return scores_from_confusion(confusion_matrix(y_true, y_pred, _n(y_true, y_pred, n_classes))
                                 )["per_class_accuracy"]


def macro_f1(y_true, y_pred, n_classes: int | None = None) -> float:
    """Mean F1 over classes present among true or predicted labels."""
    return float(scores_from_confusion(confusion_matrix(y_true, y_pred,
                                                        _n(y_true, y_pred, n_classes)))["macro_F1"])


def weighted_f1(y_true, y_pred, n_classes: int | None = None) -> float:
    """Support-weighted mean F1."""
    return float(scores_from_confusion(confusion_matrix(y_true, y_pred,
                                                        _n(y_true, y_pred, n_classes)))["weighted_F1"])


def positive_f1(conf_f1: np.ndarray) -> np.ndarray:
    """F1 of class 1 from the per-class ``f1`` of :func:`scores_from_confusion` (NaN,
    class 1 neither true nor predicted, becomes 0 as in scikit-learn)."""
    return np.nan_to_num(np.asarray(conf_f1)[..., 1], nan=0.0)


def f1_positive(y_true, y_pred) -> float:
    """Binary F1 of the positive class 1 (scikit-learn ``f1_score(y_true, y_pred,
    pos_label=1)``)."""
    return float(positive_f1(scores_from_confusion(confusion_matrix(y_true, y_pred, 2))["f1"]))


def accuracy_drop(y_true, pred_with, pred_without) -> float:
    """A field's contribution: accuracy with every field minus accuracy with the field
    masked as absent (the same trained model, the same test items)."""
    return accuracy(y_true, pred_with) - accuracy(y_true, pred_without)


def kl_divergence(p_true, q_pred, eps: float = 1e-12) -> np.ndarray:
    """Per-row KL(p || q) for distributions ``[N, K]`` (rows are renormalised; a row
    of ``p_true`` must have a positive sum). Returns ``[N]``."""
    p = np.asarray(p_true, dtype=np.float64)
    q = np.asarray(q_pred, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 2:
        raise ValueError(f"p_true and q_pred must both be [N, K]; got {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("distributions must be non-negative")
    ps = p.sum(axis=1, keepdims=True)
    if (ps <= 0).any():
        raise ValueError("every row of p_true needs a positive sum")
    p = p / ps
    q = np.clip(q / np.maximum(q.sum(axis=1, keepdims=True), eps), eps, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q)), 0.0)
    return terms.sum(axis=1)


def mean_kl_divergence(p_true, q_pred, eps: float = 1e-12) -> float:
    """Mean over items of KL(p || q) (the LDL papers' "KL" figure)."""
    return float(kl_divergence(p_true, q_pred, eps).mean())
