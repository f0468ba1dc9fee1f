"""The metadata_sentiment family: image sentiment helped by metadata (SentiFormer,
Feng et al. 2025, arXiv:2502.15322).

Its hooks, registered with pluggy like a third-party family's. This module stays
light (``ctxbench list`` imports every family): the evaluator, the readers, the
metrics and the plots are imported only when used. Task files:
``tasks/metadata_sentiment/``.
"""

from __future__ import annotations

from pathlib import Path

from ...hooks import hookimpl
from ...registrations import FamilySpec, MetricSpec
from .loaders import LOADERS
from .protocol import FAMILY, PROTOCOL_DEFAULTS, check_protocol, metric_names


def evaluate(request):
    """The family's evaluator (:func:`.evaluator.evaluate`), imported on first use."""
    from .evaluator import evaluate as run
    return run(request)


def plots():
    from .plots import PLOTS
    return PLOTS


def accuracy(y_true, y_pred) -> float:
    """Fraction of items classified correctly (:func:`.metrics.accuracy`)."""
    from .metrics import accuracy as metric
    return metric(y_true, y_pred)


def weighted_f1(y_true, y_pred, n_classes=None) -> float:
    """Support-weighted mean of per-class F1 (:func:`.metrics.weighted_f1`)."""
    from .metrics import weighted_f1 as metric
    return metric(y_true, y_pred, n_classes)


def macro_f1(y_true, y_pred, n_classes=None) -> float:
    """Unweighted mean of per-class F1 (:func:`.metrics.macro_f1`)."""
    from .metrics import macro_f1 as metric
    return metric(y_true, y_pred, n_classes)


def per_class_accuracy(y_true, y_pred, n_classes=None):
    """Recall of each class (:func:`.metrics.per_class_accuracy`)."""
    from .metrics import per_class_accuracy as metric
    return metric(y_true, y_pred, n_classes)


def mean_kl_divergence(p_true, q_pred, eps: float = 1e-12) -> float:
    """Mean KL(true || predicted) (:func:`.metrics.mean_kl_divergence`)."""
    from .metrics import mean_kl_divergence as metric
    return metric(p_true, q_pred, eps)


@hookimpl
def ctxbench_families():
    return [FamilySpec(
        name=FAMILY, evaluate=evaluate,
        description="image sentiment with metadata (SentiFormer): zero-shot, image-only linear probe, "
                    "relevance-gated metadata fusion probe; accuracy, weighted/macro F1, fusion gain",
        protocol_defaults=PROTOCOL_DEFAULTS, check_protocol=check_protocol,
        metric_names=metric_names, plots=plots)]


@hookimpl
def ctxbench_dataset_loaders():
    return list(LOADERS)


@hookimpl
def ctxbench_metrics():
    ref = "SentiFormer (arXiv:2502.15322) reports accuracy and F1; sklearn f1_score conventions"
    return [
        MetricSpec("sentiment.accuracy", accuracy, "fraction of test items classified correctly", FAMILY,
                   reference=ref),
        MetricSpec("sentiment.weighted_f1", weighted_f1, "support-weighted mean of per-class F1", FAMILY,
                   reference=ref),
        MetricSpec("sentiment.macro_f1", macro_f1, "unweighted mean of per-class F1 (classes in true or "
                   "predicted)", FAMILY, reference=ref),
        MetricSpec("sentiment.per_class_accuracy", per_class_accuracy, "recall of each class", FAMILY,
                   reference=ref),
        MetricSpec("sentiment.kl_divergence", mean_kl_divergence, "mean KL(true distribution || predicted)",
                   FAMILY, higher_is_better=False,
                   reference="label distribution learning (Twitter_LDL, Yang et al. 2017)"),
    ]


@hookimpl
def ctxbench_task_dirs():
    import ctxbench_tasks
    return [Path(ctxbench_tasks.__file__).parent / FAMILY]
