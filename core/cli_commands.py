"""The subcommands of ``ctxbench`` other than ``run`` (list, data, validate,
leaderboard, report, check-backend, export-epic, toy) and the helpers every command
shares (plugin host, task catalog, backend lookup). Heavy modules are imported
inside each command, so ``ctxbench --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import CtxbenchError


def _parse_backend_args(items: list[str], backends: list[str], host) -> dict[str, dict[str, Any]]:
    """``--backend-arg`` values per backend, checked against each backend's declared
    arguments (unknown name or wrong type: a usage error, before any model loads)."""
    from .backend import check_backend_args
    from .backend_args import parse_assignments
    parsed = parse_assignments(items, backends, "--backend-arg")
    return {n: check_backend_args(host.backends.get(n), parsed[n]) for n in backends}


def lookup_backend(host, name: str):
    """The backend spec ``name`` (naming a plugin that failed to load when unknown)."""
    from .backend import lookup_backend as lookup
    return lookup(host, name)


def _host():
    from .plugin_host import load_plugins
    return load_plugins()


def _registry(host, include_paths: list[str] | None = None, task_files=()):
    """Every installed task, plus task folders from --include-path and task files named
    directly in --task."""
    from .task_catalog import TaskCatalog
    dirs = list(host.task_dirs)
    for folder in include_paths or []:
        if not Path(folder).is_dir():
            raise CtxbenchError(f"--include-path {folder}: not a folder of task files")
        dirs.append(Path(folder))
    return TaskCatalog(dirs, host.families, host.loaders, task_files=list(task_files))


def cmd_list(args) -> int:
    from tabulate import tabulate
    host = _host()
    what = args.what
    if what == "tasks":
        registry = _registry(host, args.include_path)
        rows = [[t.name, t.family, ", ".join(g for g in t.all_groups if g != "all"),
                 t.description] for t in (registry.tasks.get(n) for n in registry.tasks.names())]
        print(tabulate(rows, ["task", "family", "groups", "description"], tablefmt="simple"))
        for path, exc in registry.invalid.items():
            print(f"INVALID {path}: {exc}")
    elif what == "backends" and args.details:
        from .backend import describe_backend
        spec = lookup_backend(host, args.details)
        origin = host.backends.origin(spec.name)
        print(describe_backend(spec, origin, host.provenance.get(origin, "?")))
    elif what == "backends":
        from .backend import default_run_scope
        rows = [[n, host.backends.origin(n), _default_scope(host.backends.get(n)),
                 _short(host.backends.get(n).description)] for n in host.backends.names()]
        print(tabulate(rows, ["backend", "plugin", "default", "description"], tablefmt="simple"))
        for n in host.backends.names():
            spec = host.backends.get(n)
            if spec.embedded_default and spec.embedded_families:
                print(f"\ndefault 'some': {default_run_scope(spec)}")
        print("\nctxbench list backends --details NAME: a backend's description and arguments")
    elif what == "metrics":
        rows = [[n, m.family, "higher" if m.higher_is_better else "lower", m.description,
                 m.reference] for n, m in ((n, host.metrics.get(n)) for n in host.metrics.names())]
        print(tabulate(rows, ["metric", "family", "better", "description", "reference"],
                       tablefmt="simple"))
    elif what == "families":
        rows = [[n, host.families.get(n).description] for n in host.families.names()]
        print(tabulate(rows, ["family", "description"], tablefmt="simple"))
    elif what == "loaders":
        rows = [[n, host.loaders.get(n).family, host.loaders.get(n).description]
                for n in host.loaders.names()]
        print(tabulate(rows, ["loader", "family", "description"], tablefmt="simple"))
    for f in host.failures:
        print(f"FAILED plugin {f.plugin} ({f.source}): {f.error}")
    return 0


def _default_scope(spec) -> str:
    """The listing's ``default`` column: yes, some (limited to ``embedded_families``,
    explained under the table) or empty."""
    if not spec.embedded_default:
        return ""
    return "some" if spec.embedded_families else "yes"


def _short(text: str, width: int = 90) -> str:
    """One line of at most ``width`` characters (the compact listing)."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


