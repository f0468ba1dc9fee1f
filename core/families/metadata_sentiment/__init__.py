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
from ...lazy import lazy, lazy_value
from ...registrations import FamilySpec, MetricSpec
from .loaders import LOADERS
from .protocol import FAMILY, PROTOCOL_DEFAULTS, check_protocol, metric_names


evaluate = lazy(".evaluator:evaluate", __name__)
load_plots = lazy_value(".plots:PLOTS", __name__)      # not ``plots``: that is the submodule
accuracy = lazy(".metrics:accuracy", __name__)
weighted_f1 = lazy(".metrics:weighted_f1", __name__)
macro_f1 = lazy(".metrics:macro_f1", __name__)
f1_positive = lazy(".metrics:f1_positive", __name__)
per_class_accuracy = lazy(".metrics:per_class_accuracy", __name__)
accuracy_drop = lazy(".metrics:accuracy_drop", __name__)          # a field's contribution
mean_kl_divergence = lazy(".metrics:mean_kl_divergence", __name__)


@hookimpl
def ctxbench_families():
    return [FamilySpec(
        name=FAMILY, evaluate=evaluate,
        description="image sentiment with metadata (SentiFormer): zero-shot, image-only linear probe, "
                    "relevance-gated metadata fusion probe; accuracy, weighted/macro F1 (and positive-class "
                    "F1 when binary), fusion gain, per-field drop-one contribution",
        protocol_defaults=PROTOCOL_DEFAULTS, check_protocol=check_protocol,
        metric_names=metric_names, plots=load_plots)]


@hookimpl
def ctxbench_dataset_loaders():
    return list(LOADERS)


@hookimpl
def ctxbench_metrics():
    ref = "SentiFormer (arXiv:2502.15322) reports accuracy and F1; sklearn f1_score conventions"
    return [
        MetricSpec("sentiment.accuracy", accuracy, "fraction of test items classified correctly", FAMILY,
                   reference=ref),
        MetricSpec("sentiment.weighted_F1", weighted_f1, "support-weighted mean of per-class F1 "
                   "(sklearn average='weighted')", FAMILY, reference=ref),
        MetricSpec("sentiment.macro_F1", macro_f1, "unweighted mean of per-class F1 over the classes in "
                   "true or predicted labels (sklearn average='macro')", FAMILY, reference=ref),
        MetricSpec("sentiment.F1_positive", f1_positive, "binary tasks: F1 of the positive class 1 "
                   "(sklearn pos_label=1)", FAMILY, reference=ref),
        MetricSpec("sentiment.per_class_accuracy", per_class_accuracy, "recall of each class", FAMILY,
                   reference=ref),
        MetricSpec("sentiment.field_contribution", accuracy_drop, "fusion_probe/contribution/<field>: "
                   "test accuracy minus accuracy with the field masked as absent on every item (the "
                   "trained model, no retraining); paired bootstrap CI", FAMILY,
                   reference="drop-one-field (leave-one-modality-out) ablation at test time"),
        MetricSpec("sentiment.kl_divergence", mean_kl_divergence, "mean over items of KL(true distribution "
                   "|| predicted), natural log, predicted probabilities clipped at eps = 1e-12 (the value "
                   "grows like log(1/eps) where a predicted class has probability 0)",
                   FAMILY, higher_is_better=False,
                   reference="label distribution learning (Twitter_LDL, Yang et al. 2017)"),
    ]


@hookimpl
def ctxbench_task_dirs():
    import ctxbench_tasks
    return [Path(ctxbench_tasks.__file__).parent / FAMILY]
