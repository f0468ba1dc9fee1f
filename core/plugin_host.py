"""Plugin discovery: a pluggy PluginManager fed by the ``ctxbench`` entry-point group.

Every plugin is isolated: one that fails to import, or whose hook raises, is
recorded in :attr:`PluginHost.failures` (shown by ``ctxbench list backends``) and
the others still load.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import traceback
from dataclasses import dataclass
from pathlib import Path

import pluggy

from . import hooks as hookspecs
from .backend import BackendSpec
from .name_registry import Registry
from .registrations import FamilySpec, LoaderSpec, MetricSpec

ENTRY_POINT_GROUP = "ctxbench"

# ctxbench's own families are plugins too: each module holds its hook
# implementations (family, dataset loaders, metrics) and is registered on its own,
# so one that fails to import is reported like any third-party plugin.
BUILTIN_MODULES = (
    "ctxbench.families.context_retrieval",
    "ctxbench.families.multi_instance_retrieval",
    "ctxbench.families.metadata_sentiment",
    "ctxbench.families.domain_adaptation",
    "ctxbench.families.aesthetics",
    "ctxbench.families.image_text_retrieval",
)


@dataclass(frozen=True)
class PluginFailure:
    plugin: str       # entry-point name (or module name)
    source: str       # distribution or "module:hook"
    error: str        # one-line message
    details: str      # traceback tail


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class PluginHost:
    """Loaded plugins and the registries they filled."""

    def __init__(self, pm: pluggy.PluginManager, failures: list[PluginFailure],
                 provenance: dict[str, str] | None = None):
        self.pm = pm
        self.failures = list(failures)
        self.provenance = dict(provenance or {})   # plugin name -> "distribution==version"
        self.backends: Registry[BackendSpec] = Registry("backend")
        self.loaders: Registry[LoaderSpec] = Registry("loader")
        self.metrics: Registry[MetricSpec] = Registry("metric")
        self.families: Registry[FamilySpec] = Registry("family")
        self.task_dirs: list[Path] = []
        self._collect()

    def _call_each(self, hook_name: str):
        """Call every implementation of a hook separately, isolating failures."""
        hook = getattr(self.pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):  # registration order
            try:
                entries = impl.function()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit too: a plugin must not end the process
                self.failures.append(PluginFailure(
                    impl.plugin_name, f"hook {hook_name}", _describe(exc),
                    traceback.format_exc(limit=-3)))
                continue
            if entries is None:
                continue
            if not isinstance(entries, (list, tuple)):
                self.failures.append(PluginFailure(
                    impl.plugin_name, f"hook {hook_name}",
                    f"returned {type(entries).__name__}, expected a list (wrap it: return [spec])",
                    ""))
                continue
            yield impl.plugin_name, entries

    def _collect(self) -> None:
        for registry, hook, kind in (
            (self.backends, "ctxbench_backends", BackendSpec),
            (self.loaders, "ctxbench_dataset_loaders", LoaderSpec),
            (self.metrics, "ctxbench_metrics", MetricSpec),
            (self.families, "ctxbench_families", FamilySpec),
        ):
            for plugin, entries in self._call_each(hook):
                for entry in entries:
                    try:
                        if not isinstance(entry, kind):
                            raise TypeError(f"{hook} returned {type(entry).__name__}, "
                                            f"expected {kind.__name__}")
                        registry.add(entry.name, entry, origin=plugin)
                    except (TypeError, ValueError) as exc:
                        self.failures.append(PluginFailure(plugin, f"hook {hook}",
                                                           _describe(exc), ""))
        for plugin, dirs in self._call_each("ctxbench_task_dirs"):
            for d in dirs:
                if not isinstance(d, (str, Path)):
                    self.failures.append(PluginFailure(plugin, "hook ctxbench_task_dirs",
                                                       f"returned {type(d).__name__}, expected "
                                                       "a folder path", ""))
                    continue
                path = Path(d)
                if path.is_dir():
                    self.task_dirs.append(path)
                else:
                    self.failures.append(PluginFailure(
                        plugin, "hook ctxbench_task_dirs",
                        f"task directory does not exist: {path}", ""))


def load_plugins(extra_plugins: tuple = (), entry_points: bool = True) -> PluginHost:
    """Build the PluginManager: ctxbench's built-in families, then every entry point
    in the ``ctxbench`` group, then ``extra_plugins`` (objects or modules, for tests
    and programmatic use)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs.CtxbenchSpecs)
    failures: list[PluginFailure] = []
    provenance: dict[str, str] = {}
    from . import __version__
    for module_name in BUILTIN_MODULES:
        provenance[module_name] = f"ctxbench=={__version__}"
        _register(pm, module_name, lambda m=module_name: importlib.import_module(m), "ctxbench",
                  failures)
    if entry_points:
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep.dist, "name", "?") if ep.dist else "?"
            if pm.has_plugin(ep.name):
                continue  # the same distribution visible twice on sys.path
            version = getattr(ep.dist, "version", "?") if ep.dist else "?"
            provenance[ep.name] = f"{dist}=={version}"
            _register(pm, ep.name, ep.load, dist, failures)
    for i, plugin in enumerate(extra_plugins):
        name = getattr(plugin, "__name__", f"extra_plugin_{i}")
        provenance[name] = f"{name}==unversioned"
        pm.register(plugin, name=name)
    return PluginHost(pm, failures, provenance)


def _register(pm, name: str, load, source: str, failures: list[PluginFailure]) -> None:
    """Import and register one plugin; any failure (SystemExit at import included) is
    recorded with the file and line it came from, and the others still load."""
    try:
        pm.register(load(), name=name)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        failures.append(PluginFailure(name, source, _describe(exc) + _where(exc),
                                      traceback.format_exc(limit=-3)))


def _where(exc: BaseException) -> str:
    """' (at file:line)' of the innermost frame of ``exc``'s traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" (at {exc.filename}:{exc.lineno})"
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
