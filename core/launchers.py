"""Launchers: who runs which cells. ``local`` (one process), ``shard`` (N independent
processes, each a deterministic share), ``ray`` (one actor per backend on a Ray cluster).

Every launcher drives the same :class:`~ctxbench.runner.Runner` code and writes
into one output folder: a result file is named by its cell's content hash and
written atomically, so launchers can be restarted (finished cells are skipped,
``--rerun`` forces) and ``ctxbench leaderboard`` merges whatever is there.
Recipes for srun, torchrun, Kubernetes Indexed Jobs, KubeRay and Ray on Slurm:
docs/scale-out.md.

A launcher takes a plain :class:`LaunchConfig` (the CLI builds one with
:func:`launch_config`), returns the results and the run options it actually used
(a shard's manifest name, a rank's device), and changes nothing it was given::

    add_launcher_arguments(run_parser)
    results, used_options = run_cells(host, tasks, backends, options, launch_config(args))
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from .cell import Cell
from .errors import CtxbenchError
from .results import CellResult, write_result
from .runner import Runner, RunOptions, error_info

from .launch_config import LAUNCHERS, LaunchConfig, add_launcher_arguments, launch_config  # noqa: F401


# -- shard: rank and world size ------------------------------------------------
@dataclass(frozen=True)
class Shard:
    rank: int
    world: int
    source: str   # where rank/world came from, for the log

    @property
    def manifest_name(self) -> str:
        # named manifest.json inside its own folder: result readers skip that name
        width = len(str(self.world - 1))
        return f"shards/rank-{self.rank:0{width}d}-of-{self.world}/manifest.json"


def _int_env(env: Mapping[str, str], name: str) -> int:
    value = env[name]
    try:
        return int(value)
    except ValueError:
        raise CtxbenchError(f"environment variable {name}={value!r} is not an integer") from None


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N); 0 <= I < N."""
    try:
        rank_s, world_s = text.split("/")
        rank, world = int(rank_s), int(world_s)
    except ValueError:
        raise CtxbenchError(f"--shard {text!r}: expected I/N with integers, e.g. --shard 0/4") from None
    return rank, world


def detect_shard(shard: str | None = None, world_size: int | None = None,
                 env: Mapping[str, str] | None = None) -> Shard:
    """Rank and world size, first found of:

    1. ``--shard I/N``;
    2. ``RANK`` / ``WORLD_SIZE`` (torchrun, Kubeflow PyTorchJob);
    3. ``SLURM_PROCID`` / ``SLURM_NTASKS`` (srun);
    4. ``JOB_COMPLETION_INDEX`` (Kubernetes Indexed Job) with the world size from
       ``--world-size`` or ``CTXBENCH_WORLD_SIZE`` (set it to the Job's ``completions``).

    torchrun's variables come before Slurm's because torchrun inside a Slurm
    allocation leaves the allocation's SLURM_PROCID=0/SLURM_NTASKS=1 in place.
    """
    env = os.environ if env is None else env
    if shard:
        rank, world = parse_shard(shard)
        source = f"--shard {shard}"
    elif "RANK" in env and "WORLD_SIZE" in env:
        rank, world = _int_env(env, "RANK"), _int_env(env, "WORLD_SIZE")
        source = "RANK/WORLD_SIZE"
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        rank, world = _int_env(env, "SLURM_PROCID"), _int_env(env, "SLURM_NTASKS")
        source = "SLURM_PROCID/SLURM_NTASKS"
    elif "JOB_COMPLETION_INDEX" in env:
        rank = _int_env(env, "JOB_COMPLETION_INDEX")
        if world_size is None and "CTXBENCH_WORLD_SIZE" in env:
            world_size = _int_env(env, "CTXBENCH_WORLD_SIZE")
        if world_size is None:
            raise CtxbenchError("JOB_COMPLETION_INDEX is set but the world size is unknown: pass "
                                "--world-size N or set CTXBENCH_WORLD_SIZE to the Job's completions")
        world, source = world_size, "JOB_COMPLETION_INDEX"
    else:
        raise CtxbenchError("--launcher shard: no rank found; pass --shard I/N, or launch under "
                            "torchrun (RANK/WORLD_SIZE), srun (SLURM_PROCID/SLURM_NTASKS) or a "
                            "Kubernetes Indexed Job (JOB_COMPLETION_INDEX + --world-size N)")
    if world < 1 or not 0 <= rank < world:
        raise CtxbenchError(f"{source}: rank {rank} of world size {world} is out of range "
                            f"(need 0 <= rank < world size, world size >= 1)")
    return Shard(rank, world, source)


def order_cells(cells: list[Cell]) -> list[Cell]:
    """Canonical order: by backend (name, arguments), then task, then cell id.

    Independent of the order backends and tasks were given in, so every rank
    computes the same partition; cells of one backend are adjacent.
    """
    return sorted(cells, key=lambda c: (c.backend, json.dumps(c.args, sort_keys=True, default=str),
                                        c.task, c.cell_id))


