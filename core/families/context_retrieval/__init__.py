"""The context_retrieval family: "same image, different meaning" (Tsutsumi & Kohita).

Its hooks, registered with pluggy like a third-party family's. This module stays
light (``ctxbench list`` imports every family): the evaluator, the loaders and the
plots are imported only when used. Task files: ``tasks/context_retrieval/``.
"""

from __future__ import annotations

from pathlib import Path

from ...hooks import hookimpl
from ...registrations import FamilySpec, LoaderSpec, MetricSpec
from .protocol import PROTOCOL_DEFAULTS, check_protocol, metric_names

FAMILY = "context_retrieval"


def evaluate(request):
    """The family's evaluator (:func:`.evaluator.evaluate`), imported on first use."""
    from .evaluator import evaluate as run
    return run(request)


def load_json(options: dict, ctx):
    from .data import load_from_options
    return load_from_options(options, ctx)


def load_synthetic(options: dict, ctx):
    from .synthetic import load_from_options
    return load_from_options(options, ctx)


def recall_at_k(scores, targets, ks, tie_tolerance: float = 1e-6):
    """Single-target Recall@K with ties as expected recall (:func:`.metrics.recall_at_k`)."""
    from .metrics import recall_at_k as metric
    return metric(scores, targets, ks, tie_tolerance)


def load_plots():
    from .plots import PLOTS
    return PLOTS


@hookimpl
def ctxbench_families():
    return [FamilySpec(
        name=FAMILY, evaluate=evaluate,
        description="same image, different meaning: Recall@K per level L1-L4 under 4 context "
                    "injection patterns, cluster bootstrap over groups",
        protocol_defaults=PROTOCOL_DEFAULTS, check_protocol=check_protocol,
        metric_names=metric_names, plots=load_plots)]


@hookimpl
def ctxbench_dataset_loaders():
    return [
        LoaderSpec("context_retrieval_json", load_json, FAMILY,
                   "real data in ctxbench's documented JSON format "
                   "(ctxbench.families.context_retrieval.data)",
                   {"path": "the JSON file (relative: to the task file's folder)",
                    "image_root": "folder image paths are relative to (default: the JSON's folder)"}),
        LoaderSpec("synthetic_context_retrieval", load_synthetic, FAMILY,
                   "embedded synthetic movies built from the synthetic world",
                   {"n_groups": "number of groups (movies)", "images_per_group": "images per group",
                    "stories_per_group": "stories per group", "seed": "generator seed",
                    "size": "image side in pixels"}),
    ]


@hookimpl
def ctxbench_metrics():
    return [MetricSpec("recall@k", recall_at_k,
                       "single-target Recall@K with ties counted as expected recall",
                       family=FAMILY,
                       reference="Tsutsumi & Kohita, \"Same image, different meaning\": "
                                 "Recall@1/@5 over the image pool")]


@hookimpl
def ctxbench_task_dirs():
    import ctxbench_tasks
    return [Path(ctxbench_tasks.__file__).parent / FAMILY]
