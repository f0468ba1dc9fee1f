"""The aesthetics family: tag-aware image quality assessment.

After Sugiura & Yamauchi, "テキストタグを併用した画像の品質評価モデルの提案"
(a proposal of an image quality assessment model that also uses text tags): a
frozen CLIP-like backbone, a cross-attention of the image over its semantic tags,
trained with a ranking + MSE loss on AVA (Murray et al., CVPR 2012).

Two kinds of task share the evaluator (:mod:`.evaluator`):

- quality tasks (AVA, :mod:`.ava`; the embedded set, :mod:`.synthetic`): the
  probes ``image_only`` (the paper's "Ours (w/o Text)"), ``tag_aware`` (the
  paper's model, :mod:`.heads`) and ``zero_shot`` (a prompt-pair reference, not in
  the paper), scored in :mod:`.quality`;
- parameter sweeps (the paper's CFG experiment, :mod:`.param_sweep`; the embedded
  degradation sweep): Spearman(score, parameter) per prompt, :mod:`.sweep`. The
  probes are trained on the task named by ``depends_on: {scorer: <task>}``.

Metric definitions: :mod:`.metrics`. ``Error`` is the mean absolute error; the
paper's Table 1 adds a figure in parentheses that its text calls the error
variance, most likely the variance of the absolute errors, reported here as
``Error_var`` (``Error_std`` is its square root; both are population figures,
ddof = 0). ``KL`` is ``KL(P_true || P_pred)`` between the test-set histograms of
true and predicted scores after adding ``kl_epsilon`` (default 1e-4) to every bin
of both; with empty predicted bins it depends strongly on that epsilon.

This module holds the hooks and stays light
(``ctxbench list`` imports every family): the evaluator, loaders, metrics and plots
are imported when first used. Task files: ``tasks/aesthetics/``.
"""

from __future__ import annotations

from pathlib import Path

from ...hooks import hookimpl
from ...lazy import lazy, lazy_value
from ...registrations import FamilySpec, LoaderSpec, MetricSpec
from .options import (AVA_OPTIONS, PARAM_SWEEP_OPTIONS, SYNTHETIC_QUALITY_OPTIONS,
                      SYNTHETIC_SWEEP_OPTIONS)
from .protocol import FAMILY, PROTOCOL_DEFAULTS, check_protocol, metric_names

REF = ("Sugiura & Yamauchi, tag-aware image quality assessment, Table 1; NIMA (Talebi & "
       "Milanfar, IEEE TIP 2018)")


evaluate = lazy(".evaluator:evaluate", __name__)
load_ava = lazy(".ava:load_ava", __name__)
load_param_sweep = lazy(".param_sweep:load_param_sweep", __name__)
load_synthetic_quality = lazy(".synthetic:load_quality", __name__, name="load_synthetic_quality")
load_synthetic_sweep = lazy(".synthetic:load_sweep", __name__, name="load_synthetic_sweep")
# not named ``plots``: importing the submodule ``.plots`` would rebind that attribute
report_plots = lazy_value(".plots:PLOTS", __name__, name="report_plots")


@hookimpl
def ctxbench_families():
    return [FamilySpec(
        name=FAMILY, evaluate=evaluate,
        description="tag-aware image quality: image-only and tag-aware probes (ranking + "
                    "lambda*MSE), Error/LCC/SRCC/KL/EMD, per-tag table; parameter sweeps "
                    "(Spearman with CFG scale / degradation)",
        protocol_defaults=PROTOCOL_DEFAULTS, check_protocol=check_protocol,
        metric_names=metric_names, plots=report_plots)]


@hookimpl
def ctxbench_dataset_loaders():
    return [
        LoaderSpec("ava", load_ava, FAMILY, "AVA (AVA.txt, tags.txt, challenges.txt, official "
                   "lists; or a Hugging Face datasets copy)", dict(AVA_OPTIONS)),
        LoaderSpec("param_sweep", load_param_sweep, FAMILY, "generated images labelled with a "
                   "generation parameter (<root>/<prompt_id>/<param>/<image> or a manifest CSV)",
                   dict(PARAM_SWEEP_OPTIONS)),
        LoaderSpec("synthetic_aesthetics", load_synthetic_quality, FAMILY,
                   "embedded AVA-like set from the synthetic world (quality knobs, votes, tags)",
                   dict(SYNTHETIC_QUALITY_OPTIONS)),
        LoaderSpec("synthetic_degradation_sweep", load_synthetic_sweep, FAMILY,
                   "embedded stand-in for the CFG experiment: scenes at increasing degradation",
                   dict(SYNTHETIC_SWEEP_OPTIONS)),
    ]


@hookimpl
def ctxbench_metrics():
    return [
        MetricSpec("quality.error", lazy(".metrics:mean_abs_error", __name__),
                   "Error: mean absolute error mean|pred - MOS| over test images", FAMILY,
                   higher_is_better=False, reference=REF),
        MetricSpec("quality.error_var", lazy(".metrics:abs_error_variance", __name__),
                   "Error_var: population variance (ddof=0) of |pred - MOS|; what the paper "
                   "calls error variance (most likely its Table 1 figure in parentheses)",
                   FAMILY, higher_is_better=False, reference=REF),
        MetricSpec("quality.error_std", lazy(".metrics:abs_error_std", __name__),
                   "Error_std: population std (ddof=0) of |pred - MOS|, sqrt(Error_var)",
                   FAMILY, higher_is_better=False, reference=REF),
        MetricSpec("quality.lcc", lazy(".metrics:lcc", __name__), "Pearson linear correlation (no logistic fit)",
                   FAMILY, reference=REF),
        MetricSpec("quality.lcc_logistic", lazy(".metrics:lcc_logistic", __name__),
                   "Pearson after the VQEG 4-parameter logistic fit", FAMILY,
                   reference="VQEG Phase I final report (2000), 4-parameter logistic"),
        MetricSpec("quality.srcc", lazy(".metrics:srcc", __name__),
                   "Spearman rank correlation (average ranks for ties)", FAMILY, reference=REF),
        MetricSpec("quality.hist_kl", lazy(".metrics:histogram_kl", __name__),
                   "KL: KL(P_true || P_pred) = sum p log(p/q) in nats between the test-set "
                   "histograms of true (p) and predicted (q) scores (10 unit bins over "
                   "[0.5, 10.5] by default), eps = kl_epsilon (default 1e-4) added to every "
                   "bin of both then renormalised; with empty predicted bins the value "
                   "depends strongly on eps (same direction as scipy.stats.entropy(p, q))",
                   FAMILY, higher_is_better=False, reference=REF),
        MetricSpec("quality.hist_emd", lazy(".metrics:histogram_emd", __name__),
                   "EMD: NIMA-form EMD (r=2) between test-set score histograms", FAMILY,
                   higher_is_better=False, reference=REF),
        MetricSpec("quality.nima_emd", lazy(".metrics:nima_emd", __name__),
                   "NIMA_EMD: per-image EMD (r=2) between predicted and true 10-bin vote "
                   "distributions, averaged over test images",
                   FAMILY, higher_is_better=False,
                   reference="NIMA (Talebi & Milanfar, IEEE TIP 2018), Eq. 1"),
    ]


@hookimpl
def ctxbench_task_dirs():
    import ctxbench_tasks
    return [Path(ctxbench_tasks.__file__).parent / FAMILY]
