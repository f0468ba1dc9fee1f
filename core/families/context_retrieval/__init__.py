"""The context_retrieval family: "same image, different meaning" (Tsutsumi & Kohita).

Its hooks, registered with pluggy like a third-party family's. This module stays
light (``ctxbench list`` imports every family): the evaluator, the loaders and the
plots are imported only when used. Task files: ``tasks/context_retrieval/``.
"""

from __future__ import annotations

from pathlib import Path

from ...hooks import hookimpl
from ...lazy import lazy, lazy_value
from ...registrations import FamilySpec, LoaderSpec, MetricSpec
from .protocol import PROTOCOL_DEFAULTS, check_protocol, metric_names

FAMILY = "context_retrieval"


evaluate = lazy(".evaluator:evaluate", __name__)
load_json = lazy(".data:load_from_options", __name__, name="load_json")
load_synthetic = lazy(".synthetic:load_from_options", __name__, name="load_synthetic")
recall_at_k = lazy(".metrics:recall_at_k", __name__)   # ties count as expected recall
load_plots = lazy_value(".plots:PLOTS", __name__)      # not ``plots``: that is the submodule


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
