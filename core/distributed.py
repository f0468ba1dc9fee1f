"""Data-parallel encoding inside one cell, over ``torch.distributed``.

When a process group is initialised with world size W > 1 and data parallelism
is switched on (``CachedEncoder(..., data_parallel=True)``, ``ctxbench run
--data-parallel`` under ``torchrun``), every rank runs the same cells and makes
the same encoder calls. For each call the ranks

1. check that they were asked for the same inputs (a digest of the keys;
   evaluation must be deterministic, which ctxbench's seeded families are),
2. agree on what is missing: an input is encoded if *any* rank lacks it
   (so ranks whose caches differ still issue identical collectives),
3. split the missing inputs with a stride: rank r encodes items r, r+W, r+2W, ...
   (``strided_indices``) and caches what it computed,
4. all-gather the encoded rows (padded to one length) and reassemble them in the
   original order (``interleave``), so every rank returns exactly the tensor a
   single process would have produced (bitwise; the backend computes each row
   from its own input only).

A failure on one rank is shared with the others before any gather, so all ranks
raise instead of waiting forever. NCCL groups exchange CUDA tensors, gloo groups
CPU tensors. Layout follows PyTorch's ``DistributedSampler`` striding
(https://pytorch.org/docs/stable/data.html#torch.utils.data.distributed.DistributedSampler)
and ``torch.distributed.all_gather``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Sequence

import numpy as np
import torch


def active_world() -> tuple[int, int] | None:
    """``(rank, world_size)`` when a process group with more than one rank is up."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return None
    world = dist.get_world_size()
    return (dist.get_rank(), world) if world > 1 else None


def _device() -> torch.device:
    """Where collective tensors must live: the current CUDA device for NCCL."""
    import torch.distributed as dist
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def strided_indices(n: int, rank: int, world: int) -> np.ndarray:
    """The positions rank ``rank`` handles among ``n``: rank, rank+W, ... (vectorised)."""
    return np.arange(rank, n, world, dtype=np.int64)


def interleave(blocks: torch.Tensor, n: int) -> torch.Tensor:
    """Undo the striding: ``blocks[r, j]`` is item ``r + j*W``; returns items 0..n-1.

    ``blocks`` has shape [W, P, D] with P = ceil(n / W) (rows past the end are padding).
    """
    world, per, dim = blocks.shape
    return blocks.transpose(0, 1).reshape(world * per, dim)[:n]


def keys_digest(keys: Sequence[str]) -> int:
    """A 63-bit digest of an ordered key list (to detect ranks that diverged)."""
    h = hashlib.sha256("\n".join(keys).encode())
    return int.from_bytes(h.digest()[:8], "little") >> 1


def all_agree(flags: Sequence[bool]) -> list[bool]:
    """Element-wise AND of boolean flags over all ranks (identity without a group)."""
    if active_world() is None or len(flags) == 0:
        return list(flags)
    import torch.distributed as dist
    t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int64, device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return [bool(x) for x in t.cpu().tolist()]


class RankFailed(RuntimeError):
    """Raised on every rank when another rank failed during a shared encoding step."""


def encode_data_parallel(keys: list[str], missing_local: np.ndarray, dim: int | None,
                         encode: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One shared encoding step over unique ``keys`` (same list, same order on every rank).

    ``missing_local[i]`` is True when this rank has no embedding for ``keys[i]``;
    ``encode(positions)`` encodes ``keys[positions]`` on this rank and returns a
    float32 array [len(positions), D] (it also caches them). Returns
    ``(positions, rows, own)``: the positions encoded by some rank (the union of
    what is missing), their embeddings in that order (identical on every rank),
    and a boolean mask over ``positions`` of the rows this rank computed itself.
    """
    import torch.distributed as dist
    rank, world = active_world() or (0, 1)
    dev = _device()

    # 1. same inputs on every rank?
    digest = torch.tensor([keys_digest(keys), len(keys)], dtype=torch.int64, device=dev)
    digests = [torch.empty_like(digest) for _ in range(world)]
    dist.all_gather(digests, digest)
    if any(not torch.equal(d, digests[0]) for d in digests):
        sizes = [int(d[1]) for d in digests]
        raise RankFailed(f"data-parallel ranks asked the encoder for different inputs "
                         f"(counts per rank: {sizes}); the evaluation must make the same "
                         f"encoder calls on every rank (same task, seed and --limit)")

    # 2. union of what is missing
    mask = torch.from_numpy(missing_local.astype(np.int64)).to(dev)
    dist.all_reduce(mask, op=dist.ReduceOp.MAX)
    positions = np.flatnonzero(mask.cpu().numpy())
    m = len(positions)
    if m == 0:
        return positions, np.zeros((0, dim or 0), np.float32), np.zeros(0, bool)

    # 3. my stride; a failure is announced before anyone blocks in the gather
    mine = positions[strided_indices(m, rank, world)]
    error: BaseException | None = None
    rows = np.zeros((0, 0), np.float32)
    try:
        rows = encode(mine) if len(mine) else np.zeros((0, dim or 0), np.float32)
    except BaseException as exc:  # re-raised below, after the others are told
        error = exc
    status = torch.tensor([1 if error else 0, rows.shape[1] if rows.ndim == 2 else 0],
                          dtype=torch.int64, device=dev)
    statuses = [torch.empty_like(status) for _ in range(world)]
    dist.all_gather(statuses, status)
    if error is not None:
        raise error
    failed = [r for r, s in enumerate(statuses) if int(s[0])]
    if failed:
        raise RankFailed(f"rank(s) {failed} failed while encoding (see their log); "
                         f"rank {rank} stops too so that no rank waits forever")
    dims = {int(s[1]) for r, s in enumerate(statuses) if len(strided_indices(m, r, world))}
    if len(dims) != 1:
        raise RankFailed(f"ranks returned different embedding dimensions {sorted(dims)}")
    d = dims.pop()

    # 4. gather padded blocks, reassemble in order
    per = -(-m // world)
    block = torch.zeros(per, d, dtype=torch.float32, device=dev)
    if len(mine):
        block[:len(mine)] = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).to(dev)
    blocks = [torch.empty_like(block) for _ in range(world)]
    dist.all_gather(blocks, block)
    gathered = interleave(torch.stack(blocks).cpu(), m).numpy()
    own = np.zeros(m, bool)
    own[strided_indices(m, rank, world)] = True
    return positions, gathered, own


def init_from_env(device: str = "cpu") -> tuple[int, int]:
    """Initialise the default process group from torchrun-style variables
    (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); NCCL for CUDA devices, else gloo.
    Returns ``(rank, world)``; a no-op when a group already exists."""
    import torch.distributed as dist
    from .errors import CtxbenchError
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise CtxbenchError(f"--data-parallel needs a torch.distributed launch: {', '.join(missing)} "
                            f"not set (start with `torchrun --nproc-per-node N -m ctxbench.cli run "
                            f"--data-parallel ...`)")
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()
