"""Scoring the protocols on the test split: one paired bootstrap over test items for
every protocol and metric, metric values with 95% CIs, the fusion gain, and the
learned relevance gate of each metadata field.

Every metric and protocol uses the *same* resamples (Efron & Tibshirani, "An
Introduction to the Bootstrap", 1993, ch. 6: percentile intervals), so the fusion
gain (fusion minus image-only) is a paired bootstrap with a two-sided p-value.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...bootstrap import CHUNK, BootstrapSamples, two_sided_p
from ...results import MetricValue
from .metrics import confusion_matrix, scores_from_confusion
from .protocol import SCORES


def paired_bootstrap(y_true: np.ndarray, preds: dict[str, np.ndarray], n_classes: int,
                     n_resamples: int, seed: int, kl: dict[str, np.ndarray] | None = None
                     ) -> dict[str, dict[str, BootstrapSamples]]:
    """Bootstrap over test items, the same resamples for every prediction set.

    Resamples are drawn exactly as :func:`ctxbench.bootstrap.cluster_means` draws them
    (``default_rng(seed)``, multinomial counts in blocks of ``CHUNK``), so a mean over
    items here equals ``cluster_means(values, None, n_resamples, seed)``. Returns
    name -> metric -> BootstrapSamples (per_class_accuracy has one column per class).
    """
    q = len(y_true)
    rng = np.random.default_rng(seed)
    names = list(preds)
    acc: dict[str, dict[str, list[np.ndarray]]] = {n: {} for n in names}
    for start in range(0, n_resamples, CHUNK):
        b = min(CHUNK, n_resamples - start)
        w = rng.multinomial(q, np.full(q, 1.0 / q), size=b).astype(np.float64)
        for name in names:
            scores = scores_from_confusion(confusion_matrix(y_true, preds[name], n_classes, counts=w))
            for metric in ("accuracy", "macro_f1", "weighted_f1", "per_class_accuracy"):
                acc[name].setdefault(metric, []).append(scores[metric])
            if kl is not None and name in kl:
                acc[name].setdefault("kl", []).append(w @ kl[name] / q)
    out: dict[str, dict[str, BootstrapSamples]] = {}
    for name in names:
        point = scores_from_confusion(confusion_matrix(y_true, preds[name], n_classes))
        out[name] = {}
        for metric, chunks in acc[name].items():
            samples = np.concatenate(chunks, axis=0)
            samples = samples if samples.ndim == 2 else samples[:, None]
            p = np.atleast_1d(kl[name].mean() if metric == "kl" else point[metric]).astype(np.float64)
            out[name][metric] = BootstrapSamples(p, samples)
    return out



def metric_values(boot: dict[str, BootstrapSamples], n: int, classes: Sequence[str],
                  prefix: str) -> dict[str, MetricValue]:
    """``<prefix>/<score>`` (and ``kl``) with percentile CIs, and the accuracy of each
    class (n/a for a class without test items)."""
    out = {}
    for metric in (*SCORES, "kl"):
        if metric not in boot:
            continue
        b = boot[metric]
        ci = b.ci()[0]
        out[f"{prefix}/{metric}"] = MetricValue(float(b.point[0]), (float(ci[0]), float(ci[1])), n,
                                                note="mean KL(true || predicted)" if metric == "kl" else "")
    pc = boot["per_class_accuracy"]
    cis = pc.ci()
    point = pc.point
    for k, cls in enumerate(classes):
        if np.isfinite(point[k]):
            out[f"{prefix}/class_accuracy/{cls}"] = MetricValue(float(point[k]),
                                                                (float(cis[k, 0]), float(cis[k, 1])), n)
        else:
            out[f"{prefix}/class_accuracy/{cls}"] = MetricValue.not_applicable("no test item of this class")
    return out


def gain_values(boot: dict[str, dict[str, BootstrapSamples]], n: int) -> dict[str, MetricValue]:
    """``fusion_gain/<score>``: fusion_probe minus image_probe on the same resamples
    (paired), with the percentile CI of the difference and a two-sided p-value."""
    out = {}
    for metric in SCORES:
        diff = boot["fusion_probe"][metric].samples[:, 0] - boot["image_probe"][metric].samples[:, 0]
        point = float(boot["fusion_probe"][metric].point[0] - boot["image_probe"][metric].point[0])
        ci = BootstrapSamples(np.array([point]), diff[:, None]).ci()[0]
        out[f"fusion_gain/{metric}"] = MetricValue(
            point, (float(ci[0]), float(ci[1])), n, float(two_sided_p(diff[:, None])[0]),
            note="fusion_probe minus image_probe; paired bootstrap over test items")
    return out


def relevance(gates: np.ndarray, mask: np.ndarray, fields: list[str]
              ) -> tuple[list[dict], dict[str, MetricValue]]:
    """Learned relevance of each field on the test items: the mean gate over the items
    where *every* field is present (comparable across fields: same items, gates sum
    to 1; ``uniform_share`` = 1 / number of fields), falling back to the items where
    the field is present when no test item has every field (``uniform_share`` = mean
    of 1 / number of present fields). Rows also give the mean over the items where
    the field is present and its coverage."""
    full = mask.all(1)
    n_present = np.maximum(mask.sum(1), 1)
    rows, metrics = [], {}
    for f, name in enumerate(fields):
        present = mask[:, f]
        if not present.any():
            continue
        when_present = float(gates[present, f].mean())
        items = full if full.any() else present
        value = float(gates[items, f].mean())
        rows.append({"source": name, "relevance": round(value, 4),
                     "relevance_when_present": round(when_present, 4),
                     "uniform_share": round(float((1.0 / n_present[items]).mean()), 4),
                     "coverage": round(float(present.mean()), 4)})
        metrics[f"fusion_probe/relevance/{name}"] = MetricValue(
            value, None, int(items.sum()),
            note="mean learned relevance gate over test items with "
                 + ("every field present" if full.any() else "this field present"))
    return rows, metrics
