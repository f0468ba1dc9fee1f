"""Command-line interface (stable: scripts and CI call it).

    ctxbench run --task all                 # embedded default: every task, default backends
    ctxbench run --task context_retrieval --backend open_clip --backend-arg arch=ViT-B-32 --backend-arg pretrained=laion2b_s34b_b79k
    ctxbench list tasks                     # also: backends, metrics, families, loaders
    ctxbench list backends --details open_clip                 # a backend's arguments
    ctxbench validate tasks/
    ctxbench leaderboard --results leaderboards/embedded --out embedded.md
    ctxbench report --results leaderboards/embedded --out report.html   # self-contained HTML
    ctxbench check-backend random                              # plugin conformance kit

(Commands that name open_clip, hf_clip or a preset need its weights: downloaded once
with network, or a local copy, see `ctxbench list backends --details NAME`.)

Exit codes: 0 success; 1 a cell failed (the others still ran); 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


from .cli_commands import (_host, _parse_backend_args, _registry, cmd_check_backend,  # noqa: F401
                           cmd_data, cmd_export_epic, cmd_leaderboard, cmd_list, cmd_report,
                           cmd_toy_train, cmd_toy_train_context, cmd_validate, lookup_backend)
from .errors import CtxbenchError

EXAMPLES = {
    "run": "example: ctxbench run --task all\n"
           "         ctxbench run --task context_retrieval_synthetic --backend random "
           "--backend-arg dim=128 --limit 20\n"
           "         ctxbench run --task context_retrieval --backend random,open_clip "
           "--backend-arg open_clip:arch=ViT-B-32 "
           "--backend-arg open_clip:pretrained=laion2b_s34b_b79k --limit 20",
    "list": "example: ctxbench list backends\n"
            "         ctxbench list backends --details random",
    "validate": "example: ctxbench validate tasks/",
    "data": "example: ctxbench data epic100_mir",
    "leaderboard": "example: ctxbench leaderboard --results leaderboards/embedded "
                   "--out leaderboards/embedded.md",
    "export-epic": "example: ctxbench export-epic results/run/epic100_mir submission.pkl --sls-pt 5",
    "toy": "example: ctxbench toy train --out plugins/toy_clip --seed 0 --steps 1500",
    "report": "example: ctxbench report --results leaderboards/embedded --out report.html",
    "check-backend": "example: ctxbench check-backend random --backend-arg dim=32\n"
                     "         ctxbench check-backend open_clip --backend-arg arch=ViT-B-32 "
                     "--backend-arg pretrained=/models/vit_b32.safetensors",
}


def default_output_dir(run_name: str) -> Path:
    """Where ``run`` writes without --output-dir: ``results/<name>``, ignored by git, so
    running the embedded default in a clone leaves ``git status`` clean (the
    committed reference run is leaderboards/embedded, written only on purpose)."""
    return Path("results") / run_name


def check_run_arguments(args) -> None:
    """Usage errors of ``run`` (exit 2) found before anything loads."""
    from .device import check_device_name
    for flag, value in (("--limit", args.limit), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise CtxbenchError(f"{flag} {value}: must be a positive integer")
    if args.seed < 0:
        raise CtxbenchError(f"--seed {args.seed}: must be >= 0")
    if args.cell_timeout is not None and args.cell_timeout <= 0:
        raise CtxbenchError(f"--cell-timeout {args.cell_timeout:g}: must be a positive number "
                            "of seconds")
    check_device_name(args.device)
    for flag in ("output_dir", "cache_dir"):
        folder = getattr(args, flag)
        if folder:
            _check_writable(Path(folder), "--" + flag.replace("_", "-"))
    if args.leaderboard:
        _check_writable(Path(args.leaderboard).parent, "--leaderboard")
    if args.report:
        _check_writable(Path(args.report).parent, "--report")


def _check_writable(folder: Path, flag: str) -> None:
    """The folder exists (or can be made) and accepts files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".ctxbench-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CtxbenchError(f"{flag} {folder}: not writable ({exc.strerror or exc}); choose "
                            "another folder") from None


def _env_seconds(name: str, default: float) -> float:
    """A non-negative number of seconds from the environment, else ``default``."""
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value >= 0 else default


