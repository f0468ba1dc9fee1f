"""The domain_adaptation family: its hooks (for pluggy) and registrations.

Light on purpose: ``ctxbench --help`` and ``list tasks`` import every family, so the
evaluator (torch), the loaders and the plots are imported only when used. Task
files are in tasks/domain_adaptation/.
"""

from pathlib import Path

from ...hooks import hookimpl
from ...lazy import lazy, lazy_value
from ...registrations import FamilySpec, LoaderSpec, MetricSpec
from .protocol import PROTOCOL_DEFAULTS, check_protocol, metric_names


evaluate = lazy(".evaluator:evaluate", __name__)
load_plots = lazy_value(".plots:PLOTS", __name__)      # not ``plots``: that is the submodule
top1_accuracy = lazy(".metrics:top1_accuracy", __name__)
mean_per_class_accuracy = lazy(".metrics:mean_per_class_accuracy", __name__)   # GeoNet's official
mean_present_class_accuracy = lazy(".metrics:mean_present_class_accuracy", __name__)


LIST_OPTIONS = {"root": "dataset folder; list paths are relative to it",
                "lists": "folder holding {domain}_{train,test}.txt (default: root)",
                "domains": "domains to load", "captions": "optional caption JSON/JSONL (see "
                "ctxbench.families.domain_adaptation.lists.read_caption_file)",
                "name": "dataset name in results"}


@hookimpl
def ctxbench_families():
    return [FamilySpec(
        name="domain_adaptation", evaluate=evaluate,
        description="classification under domain shift (TRUST): zero-shot, source-only probe and "
                    "caption-guided adaptation; target top-1 and mean per-class accuracy",
        protocol_defaults=PROTOCOL_DEFAULTS, check_protocol=check_protocol,
        metric_names=metric_names, plots=load_plots)]


@hookimpl
def ctxbench_dataset_loaders():
    return [
        LoaderSpec("synthetic_domain", lazy(".synthetic:load_synthetic", __name__), "domain_adaptation",
                   "embedded: world shapes drawn in the 4 STYLES, captions of varying quality",
                   {"domains": "styles used as domains", "classes": "shapes used as classes",
                    "per_class_train": "images per class and domain (train)",
                    "per_class_val": "(val)", "per_class_test": "(test)",
                    "caption_quality": "mix {full, partial, wrong, unrelated} or domain -> mix",
                    "size": "image side in pixels", "seed": "generator seed"}),
        LoaderSpec("domainnet_lists", lazy(".lists:load_domainnet", __name__), "domain_adaptation",
                   "DomainNet {domain}_{train,test}.txt lists (+ optional captions)", LIST_OPTIONS),
        LoaderSpec("geonet_json", lazy(".geonet:load_geonet", __name__), "domain_adaptation",
                   "GeoNet (GeoImNet / GeoPlaces) metadata JSON with captions and tags",
                   {"root": "image folder the JSON filenames are relative to",
                    "metadata": "the metadata JSON", "domains": "default [usa, asia]",
                    "text_fields": "metadata fields joined into the caption (default [caption])",
                    "name": "dataset name in results"}),
        LoaderSpec("geonet_lists", lazy(".lists:load_geonet_lists", __name__), "domain_adaptation",
                   "GeoNet UniDA lists usa/train/<class>/<id>.jpg <label>", LIST_OPTIONS),
        LoaderSpec("hf_domains", lazy(".hf_folder:load_hf_domains", __name__), "domain_adaptation",
                   "a datasets save_to_disk folder with image, label, domain, caption columns",
                   {"path": "save_to_disk folder", "image_column": "default image",
                    "label_column": "default label", "domain_column": "default domain",
                    "caption_column": "default caption", "tags_column": "default tags",
                    "domains": "keep only these", "class_names": "class names (default: label feature)",
                    "name": "dataset name in results"}),
    ]


@hookimpl
def ctxbench_metrics():
    return [
        MetricSpec("top1_accuracy", top1_accuracy, "overall top-1 accuracy on the target test split",
                   family="domain_adaptation", higher_is_better=True,
                   reference="TRUST (Litrico et al., AAAI 2026) reports top-1 accuracy"),
        MetricSpec("mean_per_class_accuracy", mean_per_class_accuracy,
                   "mean over all n_classes of per-class recall, a class absent from the test "
                   "set counting 0 (reported as 'mpca')",
                   family="domain_adaptation", higher_is_better=True,
                   reference="GeoNet official metric (Kalluri et al., CVPR 2023; official code "
                             "percls_accuracy(all_pred, all_label, num_class).mean())"),
        MetricSpec("mean_present_class_accuracy", mean_present_class_accuracy,
                   "mean over the classes present in the test set of per-class recall "
                   "(reported as 'mpca_present')",
                   family="domain_adaptation", higher_is_better=True,
                   reference="scikit-learn balanced_accuracy_score"),
    ]


@hookimpl
def ctxbench_task_dirs():
    import ctxbench_tasks
    return [Path(ctxbench_tasks.__file__).parent / "domain_adaptation"]