def partition(cells: list[Cell], rank: int, world: int) -> list[Cell]:
    """Rank ``rank``'s share: a contiguous block of the canonical order.

    Blocks differ in size by at most one cell; because a backend's cells are
    adjacent, a rank loads only the backends its block spans (a backend is split
    over two ranks at most at each of the W-1 block boundaries).
    """
    ordered = order_cells(cells)
    n = len(ordered)
    return ordered[rank * n // world:(rank + 1) * n // world]


def local_cuda_device(device: str, env: Mapping[str, str] | None = None) -> str:
    """``cuda`` -> ``cuda:<local rank>`` when several GPUs are visible to a launched rank."""
    env = os.environ if env is None else env
    if device != "cuda":
        return device
    local = env.get("LOCAL_RANK", env.get("SLURM_LOCALID"))
    if local is None:
        return device
    import torch
    count = torch.cuda.device_count()
    return f"cuda:{int(local) % count}" if count > 1 else device


# -- ray -----------------------------------------------------------------------
DEFAULT_RESOURCES = {"num_cpus": 1.0}


def parse_resource_args(items: list[str], backends: list[str]) -> dict[str, dict[str, float]]:
    """``--ray-resources [BACKEND:]KEY=NUMBER`` (keys num_cpus, num_gpus, memory, or a
    custom resource name) -> {backend: {key: number}}."""
    from .backend_args import parse_assignments

    def number(value: str) -> float:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number (e.g. num_gpus=1 or open_clip:num_gpus=0.5)") from None

    return parse_assignments(items, backends, "--ray-resources", number)


def backend_resources(spec: Any, device: str, override: Mapping[str, float] | None = None) -> dict[str, float]:
    """Resources one backend's actor asks Ray for.

    Defaults: one CPU, and one GPU when ``device`` is CUDA. A plugin may declare its
    needs as a ``resources`` mapping on its BackendSpec (e.g. ``{"num_gpus": 1,
    "memory": 16e9}``; read with ``getattr`` so older specs without it still work);
    ``--ray-resources`` overrides both.
    """
    res: dict[str, float] = dict(DEFAULT_RESOURCES)
    res["num_gpus"] = 1.0 if str(device).startswith("cuda") else 0.0
    res.update(getattr(spec, "resources", None) or {})
    res.update(override or {})
    return res


def _actor_options(resources: Mapping[str, float], max_retries: int) -> dict[str, Any]:
    opts: dict[str, Any] = {"max_restarts": max_retries, "max_task_retries": max_retries}
    custom = {}
    for key, value in resources.items():
        if key in ("num_cpus", "num_gpus", "memory"):
            opts[key] = value
        else:
            custom[key] = value
    if custom:
        opts["resources"] = custom
    return opts


class CellWorker:
    """The body of a Ray actor: one backend, loaded once, running cells on request.

    It computes but never writes a result (``write_results=False``): the driver
    writes each one as it arrives. Artifacts and the embedding cache are written
    from the worker, so on a multi-node cluster put ``--output-dir`` and
    ``--cache-dir`` on a shared filesystem (or accept one cache per node).
    """

    def __init__(self, options: dict[str, Any], tasks: dict[str, Any], name: str, args: dict):
        from .device import resolve_device
        from .plugin_host import load_plugins
        from .backend_session import BackendSession
        opts = RunOptions(**options)
        opts.device = resolve_device(opts.device)
        opts.write_results = False
        opts.log = lambda msg: print(msg, file=sys.stderr, flush=True)
        self.tasks = tasks
        self.runner = Runner(load_plugins(), opts)
        self.session = BackendSession(self.runner, name, args)

    def run(self, cell: Cell) -> dict[str, Any]:
        return self.session.run(cell, self.tasks[cell.task]).to_json()

    def pid(self) -> int:
        return os.getpid()


def _options_payload(options: RunOptions) -> dict[str, Any]:
    keep = ("output_dir", "cache_dir", "use_cache", "device", "batch_size", "limit", "seed",
            "rerun", "progress", "flush_rows")
    return {k: (str(getattr(options, k)) if isinstance(getattr(options, k), Path) else getattr(options, k))
            for k in keep}


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def run_ray(host, tasks: list, backends: list[tuple[str, dict]], options: RunOptions,
            address: str | None = None, resources: dict[str, dict[str, float]] | None = None,
            max_retries: int = 3, init_kwargs: dict[str, Any] | None = None,
            on_submit=None) -> list[CellResult]:
    """Run every cell on Ray: one actor per backend (the model loads once per actor,
    restarted up to ``max_retries`` times if its worker dies, and the interrupted
    cell retried); a cell that fails deterministically comes back as a failed
    result and is not retried. The driver writes results as they arrive.

    ``address``: an existing cluster (``ray://host:10001``, ``auto``, or a GCS
    ``host:6379``); None starts a local one. ``on_submit(actor_handles)`` is a test
    hook called once the actors exist.
    """
    try:
        import ray
    except ImportError:
        raise CtxbenchError("--launcher ray needs Ray: pip install 'ctxbench[ray]'") from None
    runner = Runner(host, replace(options, use_cache=False))  # driver: skip checks and writes only
    task_by_name = {t.name: t for t in tasks}
    results, todo_cells = runner.split_existing(runner.cells(tasks, backends), task_by_name)
    todo: dict[tuple, list[Cell]] = {}
    for cell in todo_cells:
        todo.setdefault((cell.backend, cell.backend_args), []).append(cell)
    if not todo:
        return results

    started_here = False
    if not ray.is_initialized():
        kwargs = {"logging_level": "WARNING", "include_dashboard": False, **(init_kwargs or {})}
        if address:
            kwargs["address"] = address
        ray.init(**kwargs)
        started_here = True
    try:
        Worker = ray.remote(CellWorker)
        payload = _options_payload(options)
        pending: dict[Any, tuple[Cell, Any]] = {}
        left: dict[Any, int] = {}
        actors = []
        for (name, args_items), group in todo.items():
            spec = host.backends.get(name)
            res = backend_resources(spec, options.device, (resources or {}).get(name))
            actor = Worker.options(**_actor_options(res, max_retries)).remote(
                payload, {c.task: task_by_name[c.task] for c in group}, name, dict(args_items))
            actors.append(actor)
            left[actor] = len(group)
            options.log(f"[ctxbench] ray: {group[0].label}: {len(group)} cell(s), resources {res}")
            for cell in group:
                pending[actor.run.remote(cell)] = (cell, actor)
        if on_submit is not None:
            on_submit(actors)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                cell, actor = pending.pop(ref)
                result = _collect(ray, ref, cell, runner, task_by_name[cell.task], max_retries)
                write_result(options.output_dir, result)
                results.append(result)
                options.log(f"[ctxbench] {cell.label} x {cell.task}: {Runner._status_line(result)}")
                left[actor] -= 1
                if left[actor] == 0:
                    ray.kill(actor)  # free its GPU for the next backend
    finally:
        if started_here:
            ray.shutdown()
    return results


def _collect(ray, ref, cell: Cell, runner: Runner, task, max_retries: int) -> CellResult:
    """The result behind ``ref``; worker loss beyond the retries becomes a failed result."""
    try:
        return CellResult.from_json(ray.get(ref))
    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
            ray.exceptions.ObjectLostError) as exc:
        result = runner.base_result(cell, task, "failed")
        result.error = {"type": "WorkerLost",
                        "message": f"the Ray worker running this cell died {max_retries + 1} "
                                   f"time(s) ({type(exc).__name__}); re-run to retry",
                        "traceback": str(exc)[-2000:]}
        return result
    except ray.exceptions.RayTaskError as exc:  # a bug outside the cell's own error handling
        result = runner.base_result(cell, task, "failed")
        result.error = error_info(exc)
        return result


