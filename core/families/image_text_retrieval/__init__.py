"""The image_text_retrieval family: zero-shot image-text retrieval on any set of images
with captions (CLIP_benchmark's protocol), no plugin needed.

Its hooks, registered with pluggy like a third-party family's. This module stays
light (``ctxbench list`` imports every family): the evaluator, the loaders, the
metrics and the plots are imported only when used. Task files:
``tasks/image_text_retrieval/``; a user's own set: docs/own_data.md.
"""

from __future__ import annotations

from pathlib import Path

from ...hooks import hookimpl
from ...lazy import lazy, lazy_value
from ...registrations import FamilySpec, LoaderSpec, MetricSpec
from .protocol import FAMILY, PROTOCOL_DEFAULTS, REFERENCE, check_protocol, metric_names

FOLDER_OPTIONS = {
    "captions": "the captions file: .csv (header image,caption), .jsonl ({image, caption}) or "
                ".json (COCO captions); relative: to the task file's folder",
    "images": "folder the image paths are relative to (default: the captions file's folder)",
    "format": "auto (from the suffix), csv, jsonl or coco",
    "image_column": "CSV column / JSONL field of the image path (default image)",
    "caption_column": "CSV column / JSONL field of the caption (default caption)",
}
SYNTH_OPTIONS = {"n_images": "number of images (default 200)",
                 "captions_per_image": "captions per image, 1-3 (default 3)",
                 "seed": "generator seed (default 0)", "size": "image side in pixels (default 64)"}


evaluate = lazy(".evaluator:evaluate", __name__)
load_folder = lazy(".data:load_from_options", __name__, name="load_folder")
load_synthetic = lazy(".synthetic:load_from_options", __name__, name="load_synthetic")
t2i_recall = lazy(".metrics:recall_at_k", __name__, name="t2i_recall")
i2t_recall = lazy(".metrics:multi_positive_recall_at_k", __name__, name="i2t_recall")
load_plots = lazy_value(".plots:PLOTS", __name__)      # not ``plots``: that is the submodule


@hookimpl
def ctxbench_families():
    return [FamilySpec(name=FAMILY, evaluate=evaluate, protocol_defaults=dict(PROTOCOL_DEFAULTS),
                       check_protocol=check_protocol, metric_names=metric_names, plots=load_plots,
                       description="zero-shot image-text retrieval on your own images and "
                                   "captions: text->image and image->text Recall@K, cluster "
                                   "bootstrap over images")]


@hookimpl
def ctxbench_dataset_loaders():
    return [LoaderSpec("image_text_folder", load_folder, FAMILY,
                       "a folder of images + a captions file (CSV, JSONL or COCO captions JSON); "
                       "see docs/own_data.md", dict(FOLDER_OPTIONS)),
            LoaderSpec("synthetic_image_text", load_synthetic, FAMILY,
                       "embedded scenes from the synthetic world, 3 captions each",
                       dict(SYNTH_OPTIONS))]


@hookimpl
def ctxbench_metrics():
    return [MetricSpec("t2i_recall@k", t2i_recall, "text->image Recall@K (one correct image per "
                       "caption), ties counted as expected recall", family=FAMILY,
                       reference=REFERENCE),
            MetricSpec("i2t_recall@k", i2t_recall, "image->text Recall@K (hit: any of the "
                       "image's captions in the top K), ties counted as expected recall",
                       family=FAMILY, reference=REFERENCE)]


@hookimpl
def ctxbench_task_dirs():
    import ctxbench_tasks
    return [Path(ctxbench_tasks.__file__).parent / FAMILY]
