"""The runner: every backend x task cell, one result file each.

For each backend (loaded once) and each task (dataset loaded once per run):
load -> encode through the cached encoder -> family evaluator -> results JSON.
A failing cell is recorded with its error and the run goes on; a task whose
real data is absent is recorded as skipped with instructions; a cell whose
valid result already exists is reused (``rerun=False``), so an interrupted run
resumes where it stopped, and the embedding cache means finished encodings are
never recomputed.

Dataset revision: a result records ``versions["dataset_revision"]``, taken from
the loaded dataset's ``dataset_revision`` attribute if it has one, else from a
``revision`` key in the task's dataset options (which is also part of the task
hash, hence of the cell id). An existing result whose recorded revision differs
from the dataset's current one is recomputed, not reused.

Warm reruns: with a cache dir, a trained probe is remembered under
``<cache>/artifacts`` (``EvalRequest.memo``, :mod:`ctxbench.probe`), and a backend
built once has its fingerprint and capabilities recorded under
``<cache>/backends/<digest>.json``; later sessions of the same backend (name, args,
plugin version, device, identity of the files its arguments name) answer from the
record and build the model only when an item is not in the embedding cache
(:class:`LazyBackend`).

Launchers (launchers.py) drive the same code: ``Runner.run`` on a shard of the
cells, or :class:`BackendSession` (one loaded backend, cells run one at a time)
inside a Ray actor, with ``write_results=False`` so that the driver writes.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .io.atomic import write_json
from .cache import EmbeddingCache
from . import distributed
from .backend import check_backend_args
from .cell import Cell, backend_label
from .encoder import CachedEncoder
from .errors import BackendOutputError, CtxbenchError, DataNotFound
from .families.contract import Dependency, EvalRequest
from .plugin_host import PluginHost
from .results import (CellResult, library_versions, now_iso, read_result, task_folder,
                      result_path, write_result)
from .registrations import LoadContext
from .task_config import TaskConfig


@dataclass
class RunOptions:
    output_dir: Path
    cache_dir: Path | None = None     # None: the default user cache dir
    use_cache: bool = True
    device: str = "cpu"
    batch_size: int | None = None     # None: each backend's default
    limit: int | None = None
    seed: int = 0
    rerun: bool = False
    progress: bool = True
    flush_rows: int = 1024            # cache segment size: work lost to a SIGKILL is bounded by it
    data_parallel: bool = False       # share encoding over torch.distributed ranks (distributed.py)
    write_results: bool = True        # False: compute only (non-zero data-parallel ranks, Ray workers)
    manifest_name: str = "manifest.json"  # relative to output_dir; shards get one each
    cell_timeout: float | None = None  # seconds; a cell past it is recorded as failed
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))


def error_info(exc: BaseException) -> dict[str, str]:
    """type, message (never empty: a bare ``assert`` says where it was) and traceback."""
    message = str(exc).strip()
    if not message:
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        message = f"{type(exc).__name__} with no message{where}"
    if isinstance(exc, SystemExit):
        message = f"the plugin called sys.exit({exc.code!r}); a backend must raise instead"
    return {"type": type(exc).__name__, "message": message,
            "traceback": "".join(traceback.format_exception(exc)[-6:])}


def portable_text(text: str) -> str:
    """``text`` with this machine's data root and home folder written as
    ``$CTXBENCH_DATA`` and ``~``, so committed results carry no machine paths."""
    import os
    data_root = os.environ.get("CTXBENCH_DATA", "")
    if data_root and len(data_root) > 1:
        text = text.replace(data_root.rstrip("/"), "$CTXBENCH_DATA")
    default_root = os.path.expanduser("~/ctxbench-data")
    text = text.replace(default_root, "$CTXBENCH_DATA")
    home = os.path.expanduser("~")
    return text.replace(home + "/", "~/") if len(home) > 1 else text


def portable_path(path) -> str:
    """A task file's path: relative to the installed task package or the working
    folder where it lies under one, else as given."""
    import os
    path = Path(path)
    try:
        import ctxbench_tasks
        return "ctxbench_tasks/" + str(path.resolve().relative_to(
            Path(ctxbench_tasks.__file__).parent.resolve()))
    except (ImportError, ValueError):
        pass
    try:
        return str(path.resolve().relative_to(Path(os.getcwd()).resolve()))
    except ValueError:
        return portable_text(str(path))


def first_line(message: str, width: int = 160) -> str:
    lines = message.strip().splitlines()
    return (lines[0] if lines else "")[:width]


def cache_identity(name: str, args: dict[str, Any], fingerprint: Any, provenance: str) -> str:
    """What keys a backend's embedding cache: its registered name, the plugin's
    distribution and version, its canonical (sorted, typed) arguments, and the
    plugin's own fingerprint. A plugin whose fingerprint forgets an argument still
    gets a fresh cache when that argument changes."""
    if not isinstance(fingerprint, str) or not fingerprint:
        raise BackendOutputError(f"backend {name!r}: fingerprint() returned {fingerprint!r}; it "
                                 "must return a non-empty string naming the weights, precision "
                                 "and prompts (it keys the embedding cache)")
    canonical = json.dumps({"backend": name, "plugin": provenance, "fingerprint": fingerprint,
                            "args": {k: [type(v).__name__, repr(v)] for k, v in sorted(args.items())}},
                           sort_keys=True)
    return f"{fingerprint}|{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


class Runner:
    def __init__(self, host: PluginHost, options: RunOptions):
        self.host = host
        self.opt = options
        self.cache = EmbeddingCache(options.cache_dir) if options.use_cache else None
        self._datasets: dict[str, Any] = {}
        self._skips_reported: set[str] = set()
        self._versions = library_versions()

    # -- cells -----------------------------------------------------------------
    def cells(self, tasks: list[TaskConfig], backends: list[tuple[str, dict]]) -> list[Cell]:
        return [Cell.make(b, args, t, self.opt.seed, self.opt.limit)
                for b, args in backends for t in tasks]

    def _existing(self, cell: Cell, task: TaskConfig) -> CellResult | None:
        """The valid result of ``cell`` if one exists (status ok, same dataset revision)."""
        if self.opt.rerun:
            return None
        path = Path(self.opt.output_dir) / task_folder(task.name) / f"{cell.cell_id}.json"
        if not path.exists():
            return None
        try:
            result = read_result(path)
        except CtxbenchError:
            return None
        if result.status != "ok":
            return None
        recorded = result.versions.get("dataset_revision")
        if recorded is not None:
            try:
                current = self.dataset_revision(task, self._dataset(task))
            except Exception:
                return None  # the cell will run and record why the dataset failed
            if current != recorded:
                self.opt.log(f"[ctxbench] {cell.label} x {task.name}: dataset revision changed "
                             f"({recorded} -> {current}), recomputing")
                return None
        return result

    @staticmethod
    def dataset_revision(task: TaskConfig, dataset: Any) -> str | None:
        """``dataset.dataset_revision`` if the loader sets it, else ``options['revision']``."""
        rev = getattr(dataset, "dataset_revision", None)
        if rev is None:
            rev = task.options.get("revision")
        return None if rev is None else str(rev)

    def existing(self, cells: list[Cell], tasks: dict[str, TaskConfig]) -> list[CellResult | None]:
        """Reusable results for ``cells`` (None where a cell must run). Data-parallel
        ranks agree: a cell is reused only if every rank sees its result."""
        found = [self._existing(c, tasks[c.task]) for c in cells]
        if self.opt.data_parallel:
            agreed = distributed.all_agree([r is not None for r in found])
            found = [r if ok else None for r, ok in zip(found, agreed)]
        return found

    def base_result(self, cell: Cell, task: TaskConfig, status: str) -> CellResult:
        return CellResult(cell_id=cell.cell_id, status=status, task=task.name,
                          task_hash=task.hash, task_version=task.version, family=task.family,
                          backend=cell.backend, backend_args=cell.args,
                          backend_label=cell.label, fingerprint=None, seed=self.opt.seed,
                          limit=self.opt.limit, versions=self._versions, timestamp=now_iso())

    # -- datasets --------------------------------------------------------------
    def _dataset(self, task: TaskConfig, limited: bool = True) -> Any:
        """Load once per run; a DataNotFound/other error is remembered and re-raised.

        ``limited=False`` (a dependency, e.g. the task a probe is trained on) ignores
        ``--limit``: the limit cuts what is evaluated, not what a scorer learns from."""
        key = (task.name, limited)
        if key not in self._datasets:
            loader = self.host.loaders.get(task.loader)
            ctx = LoadContext(task.name, task.path, self.opt.seed,
                              self.opt.limit if limited else None)
            try:
                self._datasets[key] = ("ok", loader.load(dict(task.options), ctx))
            except Exception as exc:
                self._datasets[key] = ("error", exc)
        state, value = self._datasets[key]
        if state == "error":
            raise value
        return value

    def _protocol(self, task: TaskConfig) -> dict[str, Any]:
        """The family's defaults overridden by the task's protocol."""
        return {**self.host.families.get(task.family).protocol_defaults, **task.protocol}

    def _dependencies(self, task: TaskConfig) -> dict[str, Dependency]:
        """The tasks ``task`` depends on, each with its dataset (loaded once per run)."""
        return {role: Dependency(dep, self._dataset(dep, limited=False), self._protocol(dep))
                for role, dep in task.dependencies.items()}

    # -- main loop -------------------------------------------------------------
    def run(self, tasks: list[TaskConfig], backends: list[tuple[str, dict]],
            cells: list[Cell] | None = None) -> list[CellResult]:
        """Run ``cells`` (default: every backend x task) and return their results."""
        task_by_name = {t.name: t for t in tasks}
        cells = cells if cells is not None else self.cells(tasks, backends)
        by_backend: dict[tuple, list[Cell]] = {}
        for cell in cells:
            by_backend.setdefault((cell.backend, cell.backend_args), []).append(cell)
        results: list[CellResult] = []
        for (name, args_items), backend_cells in by_backend.items():
            done, todo = self.split_existing(backend_cells, task_by_name)
            results.extend(done)
            if todo:
                results.extend(self._run_backend(name, dict(args_items), todo, task_by_name))
        return results

    def split_existing(self, cells: list[Cell], tasks: dict[str, TaskConfig]
                       ) -> tuple[list[CellResult], list[Cell]]:
        """(results that already exist and are reused, cells that must run); every
        launcher goes through here, so "result exists, skipped" has one rule."""
        done: list[CellResult] = []
        todo: list[Cell] = []
        for cell, existing in zip(cells, self.existing(cells, tasks)):
            if existing is not None:
                self.opt.log(f"[ctxbench] {cell.label} x {cell.task}: result exists, skipped "
                             f"(--rerun to recompute)")
                done.append(existing)
            else:
                todo.append(cell)
        return done, todo

    def _run_backend(self, name: str, args: dict, cells: list[Cell],
                     tasks: dict[str, TaskConfig]) -> list[CellResult]:
        session = BackendSession(self, name, args)
        return [session.run(cell, tasks[cell.task]) for cell in cells]

    def _failed_load(self, cell: Cell, task: TaskConfig, exc: BaseException) -> CellResult:
        r = self.base_result(cell, task, "failed")
        r.error = error_info(exc)
        return self._write(r)

    def _run_cell(self, cell: Cell, task: TaskConfig, encoder: CachedEncoder,
                  fingerprint: str, load_seconds: float, cache_key: str = "") -> CellResult:
        """Evaluate one cell. Whatever the dataset, the family or the plugin does
        (raise, sys.exit, hang past --cell-timeout), the cell is recorded and the run
        goes on; only KeyboardInterrupt stops it."""
        result = self.base_result(cell, task, "ok")
        result.fingerprint = fingerprint
        stats_before = dict(encoder.stats)
        encode_before = encoder.encode_seconds
        t0 = time.perf_counter()
        try:
            with cell_timeout(self.opt.cell_timeout):
                self._evaluate(result, task, encoder, load_seconds, encode_before, t0, cache_key)
        except DataNotFound as exc:
            result.status = "skipped"
            result.error = {"type": "DataNotFound", "message": portable_text(str(exc)),
                            "traceback": ""}
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            result.status = "failed"
            result.error = error_info(exc)
        result.seconds = round(time.perf_counter() - t0, 3)
        result.encoder_stats = {k: encoder.stats[k] - stats_before.get(k, 0) for k in encoder.stats}
        if result.status != "skipped" or task.name not in self._skips_reported:
            who = "all backends" if result.status == "skipped" else cell.label
            self.opt.log(f"[ctxbench] {who} x {task.name}: {self._status_line(result)}")
        if result.status == "skipped":
            self._skips_reported.add(task.name)   # one console line per skipped task
        return self._write(result)

    def _evaluate(self, result: CellResult, task: TaskConfig, encoder: CachedEncoder,
                  load_seconds: float, encode_before: float, t0: float,
                  cache_key: str = "") -> None:
        dataset = self._dataset(task)
        revision = self.dataset_revision(task, dataset)
        if revision is not None:
            result.versions = {**result.versions, "dataset_revision": revision}
        load_done = time.perf_counter()
        family = self.host.families.get(task.family)
        artifacts = result_path(self.opt.output_dir, result).with_suffix(".artifacts")
        memo = self.cache.artifacts if self.cache is not None else None
        output = family.evaluate(EvalRequest(task, dataset, encoder, self._protocol(task),
                                             self.opt.seed, artifacts, self.opt.device,
                                             self._dependencies(task), memo=memo,
                                             cache_identity=cache_key))
        result.metrics = output.metrics
        result.headline = list(task.metrics) or list(output.headline)
        result.tables, result.details, result.n = output.tables, output.details, output.n
        result.timings = {"backend_load": round(load_seconds, 3),
                          "dataset_load": round(load_done - t0, 3),
                          "encode": round(encoder.encode_seconds - encode_before, 3)}

    @staticmethod
    def _status_line(result: CellResult) -> str:
        if result.status == "ok":
            stats = result.encoder_stats or {}
            cached = stats.get("cache_hits", 0)
            total = cached + stats.get("items_encoded", 0)
            served = f", {cached} of {total} encodings cached" if total else ""
            return f"ok in {result.seconds:.1f}s{served}"
        if result.status == "skipped":
            return f"skipped: data not found (`ctxbench data {result.task}` says where it goes)"
        return f"{result.status} ({result.error['type']}: {first_line(result.error['message'])})"

    def _write(self, result: CellResult) -> CellResult:
        """Write the result; a write that fails (unwritable folder, a value JSON cannot
        hold) turns into a failed result in memory, never an aborted run."""
        if not self.opt.write_results:
            return result
        try:
            write_result(self.opt.output_dir, result)
        except (OSError, ValueError, TypeError) as exc:
            self.opt.log(f"[ctxbench] {result.backend_label} x {result.task}: could not write "
                         f"the result ({type(exc).__name__}: {exc})")
            result.status = "failed"
            result.error = {"type": type(exc).__name__,
                            "message": f"the result could not be written: {exc}",
                            "traceback": ""}
        return result


class CellTimeout(CtxbenchError):
    """A cell ran longer than --cell-timeout."""


@contextmanager
def cell_timeout(seconds: float | None):
    """Raise :class:`CellTimeout` in the main thread after ``seconds`` (SIGALRM; a
    no-op when ``seconds`` is None, off the main thread, or where there is no SIGALRM)."""
    usable = seconds and hasattr(signal, "SIGALRM") and \
        threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise CellTimeout(f"the cell ran longer than --cell-timeout {seconds:g} s and was "
                          "stopped; raise the limit or check the backend for a hang")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


#: Bump when what a backend record holds changes: every record is rebuilt.
BACKEND_RECORD_VERSION = 1
PATH_IDENTITY_MAX_FILES = 10_000


def _path_identity(value: Any) -> Any:
    """Size and mtime of the file, or of every file under the folder, that an argument
    value names (weights may change on disk behind the same argument); None when it
    names nothing; raises OverflowError past PATH_IDENTITY_MAX_FILES files."""
    import os
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        return None
    path = Path(os.path.expanduser(str(value)))
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    if not path.is_dir():
        return ["file", st.st_size, st.st_mtime_ns]
    entries = [["dir", st.st_mtime_ns]]
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs.sort()
        for f in sorted(files):
            full = Path(root) / f
            try:
                fs = full.stat()
            except OSError:
                continue
            entries.append([str(full.relative_to(path)), fs.st_size, fs.st_mtime_ns])
            if len(entries) > PATH_IDENTITY_MAX_FILES:
                raise OverflowError(str(path))
    return entries


def backend_record_key(name: str, args: dict[str, Any], provenance: str, device: str,
                       factory: Any = None) -> str | None:
    """Digest naming one build of a backend: its name, canonical arguments, plugin
    provenance, device, the identity of every file or folder an argument names and of
    the factory's source file. None (no record: always build) when an argument names
    a folder too large to stat."""
    import inspect
    from .cache import digest
    try:
        paths = {k: _path_identity(v) for k, v in sorted(args.items())}
        source = inspect.getsourcefile(factory) if factory is not None else None
    except OverflowError:
        return None
    except TypeError:
        source = None
    canonical = {k: [type(v).__name__, repr(v)] for k, v in sorted(args.items())}
    return digest("ctxbench-backend-record", BACKEND_RECORD_VERSION, name, canonical, provenance,
                  str(device), paths, _path_identity(source) if source else None)[:32]


def read_backend_record(path: Path):
    """(fingerprint, Capabilities) of a record, ``"volatile"`` for a backend whose
    fingerprint once differed from its record (always built), or None when absent or
    unreadable."""
    import dataclasses
    from .backend import Capabilities
    try:
        data = json.loads(path.read_text("utf-8"))
        if data.get("version") == BACKEND_RECORD_VERSION and data.get("volatile") is True:
            return "volatile"
        fingerprint = data["fingerprint"]
        fields = {f.name for f in dataclasses.fields(Capabilities)}
        caps = data["capabilities"]
        if (data.get("version") != BACKEND_RECORD_VERSION or not isinstance(fingerprint, str)
                or not fingerprint or not isinstance(caps, dict) or set(caps) != fields):
            return None
        return fingerprint, Capabilities(**caps)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_backend_record(path: Path, backend: Any) -> None:
    """Record a freshly built backend's fingerprint and capabilities (only when they are
    plain: a str and a :class:`~ctxbench.backend.Capabilities`)."""
    import dataclasses
    from .backend import Capabilities
    try:
        fingerprint = backend.fingerprint()
        caps = backend.capabilities
    except Exception:
        return   # the session reports the failure itself
    if not isinstance(fingerprint, str) or not fingerprint or type(caps) is not Capabilities:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"version": BACKEND_RECORD_VERSION, "fingerprint": fingerprint,
                          "capabilities": dataclasses.asdict(caps)})
    except (OSError, TypeError, ValueError):
        pass   # a read-only cache: the next run builds the backend again


class LazyBackend:
    """Stands in for a backend recorded by an earlier run: ``fingerprint()`` and
    ``capabilities`` come from the record; the first ``encode_*`` call (or any other
    attribute) builds the real backend. A real backend whose fingerprint differs from
    the record (a plugin changed without a new version, or a fingerprint that is not
    deterministic) marks the record volatile and raises: its embeddings must not land
    in the recorded fingerprint's cache."""

    def __init__(self, build: Callable[[], Any], fingerprint: str, capabilities: Any,
                 record: Path, label: str):
        self._build, self._fingerprint, self.capabilities = build, fingerprint, capabilities
        self._record, self._label = record, label
        self._real: Any = None
        self._mismatch: BaseException | None = None
        self.built = False

    def fingerprint(self) -> str:
        return self._fingerprint

    def real(self) -> Any:
        if self._mismatch is not None:
            raise self._mismatch
        if self._real is None:
            backend = self._build()
            self.built = True
            now = backend.fingerprint()
            if now != self._fingerprint or backend.capabilities != self.capabilities:
                try:   # from now on this backend is always built before it is asked
                    write_json(self._record, {"version": BACKEND_RECORD_VERSION, "volatile": True})
                except (OSError, ValueError):
                    pass
                self._mismatch = BackendOutputError(
                    f"backend {self._label}: fingerprint {now!r} differs from the one recorded by "
                    f"an earlier run ({self._fingerprint!r}) for the same arguments, so this "
                    f"session's embedding cache may not be this backend's; run again (it is "
                    f"now built before its fingerprint is read). A plugin should change its "
                    f"version or fingerprint with its code.")
                raise self._mismatch
            self._real = backend
        return self._real

    def encode_images(self, images, contexts):
        return self.real().encode_images(images, contexts)

    def encode_texts(self, texts, contexts):
        return self.real().encode_texts(texts, contexts)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.real(), name)


