"""The aesthetics family (hooks re-exported for pluggy)."""

from .evaluator import ctxbench_dataset_loaders, ctxbench_families, ctxbench_metrics  # noqa: F401
