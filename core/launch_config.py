"""The launcher settings of ``ctxbench run`` as a plain, frozen object.

Kept apart from launchers.py (which imports the runner, hence torch) so that
building the CLI parser stays cheap: ``ctxbench --help`` imports no model code.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import CtxbenchError

LAUNCHERS = ("local", "shard", "ray")


@dataclass(frozen=True)
class LaunchConfig:
    """How the cells are spread: which launcher, and its settings."""

    launcher: str = "local"
    shard: str | None = None              # "I/N" (shard)
    world_size: int | None = None         # shard under a Kubernetes Indexed Job
    data_parallel: bool = False           # local under torchrun
    ray_address: str | None = None
    ray_resources: tuple[str, ...] = ()   # "[BACKEND:]KEY=NUMBER"
    ray_max_retries: int = 3

    def check(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise CtxbenchError(f"--launcher {self.launcher!r}: choose one of {', '.join(LAUNCHERS)}")
        if self.launcher != "shard" and (self.shard or self.world_size):
            raise CtxbenchError("--shard/--world-size need --launcher shard")
        if self.launcher != "local" and self.data_parallel:
            raise CtxbenchError("--data-parallel works with --launcher local under torchrun "
                                "(every rank runs every cell); it cannot be combined with "
                                f"--launcher {self.launcher}")
        if self.ray_max_retries < 0:
            raise CtxbenchError(f"--ray-max-retries {self.ray_max_retries}: must be >= 0")


def launch_config(args) -> LaunchConfig:
    """The LaunchConfig of parsed ``ctxbench run`` arguments (see add_launcher_arguments)."""
    return LaunchConfig(launcher=args.launcher or "local", shard=args.shard,
                        world_size=args.world_size, data_parallel=args.data_parallel,
                        ray_address=args.ray_address, ray_resources=tuple(args.ray_resources),
                        ray_max_retries=args.ray_max_retries)


def add_launcher_arguments(parser) -> None:
    """The ``ctxbench run`` options for launchers (see docs/scale-out.md)."""
    g = parser.add_argument_group("launchers (docs/scale-out.md)")
    g.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="local: this process; shard: this process runs its share of the cells "
                        "(rank from --shard, torchrun, srun or a Kubernetes Indexed Job); "
                        "ray: one Ray actor per backend (pip install 'ctxbench[ray]')")
    g.add_argument("--shard", metavar="I/N",
                   help="with --launcher shard: run share I of N (default: from the environment)")
    g.add_argument("--world-size", type=int, metavar="N",
                   help="with --launcher shard under a Kubernetes Indexed Job: number of shards "
                        "(JOB_COMPLETION_INDEX gives the rank; or set CTXBENCH_WORLD_SIZE)")
    g.add_argument("--data-parallel", action="store_true",
                   help="with --launcher local under torchrun: every rank runs every cell and the "
                        "encoding of each is split over the ranks (rank 0 writes results)")
    g.add_argument("--ray-address", metavar="ADDRESS",
                   help="with --launcher ray: cluster to join (ray://head:10001, auto, head:6379); "
                        "default: start a local one")
    g.add_argument("--ray-resources", action="append", default=[], metavar="[BACKEND:]KEY=NUMBER",
                   help="with --launcher ray: resources per backend actor, e.g. num_gpus=1, "
                        "open_clip:num_gpus=0.5, num_cpus=4 (default 1 CPU, 1 GPU on CUDA)")
    g.add_argument("--ray-max-retries", type=int, default=3, metavar="N",
                   help="with --launcher ray: restarts of a backend's actor after its worker dies "
                        "(the interrupted cell is retried; cell errors are never retried)")