class BackendSession:
    """One backend loaded once (or its load error), running cells one at a time.

    ``Runner.run`` makes one per backend group; a Ray actor holds one for its
    whole life, so a model is loaded once per worker.
    """

    def __init__(self, runner: Runner, name: str, args: dict):
        self.runner = runner
        self.label = backend_label(name, args)
        self.error: BaseException | None = None
        opt = runner.opt
        t0 = time.perf_counter()
        try:
            spec = runner.host.backends.get(name)
            all_args = check_backend_args(spec, {**spec.default_args, **args})
            provenance = runner.host.provenance.get(runner.host.backends.origin(name), "?")
            self.backend = self._backend(spec, name, all_args, provenance, opt.device)
            self.fingerprint = self.backend.fingerprint()
            self.cache_key = cache_identity(name, all_args, self.fingerprint, provenance)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit from a plugin becomes a failed cell
            self.error = exc
        if opt.data_parallel and not all(distributed.all_agree([self.error is None])):
            self.error = self.error or RuntimeError("the backend failed to load on another "
                                                    "data-parallel rank (see its log)")
        if self.error is not None:
            opt.log(f"[ctxbench] backend {self.label} failed to load: "
                    f"{first_line(error_info(self.error)['message'])}")
            return
        self.load_seconds = time.perf_counter() - t0
        cache = runner.cache.for_backend(self.cache_key) if runner.cache is not None else None
        self.encoder = CachedEncoder(self.backend, cache, opt.batch_size or spec.default_batch_size,
                                     progress=opt.progress, label=self.label,
                                     flush_rows=opt.flush_rows, data_parallel=opt.data_parallel)

    def _backend(self, spec, name: str, args: dict, provenance: str, device: str):
        """The backend, or with a cache dir and a record of an earlier build of the same
        backend (:func:`backend_record_key`) a :class:`LazyBackend` that builds it on
        the first encode call: a warm rerun never loads the model."""
        def build():
            return spec.factory(device=device, **args)
        cache = self.runner.cache
        if cache is None:
            return build()
        key = backend_record_key(name, args, provenance, device, spec.factory)
        if key is None:
            return build()
        path = Path(cache.root) / "backends" / f"{key}.json"
        record = read_backend_record(path)
        if record == "volatile":
            return build()
        if record is not None:
            return LazyBackend(build, record[0], record[1], path, self.label)
        backend = build()
        write_backend_record(path, backend)
        return backend
    def run(self, cell: Cell, task: TaskConfig) -> CellResult:
        if self.error is not None:
            return self.runner._failed_load(cell, task, self.error)
        return self.runner._run_cell(cell, task, self.encoder, self.fingerprint, self.load_seconds,
                                     self.cache_key)


def write_manifest(output_dir: Path, tasks: list[TaskConfig], backends: list[tuple[str, dict]],
                   results: list[CellResult], seconds: float, options: RunOptions) -> None:
    """Run-level record (versions, task hashes, seeds, timings) next to the results,
    at ``options.manifest_name`` (each shard writes its own); not written by ranks
    that do not write results."""
    if not options.write_results:
        return
    write_json(Path(output_dir) / options.manifest_name, {
        "versions": library_versions(),
        "timestamp": now_iso(),
        "seconds": round(seconds, 3),
        "seed": options.seed, "limit": options.limit, "device": options.device,
        "tasks": {t.name: {"hash": t.hash, "version": t.version, "family": t.family,
                           "file": portable_path(t.path)} for t in tasks},
        "backends": [{"name": b, "args": a} for b, a in backends],
        "cells": [{"cell_id": r.cell_id, "task": r.task, "backend": r.backend_label,
                   "status": r.status, "seconds": r.seconds, "fingerprint": r.fingerprint}
                  for r in results],
    })
