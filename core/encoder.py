"""Between evaluators and backends: dedupe, cache lookup, batching, output checks.

Evaluators never call a backend directly. They call ``images``, ``texts`` or
``videos`` here with whole lists; this layer
1. keys every (kind, input, context) by content hash and drops duplicates,
2. serves what the cache already has,
3. encodes the rest in batches (halving the batch on CUDA out-of-memory and
   remembering the size that worked), with the next batch's images decoded or
   rendered on a small thread pool while the current batch runs through the model
   (``prefetch_workers``; only missing items are ever loaded),
4. checks each batch (shape [n, D], floating dtype, finite values, one D for the
   backend) and writes it to the cache in crash-safe segments.

With ``data_parallel=True`` and a ``torch.distributed`` group of W > 1 ranks, step 3
is shared: rank r encodes the missing items r, r+W, ..., caches them, and the rows
are all-gathered and put back in order (see distributed.py), so every rank gets
the tensor a single process would have computed.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .cache import BackendCache, CacheWidthError, entry_key
from .errors import BackendOutputError, CapabilityError
from .inputs import ImageRef, context_key, text_key
from .progress import CellProgress

if TYPE_CHECKING:   # torch is imported where tensors are made: a run whose evaluations
    import torch    # all come from the cache (runner.py) never imports it
    from .backend import Backend, Capabilities

FLUSH_ROWS = 1024      # write a cache segment at least this often (rows)
FLUSH_SECONDS = 20.0   # ... or this often (seconds), whichever comes first


def _default_workers() -> int:
    """$CTXBENCH_PREFETCH_WORKERS, else min(4, CPUs); 0 loads inline."""
    env = os.environ.get("CTXBENCH_PREFETCH_WORKERS")
    if env is not None and env.strip().isdigit():
        return int(env)
    return min(4, os.cpu_count() or 1)


class _Prefetcher:
    """Loads items (decodes or renders images) ahead of the encoder on a thread pool.

    ``window(start, stop)`` returns the loaded items ``[start, stop)`` in order and
    queues the loads of the next ``stop - start`` items, so they overlap the model
    call that follows (PIL decoding and torch kernels release the GIL). Loaded
    items stay until ``release(stop)``, so a batch retried after out-of-memory
    is not loaded twice. With ``workers == 0`` or no ``load``, it loads inline.
    """

    def __init__(self, items: list[Any], load: Callable[[Any], Any] | None, workers: int):
        self.items, self.load = items, load
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="ctxbench-load") \
            if load is not None and workers > 0 and len(items) > 1 else None
        self.futures: dict[int, Future] = {}

    def _request(self, start: int, stop: int) -> None:
        for i in range(start, min(stop, len(self.items))):
            if i not in self.futures:
                self.futures[i] = self.pool.submit(self.load, self.items[i])

    def window(self, start: int, stop: int) -> list[Any]:
        stop = min(stop, len(self.items))
        if self.load is None:
            return self.items[start:stop]
        if self.pool is None:
            return [self.load(x) for x in self.items[start:stop]]
        self._request(start, stop)
        self._request(stop, stop + (stop - start))
        return [self.futures[i].result() for i in range(start, stop)]

    def release(self, stop: int) -> None:
        for i in [i for i in self.futures if i < stop]:
            del self.futures[i]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.futures.clear()


def _active_world():
    from . import distributed
    return distributed.active_world()


def _load_clip(clip: Sequence[ImageRef]) -> list:
    return [f.load() for f in clip]


def _load_image(ref: ImageRef):
    return ref.load()


def _is_oom(exc: BaseException) -> bool:
    import torch
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _tensor(rows: np.ndarray) -> "torch.Tensor":
    import torch
    return torch.from_numpy(rows)


class CachedEncoder:
    def __init__(self, backend: "Backend", cache: BackendCache | None, batch_size: int = 32,
                 progress: bool = True, label: str = "backend", flush_rows: int = FLUSH_ROWS,
                 data_parallel: bool = False, prefetch_workers: int | None = None):
        self.backend = backend
        self.prefetch_workers = _default_workers() if prefetch_workers is None else prefetch_workers
        self.data_parallel = data_parallel  # opt-in: share misses over torch.distributed ranks
        self.cache = cache
        self.batch_size = max(1, int(batch_size))
        self.progress = progress
        self.label = label
        self.flush_rows = flush_rows
        self.dim: int | None = None
        self._dim_source = ""                     # "encoded" or "cached": where dim came from
        self.stats = {"forward_passes": 0, "items_encoded": 0, "cache_hits": 0,
                      "duplicates_skipped": 0}
        self.encode_seconds = 0.0
        self._memory: dict[str, np.ndarray] = {}  # this run's results when no disk cache
        # the cell's progress line (runner.py attaches one per cell); None with
        # progress=True: each encoding draws its own
        self.reporter: CellProgress | None = None
        self._consumed: set[str] | None = None    # entry keys served while recording

    # -- what a cell used (runner.py keys its evaluation memo on it) -------------
    def start_recording(self) -> None:
        """Remember every entry key served from now on (:meth:`stop_recording`)."""
        self._consumed = set()

    def stop_recording(self) -> set[str]:
        consumed, self._consumed = self._consumed or set(), None
        return consumed

    @property
    def capabilities(self) -> "Capabilities":
        return self.backend.capabilities

    # -- public API ------------------------------------------------------------
    def texts(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None) -> "torch.Tensor":
        contexts = self._contexts(contexts, len(texts), "text")
        keys = [text_key(t) for t in texts]
        return self._encode("text", keys, list(texts), contexts,
                            lambda items, ctx: self.backend.encode_texts(items, ctx), None)

    def images(self, refs: Sequence[ImageRef], contexts: Sequence[str | None] | None = None) -> "torch.Tensor":
        contexts = self._contexts(contexts, len(refs), "image")
        keys = [r.key for r in refs]
        return self._encode("image", keys, list(refs), contexts,
                            lambda images, ctx: self.backend.encode_images(images, ctx), _load_image)

    def videos(self, clips: Sequence[Sequence[ImageRef]],
               contexts: Sequence[str | None] | None = None) -> "torch.Tensor":
        """One embedding per clip: the backend's video encoder if it declares one,
        else the mean of its L2-normalised frame embeddings (the
        frame-averaging baseline of EPIC-KITCHENS-100 MIR, Damen et al. 2022)."""
        contexts = self._contexts(contexts, len(clips), "image")
        if self.capabilities.video:
            keys = [entry_key("clip", "|".join(f.key for f in clip), "") for clip in clips]
            return self._encode("video", keys, list(clips), contexts,
                                lambda frames, ctx: self.backend.encode_videos(frames, ctx),
                                _load_clip)
        import torch
        flat = [frame for clip in clips for frame in clip]
        flat_ctx = [c for clip, c in zip(clips, contexts) for _ in clip]
        frames = torch.nn.functional.normalize(self.images(flat, flat_ctx), dim=-1)
        lengths = torch.tensor([len(clip) for clip in clips])
        if (lengths == 0).any():
            raise BackendOutputError("a clip has no frames; check the dataset's frame ranges")
        owner = torch.repeat_interleave(torch.arange(len(clips)), lengths)
        sums = torch.zeros(len(clips), frames.shape[1]).index_add_(0, owner, frames)
        return sums / lengths[:, None]

    # -- internals -------------------------------------------------------------
    def _contexts(self, contexts, n: int, side: str) -> list[str | None]:
        if contexts is None:
            return [None] * n
        contexts = list(contexts)
        if len(contexts) != n:
            raise ValueError(f"{n} inputs but {len(contexts)} contexts")
        allowed = self.capabilities.image_context if side == "image" else self.capabilities.text_context
        if not allowed and any(c is not None for c in contexts):
            raise CapabilityError(f"{self.label} does not accept a context on the {side} side "
                                  f"(capabilities: {self.capabilities})")
        return contexts

    def _encode(self, kind: str, input_keys: list[str], items: list[Any],
                contexts: list[str | None], call: Callable, load: Callable | None) -> "torch.Tensor":
        """``call(loaded_items, contexts)`` encodes one batch; ``load(item)`` turns an
        item into what the backend takes (None: items are passed as they are)."""
        n = len(items)
        keys = [entry_key(kind, k, context_key(c)) for k, c in zip(input_keys, contexts)]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        self.stats["duplicates_skipped"] += n - len(first)
        if self._consumed is not None:
            self._consumed.update(first)
        found: dict[str, np.ndarray] = {}
        in_cache: list[str] = []
        missing: list[int] = []
        for k, i in first.items():
            if k in self._memory:
                found[k] = self._memory[k]
            elif self.cache is not None and k in self.cache:
                in_cache.append(k)
            else:
                missing.append(i)
        if in_cache:
            try:
                rows = self.cache.get_many(in_cache)
            except CacheWidthError as exc:
                raise BackendOutputError(str(exc)) from None
            self._agree_width(rows.shape[1], "cached")
            found.update(zip(in_cache, rows))
        if self.data_parallel and first and _active_world() is not None:
            self._encode_shared(kind, keys, items, contexts, call, load, first, found)
            return _tensor(np.stack([found[k] for k in keys]))
        self.stats["cache_hits"] += len(found)
        if missing:
            found.update(self._run_batches(kind, [keys[i] for i in missing],
                                           [items[i] for i in missing],
                                           [contexts[i] for i in missing], call, load))
        if n == 0:
            return _tensor(np.zeros((0, self.dim or 0), np.float32))
        return _tensor(np.stack([found[k] for k in keys]))

    def _encode_shared(self, kind, keys, items, contexts, call, load, first: dict[str, int],
                       found: dict[str, np.ndarray]) -> None:
        """The data-parallel miss path: fills ``found`` with every unique key."""
        unique = list(first)
        missing_local = np.fromiter((k not in found for k in unique), dtype=bool, count=len(unique))

        def encode(positions: np.ndarray) -> np.ndarray:
            idx = [first[unique[p]] for p in positions.tolist()]
            out = self._run_batches(kind, [keys[i] for i in idx], [items[i] for i in idx],
                                    [contexts[i] for i in idx], call, load)
            return np.stack([out[keys[i]] for i in idx])

        from . import distributed
        positions, rows, own = distributed.encode_data_parallel(unique, missing_local, self.dim, encode)
        if len(positions):
            self._agree_width(rows.shape[1], "encoded", f"{self.label}: ranks returned")
        encoded = [unique[p] for p in positions.tolist()]
        found.update(zip(encoded, rows))
        # rows computed by other ranks: kept in memory so later calls agree on what is missing
        self._memory.update((k, r) for k, r, o in zip(encoded, rows, own.tolist()) if not o)
        self.stats["cache_hits"] += len(unique) - len(positions)

    def _run_batches(self, kind, keys, items, contexts, call, load) -> dict[str, np.ndarray]:
        """Encode ``items`` in batches (loads prefetched one batch ahead), flushing
        rows to the cache every ``flush_rows`` rows / FLUSH_SECONDS and on exit."""
        import torch
        out: dict[str, np.ndarray] = {}
        pending_keys: list[str] = []
        pending_rows: list[np.ndarray] = []
        last_flush = time.monotonic()
        reporter, own = self.reporter, None
        if reporter is None and self.progress:
            reporter = own = CellProgress(self.label).start()
        if reporter is not None:
            reporter.update(0, len(items), kind)
        loader = _Prefetcher(items, load, self.prefetch_workers)
        start = 0
        try:
            while start < len(items):
                size = self.batch_size
                chunk = slice(start, start + size)
                batch = loader.window(start, start + size)
                t0 = time.perf_counter()
                try:
                    with torch.inference_mode():
                        emb = call(batch, contexts[chunk])
                except Exception as exc:
                    if _is_oom(exc) and size > 1:
                        self.batch_size = max(1, size // 2)
                        if torch.cuda.is_available():
                            torch.cuda.empty_cache()
                        print(f"[ctxbench] out of memory at batch size {size}; "
                              f"retrying with {self.batch_size}", file=sys.stderr)
                        continue
                    raise
                self.encode_seconds += time.perf_counter() - t0
                rows = self._check(emb, len(items[chunk]), kind)
                self.stats["forward_passes"] += 1
                self.stats["items_encoded"] += len(rows)
                for k, row in zip(keys[chunk], rows):
                    out[k] = row
                pending_keys.extend(keys[chunk])
                pending_rows.append(rows)
                if len(pending_keys) >= self.flush_rows or time.monotonic() - last_flush > FLUSH_SECONDS:
                    self._flush(pending_keys, pending_rows)
                    pending_keys, pending_rows = [], []
                    last_flush = time.monotonic()
                start += size
                if reporter is not None:
                    reporter.update(min(start, len(items)), len(items), kind)
                loader.release(start)
        finally:
            loader.close()
            self._flush(pending_keys, pending_rows)  # keep finished work even on error
            if reporter is not None:
                reporter.idle()
            if own is not None:
                own.stop()
        return out

    def _flush(self, keys: list[str], rows: list[np.ndarray]) -> None:
        if not keys:
            return
        block = np.concatenate(rows)
        if self.cache is not None:
            self.cache.put_many(keys, block)
        else:
            self._memory.update(zip(keys, block))

    def _agree_width(self, width: int, source: str, where: str = "") -> None:
        """Every row this encoder serves has one width, whether it was encoded now or
        read from the cache (``source``: "encoded" or "cached"). A cached row of
        another width than the backend's output means a stale cache whose fingerprint
        did not change: :class:`~ctxbench.cache.CacheWidthError` names its folder."""
        if self.dim is None:
            self.dim, self._dim_source = int(width), source
            return
        if width == self.dim:
            return
        if "cached" in (source, self._dim_source) and self.cache is not None:
            new, old = ("the backend now returns", "cached") if source == "encoded" else ("cached", "the backend returns")
            raise BackendOutputError(str(CacheWidthError(
                self.cache.dir, sorted({width, self.dim}),
                f" ({new} {width}, {old} {self.dim})"))) from None
        raise BackendOutputError(f"{where or self.label} dimension {width}, but earlier batches had {self.dim}")

    def _check(self, emb: Any, n: int, kind: str) -> np.ndarray:
        import torch
        where = f"{self.label}.encode_{kind}s"
        if not isinstance(emb, torch.Tensor):
            raise BackendOutputError(f"{where} returned {type(emb).__name__}, expected a torch.Tensor [N, D]")
        if not emb.is_floating_point():
            raise BackendOutputError(f"{where} returned dtype {emb.dtype}, expected a floating dtype")
        if emb.ndim != 2 or emb.shape[0] != n:
            raise BackendOutputError(f"{where} returned shape {tuple(emb.shape)} for {n} inputs, "
                                     f"expected ({n}, D)")
        if emb.shape[1] == 0:
            raise BackendOutputError(f"{where} returned 0-dimensional embeddings (shape "
                                     f"{tuple(emb.shape)}); D must be at least 1")
        self._agree_width(int(emb.shape[1]), "encoded", f"{where} returned")
        rows = emb.detach().to("cpu", torch.float32).numpy()
        if not np.isfinite(rows).all():
            bad = int((~np.isfinite(rows)).any(axis=1).sum())
            raise BackendOutputError(f"{where} returned non-finite values in {bad} of {n} rows")
        if getattr(self.backend.capabilities, "normalized", False):
            zero = int((np.abs(rows).max(axis=1) == 0).sum())
            if zero:
                raise BackendOutputError(f"{where} returned {zero} all-zero rows of {n}, but the "
                                         "backend declares normalized=True (unit-norm rows); a "
                                         "zero row scores as a tie with everything")
        return rows