def cmd_data(args) -> int:
    """Where a task's data goes and whether it is there: the loader's own instructions
    (what each file is, its format, where to get it) or a count of what it loaded."""
    from .errors import DataNotFound
    from .registrations import LoadContext
    host = _host()
    for task in _registry(host).select(args.task):
        loader = host.loaders.get(task.loader)
        print(f"== {task.name} (loader {task.loader}, file {task.path})")
        for key, value in task.options.items():
            print(f"   option {key}: {value}")
        try:
            dataset = loader.load(dict(task.options), LoadContext(task.name, task.path))
        except DataNotFound as exc:
            print(f"   data not found. {exc}")
            continue
        size = len(dataset) if hasattr(dataset, "__len__") else None
        print("   data found" + (f": {size} items" if size is not None else "") +
              "; `ctxbench run --task " + task.name + "` will evaluate it")
    return 0


def cmd_validate(args) -> int:
    """Validate task files (and folders of them) exactly as a run would load them:
    schema, family protocol check, headline metrics, duplicate names, dependencies."""
    from .task_catalog import TaskCatalog
    host = _host()
    paths: list[Path] = []
    for p in map(Path, args.path):
        if p.is_dir():
            found = [x for x in sorted(p.rglob("*.yaml")) if not x.name.startswith("_")]
            if not found:
                raise CtxbenchError(f"{p}: no task files (*.yaml) in this folder")
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            raise CtxbenchError(f"{p}: no such file or folder")
    wanted = {x.resolve() for x in paths}
    catalog = TaskCatalog(host.task_dirs, host.families, host.loaders, task_files=sorted(wanted))
    by_path = {catalog.tasks.get(n).path.resolve(): catalog.tasks.get(n) for n in catalog.tasks}
    bad = 0
    for path in paths:
        spec, problem = by_path.get(path.resolve()), catalog.invalid.get(path.resolve())
        if problem is not None:
            bad += 1
            print(f"INVALID {problem}")
        elif spec is not None:
            print(f"ok      {path} (task {spec.name}, family {spec.family}, hash {spec.hash})")
    return 2 if bad else 0


def cmd_leaderboard(args) -> int:
    from .leaderboard import write_leaderboard
    results = Path(args.results)
    if not results.is_dir():
        raise CtxbenchError(f"--results {results}: not a folder of results JSON "
                            f"(ctxbench run writes them to results/<name>/)")
    out = Path(args.out) if args.out else results.parent / f"{results.name}.md"
    write_leaderboard(results, out, metric_specs=_host().metrics)
    print(out)
    return 0


def cmd_report(args) -> int:
    from .report import write_report
    _host()  # plugins may register plots for their families
    print(write_report(Path(args.results), args.out))
    return 0


def cmd_check_backend(args) -> int:
    from .device import resolve_device
    from .testing import run_conformance
    host = _host()
    spec = lookup_backend(host, args.name)
    backend_args = _parse_backend_args(args.backend_arg, [args.name], host)[args.name]
    report = run_conformance(spec, backend_args, resolve_device(args.device),
                             batch_size=args.batch_size, vary_args=not args.no_vary_args)
    print(report.summary())
    return 0 if report.ok else 1


def cmd_export_epic(args) -> int:
    from .families.multi_instance_retrieval.export import export_submission
    out = export_submission(Path(args.source), Path(args.out), sls_pt=args.sls_pt,
                            sls_tl=args.sls_tl, sls_td=args.sls_td, force=args.force)
    print(out)
    return 0


def cmd_toy_train(args) -> int:
    from .toy import main_train
    return main_train(args)


def cmd_toy_train_context(args) -> int:
    """``ctxbench toy train-context``: train toy_ctx over a toy_clip folder (default:
    the installed one)."""
    from .toy_context import train_toy_context
    base = args.base
    if base is None:
        from ctxbench_plugins.toy_clip_backend import MODEL_DIR
        base = MODEL_DIR
    train_toy_context(args.out, Path(base), seed=args.seed, steps=args.steps, threads=args.threads)
    return 0