def cmd_run(args) -> int:
    from .device_probe import resolve_run_device
    from .progress import DELAY as PROGRESS_DELAY, INTERVAL as PROGRESS_INTERVAL
    from .leaderboard import write_leaderboard
    from .launch_config import launch_config
    from .launchers import run_cells
    from .backend import default_run_scope
    from .runner import RunOptions, write_manifest

    check_run_arguments(args)
    host = _host()
    for f in host.failures:
        print(f"[ctxbench] plugin {f.plugin} failed to load: {f.error}", file=sys.stderr)
    task_files = [s.strip() for sel in args.task for s in sel.split(",")
                  if s.strip().endswith((".yaml", ".yml"))]
    for f in task_files:
        if not Path(f).is_file():
            raise CtxbenchError(f"--task {f}: no such task file")
    registry = _registry(host, args.include_path, task_files)
    tasks = registry.select(args.task)
    if args.backend:
        names = [n.strip() for b in args.backend for n in b.split(",") if n.strip()]
        if not names:
            raise CtxbenchError(f"--backend {','.join(args.backend)!r} names no backend "
                                "(ctxbench list backends)")
        for n in names:
            lookup_backend(host, n)  # unknown name -> error with suggestions
    else:
        names = [n for n in host.backends.names() if host.backends.get(n).embedded_default]
    families_of = {} if args.backend else {
        n: tuple(host.backends.get(n).embedded_families) for n in names
        if host.backends.get(n).embedded_families}
    backend_args = _parse_backend_args(args.backend_arg, names, host)
    name = args.name or ("embedded" if not args.backend else "run")
    output_dir = Path(args.output_dir) if args.output_dir else default_output_dir(name)
    # with Ray, a CPU-only driver must not decide the workers' device
    # (resolve_run_device: no torch import for cpu, or for auto where no GPU can exist)
    device = args.device if args.launcher == "ray" and args.device != "auto" else resolve_run_device(args.device)
    options = RunOptions(output_dir=output_dir, cache_dir=args.cache_dir,
                         use_cache=not args.no_cache, device=device,
                         batch_size=args.batch_size, limit=args.limit, seed=args.seed,
                         rerun=args.rerun, progress=not args.no_progress,
                         cell_timeout=args.cell_timeout,
                         progress_delay=_env_seconds("CTXBENCH_PROGRESS_DELAY", PROGRESS_DELAY),
                         progress_interval=_env_seconds("CTXBENCH_PROGRESS_INTERVAL",
                                                        PROGRESS_INTERVAL),
                         families_of=families_of)
    backends = [(n, backend_args[n]) for n in names]
    print(f"[ctxbench] {len(tasks)} task(s) x {len(backends)} backend(s) on {options.device}; "
          f"results -> {output_dir}", file=sys.stderr)
    for n in families_of:
        print(f"[ctxbench] {default_run_scope(host.backends.get(n))}", file=sys.stderr)
    t0 = time.perf_counter()
    results, options = run_cells(host, tasks, backends, options, launch_config(args))
    write_manifest(output_dir, tasks, backends, results, time.perf_counter() - t0, options)
    board = Path(args.leaderboard) if args.leaderboard else output_dir.parent / f"{output_dir.name}.md"
    cells = {(r.task, r.backend_label) for r in results}   # this run's cells, not the folder's
    write_leaderboard(output_dir, board, title=f"ctxbench leaderboard: {name}",
                      metric_specs=host.metrics, cells=cells, include_older=args.include_older)
    if args.report is not None:
        from .report import write_report
        page = write_report(output_dir, args.report or None, title=f"ctxbench report: {name}",
                            cells=cells, include_older=args.include_older)
        print(f"[ctxbench] report -> {page}", file=sys.stderr)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "failed")}
    print(f"[ctxbench] done in {time.perf_counter() - t0:.1f}s: {counts['ok']} ok, "
          f"{counts['skipped']} skipped (data not found), {counts['failed']} failed; "
          f"leaderboard -> {board}", file=sys.stderr)
    return 1 if counts["failed"] else 0