def run_cells(host, tasks: list, backends: list[tuple[str, dict]], options: RunOptions,
              config: LaunchConfig = LaunchConfig()) -> tuple[list[CellResult], RunOptions]:
    """Run the cells with the launcher ``config`` names. Returns the results and the
    options actually used (a copy: a shard's ``manifest_name``, a rank's ``device``
    and ``write_results``), for the caller's manifest; ``options`` is not changed."""
    config.check()
    if config.launcher == "local":
        if config.data_parallel:
            from . import distributed
            device = local_cuda_device(options.device)
            rank, world = distributed.init_from_env(device)
            options = replace(options, device=device, data_parallel=True,
                              write_results=rank == 0)
            options.log(f"[ctxbench] data-parallel rank {rank} of {world} on {device}"
                        + ("" if rank == 0 else " (rank 0 writes the results)"))
        return Runner(host, options).run(tasks, backends), options
    if config.launcher == "shard":
        shard = detect_shard(config.shard, config.world_size)
        options = replace(options, device=local_cuda_device(options.device),
                          manifest_name=shard.manifest_name)
        runner = Runner(host, options)
        cells = partition(runner.cells(tasks, backends), shard.rank, shard.world)
        options.log(f"[ctxbench] shard {shard.rank} of {shard.world} ({shard.source}): "
                    f"{len(cells)} cell(s)")
        return runner.run(tasks, backends, cells), options
    names = [b for b, _ in backends]
    t0 = time.perf_counter()
    results = run_ray(host, tasks, backends, options, config.ray_address,
                      parse_resource_args(list(config.ray_resources), names), config.ray_max_retries)
    options.log(f"[ctxbench] ray: {len(results)} cell(s) in {time.perf_counter() - t0:.1f}s")
    return results, options
