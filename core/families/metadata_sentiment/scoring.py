"""Scoring the protocols on the test split: one paired bootstrap over test items for
every protocol and metric, metric values with 95% CIs, the fusion gain, and per
metadata field its contribution and its learned gate.

Every metric and protocol uses the *same* resamples (percentile intervals; Efron &
Tibshirani, "An Introduction to the Bootstrap", 1993), so differences -- the fusion
gain (fusion minus image-only) and each field's contribution -- are paired bootstraps
with a two-sided p-value.

A field's **contribution** is the drop in test accuracy when the *trained* fusion
model sees the field as absent on every test item (``fusion_probe/contribution/
<field>``, with ``fusion_probe/accuracy_without/<field>``): its gate is masked out
of the softmax, which then renormalises over the remaining fields, exactly as for an
item where the field is missing. This is drop-one-field *ablation at test time*
(no retraining): cheap (one forward pass per field), and it answers "how much of
this model's accuracy goes through this field". Retraining without the field would
answer a different question (what a model could reach without it) at F extra
trainings. A field the model never saw missing is, when masked, an input outside
its training distribution; the figure then also includes the model's reaction to
that, which is why it is reported beside the gate and not instead of it.

The learned **gate** (``fusion_probe/gate_mean/<field>``) is the field's mean
relevance weight over the test items that have every field: how much weight the
head puts on the field, which is not how much the field helps (a noise field can
keep a large gate whose content the attention block then ignores).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...bootstrap import CHUNK, BootstrapSamples, two_sided_p
from ...results import MetricValue
from .metrics import confusion_matrix, positive_f1, scores_from_confusion
from .protocol import SCORES

#: Prediction-set name of the fusion model with ``field`` masked on every item.
WITHOUT = "fusion_probe without {}"


def _scores(conf: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    scores = scores_from_confusion(conf)
    out = {m: scores[m] for m in (*SCORES, "per_class_accuracy")}
    if n_classes == 2:
        out["F1_positive"] = positive_f1(scores["f1"])
    return out


def paired_bootstrap(y_true: np.ndarray, preds: dict[str, np.ndarray], n_classes: int,
                     n_resamples: int, seed: int, kl: dict[str, np.ndarray] | None = None
                     ) -> dict[str, dict[str, BootstrapSamples]]:
    """Bootstrap over test items, the same resamples for every prediction set.

    Resamples are drawn exactly as :func:`ctxbench.bootstrap.cluster_means` draws them
    (``default_rng(seed)``, multinomial counts in blocks of ``CHUNK``), so a mean over
    items here equals ``cluster_means(values, None, n_resamples, seed)``. Returns
    name -> metric -> BootstrapSamples (per_class_accuracy has one column per class;
    binary tasks add F1_positive).
    """
    q = len(y_true)
    rng = np.random.default_rng(seed)
    names = list(preds)
    acc: dict[str, dict[str, list[np.ndarray]]] = {n: {} for n in names}
    for start in range(0, n_resamples, CHUNK):
        b = min(CHUNK, n_resamples - start)
        w = rng.multinomial(q, np.full(q, 1.0 / q), size=b).astype(np.float64)
        for name in names:
            scores = _scores(confusion_matrix(y_true, preds[name], n_classes, counts=w), n_classes)
            for metric, value in scores.items():
                acc[name].setdefault(metric, []).append(value)
            if kl is not None and name in kl:
                acc[name].setdefault("kl", []).append(w @ kl[name] / q)
    out: dict[str, dict[str, BootstrapSamples]] = {}
    for name in names:
        point = _scores(confusion_matrix(y_true, preds[name], n_classes), n_classes)
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
    for metric in (*SCORES, "F1_positive", "kl"):
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


def paired_difference(a: BootstrapSamples, b: BootstrapSamples, n: int, note: str) -> MetricValue:
    """a minus b on the same resamples: point, percentile CI and two-sided p-value."""
    diff = a.samples[:, 0] - b.samples[:, 0]
    point = float(a.point[0] - b.point[0])
    ci = BootstrapSamples(np.array([point]), diff[:, None]).ci()[0]
    return MetricValue(point, (float(ci[0]), float(ci[1])), n, float(two_sided_p(diff[:, None])[0]),
                       note=note)


#: paired gains: name -> (better protocol, baseline protocol, what the gain measures)
GAINS = {"fusion_gain": ("fusion_probe", "image_probe", "the metadata helps"),
         "image_gain": ("image_probe", "zero_shot", "a probe on the image features beats zero-shot")}


def gain_values(boot: dict[str, dict[str, BootstrapSamples]], n: int) -> dict[str, MetricValue]:
    """``fusion_gain/<score>`` (fusion_probe minus image_probe) and ``image_gain/<score>``
    (image_probe minus zero_shot), each on the same resamples (paired), with the
    percentile CI of the difference and a two-sided p-value; a gain is given when
    both of its protocols ran."""
    out = {}
    for gain, (a, b, _) in GAINS.items():
        if a in boot and b in boot:
            out.update({f"{gain}/{metric}": paired_difference(
                boot[a][metric], boot[b][metric], n, f"{a} minus {b}; paired bootstrap over test items")
                for metric in (*SCORES, "F1_positive") if metric in boot[a]})
    return out


def field_rows(boot: dict[str, dict[str, BootstrapSamples]], gates: np.ndarray, mask: np.ndarray,
               fields: list[str], n: int) -> tuple[list[dict], dict[str, MetricValue]]:
    """The "field contribution" table and the per-field metrics (module docstring).

    ``gates`` [n, F] and ``mask`` [n, F] are the test items' gates and field presence.
    Gate: the mean over the items where *every* field is present (same items for all
    fields, gates sum to 1; ``uniform_gate`` = 1 / number of fields), falling back to
    the items where the field is present when no test item has every field
    (``uniform_gate`` = mean of 1 / number of present fields). Rows are in field order;
    ``rank`` 1 is the largest contribution."""
    full = mask.all(1)
    n_present = np.maximum(mask.sum(1), 1)
    full_acc = boot["fusion_probe"]["accuracy"]
    rows, metrics = [], {}
    for f, name in enumerate(fields):
        present = mask[:, f]
        if not present.any():
            continue
        without = boot[WITHOUT.format(name)]["accuracy"]
        drop = paired_difference(full_acc, without, n, "fusion_probe accuracy minus its accuracy with "
                                 "this field masked on every test item (trained model, no retraining); "
                                 "paired bootstrap over test items")
        ci = without.ci()[0]
        metrics[f"fusion_probe/contribution/{name}"] = drop
        metrics[f"fusion_probe/accuracy_without/{name}"] = MetricValue(
            float(without.point[0]), (float(ci[0]), float(ci[1])), n,
            note="fusion_probe accuracy with this field masked on every test item")
        items = full if full.any() else present
        gate = float(gates[items, f].mean())
        metrics[f"fusion_probe/gate_mean/{name}"] = MetricValue(
            gate, None, int(items.sum()), note="mean learned relevance gate (a weight, not a contribution) "
            "over test items with " + ("every field present" if full.any() else "this field present"))
        rows.append({"source": name, "accuracy_drop": round(drop.value, 4),
                     "ci_low": round(drop.ci[0], 4), "ci_high": round(drop.ci[1], 4),
                     "p_value": round(drop.p_value, 4), "accuracy_without": round(float(without.point[0]), 4),
                     "gate_mean": round(gate, 4),
                     "gate_mean_when_present": round(float(gates[present, f].mean()), 4),
                     "uniform_gate": round(float((1.0 / n_present[items]).mean()), 4),
                     "coverage": round(float(present.mean()), 4)})
    order = sorted(range(len(rows)), key=lambda i: -rows[i]["accuracy_drop"])
    for rank, i in enumerate(order, start=1):
        rows[i]["rank"] = rank
    return rows, metrics