def _add_run_parser(sub, fmt) -> None:
    """The ``run`` command's flags (launcher flags come from launch_config)."""
    run = sub.add_parser("run", help="evaluate backends on tasks", epilog=EXAMPLES["run"],
                         formatter_class=fmt,
                         description="Run every backend x task cell, write one results JSON per "
                                     "cell and a markdown leaderboard.")
    run.add_argument("--task", action="append", default=None,
                     help="task names, group names or 'all' (comma-separated or repeated; default all)")
    run.add_argument("--backend", action="append", default=[],
                     help="backend names (default: the embedded default backends)")
    run.add_argument("--backend-arg", action="append", default=[], metavar="[BACKEND:]KEY=VALUE",
                     help="argument for the backend factory (YAML scalar)")
    run.add_argument("--output-dir", help="results folder (default results/<name>, untracked; the "
                                          "committed reference is leaderboards/embedded)")
    run.add_argument("--name", help="run name (default 'embedded' without --backend, else 'run')")
    run.add_argument("--leaderboard", help="markdown output (default <output-dir>.md)")
    run.add_argument("--cache-dir", help="embedding cache (default $CTXBENCH_CACHE or ~/.cache/ctxbench)")
    run.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    run.add_argument("--device", default="auto", help="cuda, cuda:1, mps, cpu (default: best available)")
    run.add_argument("--batch-size", type=int, help="encoding batch size (default: per backend)")
    run.add_argument("--limit", type=int, help="at most N evaluation items per task (smoke tests)")
    run.add_argument("--seed", type=int, default=0, help="seed for bootstrap and probes (default 0)")
    run.add_argument("--rerun", action="store_true",
                     help="recompute cells whose results exist (an evaluation whose code, data, "
                          "protocol and embeddings are all unchanged is restored from the cache; "
                          "--no-cache computes everything)")
    run.add_argument("--include-older", action="store_true",
                     help="the leaderboard also shows cells of earlier runs in the same output "
                          "folder, marked as older (default: only this run's cells)")
    run.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                     help="record a cell that runs longer as failed (timeout) and go on "
                          "(default: no limit)")
    run.add_argument("--include-path", action="append", default=[], metavar="DIR",
                     help="also load the task files (*.yaml) in DIR; --task may also name "
                          "a task file directly")
    run.add_argument("--no-progress", action="store_true",
                     help="no progress display (by default a cell running over 2 s shows one: "
                          "an updating line on a terminal, else a line every 10 s; "
                          "$CTXBENCH_PROGRESS_DELAY / $CTXBENCH_PROGRESS_INTERVAL change "
                          "those seconds)")
    run.add_argument("--report", nargs="?", const="", default=None, metavar="FILE.html",
                     help="also write the self-contained HTML report (default <output-dir>.html)")
    from .launch_config import add_launcher_arguments
    add_launcher_arguments(run)
    run.set_defaults(func=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    """Every command and flag, declared in one place (long, but only declarations)."""
    parser = argparse.ArgumentParser(prog="ctxbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    _add_run_parser(sub, fmt)

    lst = sub.add_parser("list", help="list tasks, backends, metrics, families or loaders",
                         epilog=EXAMPLES["list"], formatter_class=fmt)
    lst.add_argument("what", choices=["tasks", "backends", "metrics", "families", "loaders"])
    lst.add_argument("--details", metavar="NAME",
                     help="with 'backends': that backend's description and its arguments "
                          "(name, type, default, help)")
    lst.add_argument("--include-path", action="append", default=[], metavar="DIR",
                     help="with 'tasks': also the task files (*.yaml) in DIR")
    lst.set_defaults(func=cmd_list)

    data = sub.add_parser("data", help="where a task's data goes, its format, and whether it is there",
                          epilog=EXAMPLES["data"], formatter_class=fmt)
    data.add_argument("task", nargs="+", help="task names or groups (ctxbench list tasks)")
    data.set_defaults(func=cmd_data)

    val = sub.add_parser("validate", help="check task YAML files", epilog=EXAMPLES["validate"],
                         formatter_class=fmt)
    val.add_argument("path", nargs="+", help="task files or folders")
    val.set_defaults(func=cmd_validate)

    lb = sub.add_parser("leaderboard", help="markdown leaderboard from a results folder",
                        epilog=EXAMPLES["leaderboard"], formatter_class=fmt)
    lb.add_argument("--results", required=True, help="folder of results JSON")
    lb.add_argument("--out", help="markdown file (default <results>.md)")
    lb.set_defaults(func=cmd_leaderboard)

    rep = sub.add_parser("report", help="self-contained HTML report (plots, tables, manifest)",
                         epilog=EXAMPLES["report"], formatter_class=fmt)
    rep.add_argument("--results", required=True, help="folder of results JSON")
    rep.add_argument("--out", help="HTML file (default <results>.html)")
    rep.set_defaults(func=cmd_report)

    chk = sub.add_parser("check-backend", help="conformance checks for a backend plugin",
                         epilog=EXAMPLES["check-backend"], formatter_class=fmt,
                         description="Shape/dtype/finiteness, normalisation, determinism, "
                                     "batch-size invariance, real context support, fingerprint "
                                     "stability and speed. Exit 0 when every check passes.")
    chk.add_argument("name", help="backend name (ctxbench list backends)")
    chk.add_argument("--backend-arg", action="append", default=[], metavar="KEY=VALUE")
    chk.add_argument("--device", default="auto")
    chk.add_argument("--batch-size", type=int)
    chk.add_argument("--no-vary-args", action="store_true",
                     help="skip fingerprint_covers_args (it builds the backend once per argument)")
    chk.set_defaults(func=cmd_check_backend)

    epic = sub.add_parser("export-epic", help="EPIC-KITCHENS-100 MIR challenge submission pickle",
                          epilog=EXAMPLES["export-epic"], formatter_class=fmt,
                          description="Write {'version', 'challenge', 'sim_mat', 'vis_ids', 'txt_ids', "
                                      "'sls_pt', 'sls_tl', 'sls_td'} from a run's similarity matrix.")
    epic.add_argument("source", help="results folder, result JSON, or mir_similarity.npz")
    epic.add_argument("out", help="output .pkl")
    epic.add_argument("--sls-pt", type=int, default=5, help="supervision level: pretraining (0-5)")
    epic.add_argument("--sls-tl", type=int, default=0, help="supervision level: training labels (0-5)")
    epic.add_argument("--sls-td", type=int, default=0, help="supervision level: training data (0-5)")
    epic.add_argument("--force", action="store_true",
                      help="write it even from a --limit run or a set that is not the official "
                           "test set (the challenge server will refuse it)")
    epic.set_defaults(func=cmd_export_epic)

    toy = sub.add_parser("toy", help="the small embedded CLIP shipped with the package",
                         epilog=EXAMPLES["toy"], formatter_class=fmt)
    toy_sub = toy.add_subparsers(dest="toy_command", required=True)
    train = toy_sub.add_parser("train", epilog=EXAMPLES["toy"], formatter_class=fmt,
                               help="train it on the synthetic world (seeds disjoint from evaluation)",
                               description="Deterministic given --seed and the thread count; prints "
                                           "loss and held-out text->image R@1 as it goes; writes "
                                           "safetensors weights, the open_clip config and a JSON card.")
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--steps", type=int, default=1500)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--threads", type=int, default=2)
    train.set_defaults(func=cmd_toy_train)
    ctx = toy_sub.add_parser("train-context", formatter_class=fmt,
                             help="train toy_ctx (the story reader over toy_clip) on synthetic movies",
                             description="Deterministic given --seed and the thread count; writes "
                                         "toy_ctx.safetensors and a JSON card with held-out Recall@1 "
                                         "per level and injection pattern.")
    ctx.add_argument("--out", required=True, help="output folder")
    ctx.add_argument("--base", default=None, help="toy_clip folder (default: the installed one)")
    ctx.add_argument("--seed", type=int, default=0)
    ctx.add_argument("--steps", type=int, default=400)
    ctx.add_argument("--threads", type=int, default=2)
    ctx.set_defaults(func=cmd_toy_train_context)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    if getattr(args, "task", "unset") is None:
        args.task = ["all"]
    try:
        return args.func(args)
    except CtxbenchError as exc:
        print(f"ctxbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ctxbench: interrupted; finished cells and cached embeddings are kept, "
              "re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
