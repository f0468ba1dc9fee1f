"""The aesthetics family (hooks re-exported for pluggy); its task files are in tasks/aesthetics/."""

from pathlib import Path

from ...hooks import hookimpl
from .evaluator import ctxbench_dataset_loaders, ctxbench_families, ctxbench_metrics  # noqa: F401


@hookimpl
def ctxbench_task_dirs():
    import ctxbench_tasks
    return [Path(ctxbench_tasks.__file__).parent / "aesthetics"]
