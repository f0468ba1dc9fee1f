"""Every built-in family keeps the contract a third-party family follows: declared
protocol check, exact metric names and report plots, whatever was imported before."""

import importlib

import pytest

from ctxbench.plugin_host import BUILTIN_MODULES, load_plugins

FAMILIES = [m.rsplit(".", 1)[1] for m in BUILTIN_MODULES]


@pytest.fixture(scope="module")
def host_after_plot_imports():
    # importing a family's ``plots`` submodule binds that name on the package: a hook
    # function of the same name would be shadowed (seen: FamilySpec(plots=<module>))
    for module in BUILTIN_MODULES:
        importlib.import_module(module + ".plots")
    return load_plugins(entry_points=False)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_declares_its_contract(family, host_after_plot_imports):
    host = host_after_plot_imports
    assert not host.failures, host.failures
    spec = host.families.get(family)
    assert callable(spec.evaluate) and callable(spec.check_protocol)
    assert callable(spec.metric_names) and callable(spec.plots)
    from ctxbench.task_catalog import TaskCatalog
    catalog = TaskCatalog(host.task_dirs, host.families, host.loaders)
    task = next(catalog.tasks.get(n) for n in catalog.tasks if catalog.tasks.get(n).family == family)
    names = list(spec.metric_names({**spec.protocol_defaults, **task.protocol}))
    assert names and all(isinstance(n, str) and "*" not in n for n in names)
    plots = spec.plots()
    assert plots and all(callable(fn) for fn in plots)
    assert any(host.loaders.get(n).family == family for n in host.loaders.names())


HEAVY = ("torch", "numpy", "pandas", "matplotlib", "transformers", "datasets")


@pytest.mark.parametrize("module", BUILTIN_MODULES)
def test_family_package_and_its_hooks_import_no_heavy_library(module):
    """`ctxbench --help`/`list` import every family: its package and hooks stay light
    (the evaluator, loaders and plots are imported lazily)."""
    import subprocess
    import sys
    code = (f"import sys, {module} as f; f.ctxbench_families(); f.ctxbench_dataset_loaders(); "
            f"f.ctxbench_metrics(); print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]
