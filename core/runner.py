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

Evaluations are remembered too (:mod:`ctxbench.cell_memo`): a ``--rerun`` cell whose
code, data, protocol and embeddings are all unchanged restores its evaluator's output
from ``<cache>/evaluations`` (the console line says "evaluation cached"), so a warm
rerun imports no torch; ``--no-cache`` (or ``RunOptions.cell_memo=False``) evaluates.

Progress: a cell running longer than ``progress_delay`` seconds shows a progress line
(:mod:`ctxbench.progress`), unless ``progress=False`` (``--no-progress``).

Launchers (launchers.py) drive the same code: ``Runner.run`` on a shard of the
cells, or :class:`BackendSession` (one loaded backend, cells run one at a time)
inside a Ray actor, with ``write_results=False`` so that the driver writes.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import cell_memo
from .backend_session import BackendSession, cache_identity  # noqa: F401 - re-exported
from .cache import EmbeddingCache
from .cell import Cell
from .cell_guard import CellTimeout, cell_timeout, error_info, first_line  # noqa: F401 - re-exported
from .encoder import CachedEncoder
from .errors import CtxbenchError, DataNotFound
from .io.atomic import write_json
from .io.portable import portable_path, portable_text
from .families.contract import Dependency, EvalRequest
from .plugin_host import PluginHost
from .progress import DELAY as PROGRESS_DELAY, INTERVAL as PROGRESS_INTERVAL, CellProgress
from .results import (CellResult, json_safe, library_versions, now_iso, read_result,
                      task_folder, result_path, write_result)
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
    cell_memo: bool = True            # restore unchanged evaluations from the cache (cell_memo.py)
    progress_delay: float = PROGRESS_DELAY        # seconds before a cell shows progress
    progress_interval: float = PROGRESS_INTERVAL  # seconds between lines when not a terminal
    progress_stream: Any = None       # where progress goes (None: sys.stderr)
    families_of: dict[str, tuple[str, ...]] = field(default_factory=dict)  # backend -> the only
    #                                   families it runs (the embedded default's scope); absent: all
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))


class Runner:
    def __init__(self, host: PluginHost, options: RunOptions):
        self.host = host
        self.opt = options
        self.cache = EmbeddingCache(options.cache_dir) if options.use_cache else None
        self._datasets: dict[str, Any] = {}
        self._digests: dict[tuple[str, bool], str | None] = {}   # dataset as loaded (cell_memo)
        self._skips_reported: set[str] = set()
        self._versions = library_versions()

    # -- cells -----------------------------------------------------------------
    def cells(self, tasks: list[TaskConfig], backends: list[tuple[str, dict]]) -> list[Cell]:
        """Every backend x task cell, less those ``families_of`` leaves out."""
        scope = self.opt.families_of
        return [Cell.make(b, args, t, self.opt.seed, self.opt.limit)
                for b, args in backends for t in tasks
                if b not in scope or t.family in scope[b]]

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
            from . import distributed
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
        progress = self._progress(cell, task, encoder)
        reused = False
        try:
            with cell_timeout(self.opt.cell_timeout):
                reused = self._evaluate(result, task, encoder, load_seconds, encode_before, t0,
                                        cache_key)
        except DataNotFound as exc:
            result.status = "skipped"
            result.error = {"type": "DataNotFound", "message": portable_text(str(exc)),
                            "traceback": ""}
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            result.status = "failed"
            result.error = error_info(exc)
        finally:
            if progress is not None:
                progress.stop()
                encoder.reporter = None
        result.seconds = round(time.perf_counter() - t0, 3)
        result.encoder_stats = {k: encoder.stats[k] - stats_before.get(k, 0) for k in encoder.stats}
        result.encoder_stats["evaluation_reused"] = int(reused)
        if result.status != "skipped" or task.name not in self._skips_reported:
            who = "all backends" if result.status == "skipped" else cell.label
            self.opt.log(f"[ctxbench] {who} x {task.name}: {self._status_line(result)}")
        if result.status == "skipped":
            self._skips_reported.add(task.name)   # one console line per skipped task
        return self._write(result)

    def _progress(self, cell: Cell, task: TaskConfig, encoder: CachedEncoder) -> CellProgress | None:
        """The cell's progress line (None with ``progress=False``); the encoder reports to it."""
        if not self.opt.progress:
            return None
        progress = CellProgress(f"{cell.label} x {task.name}", self.opt.progress_stream,
                                delay=self.opt.progress_delay,
                                interval=self.opt.progress_interval,
                                refresh=min(0.25, max(0.01, self.opt.progress_delay / 4)))
        encoder.reporter = progress
        return progress.start()

    def _evaluate(self, result: CellResult, task: TaskConfig, encoder: CachedEncoder,
                  load_seconds: float, encode_before: float, t0: float,
                  cache_key: str = "") -> bool:
        """Fill ``result`` from the family's evaluator, or from the evaluation memo when
        nothing it depends on changed; True when restored from the memo."""
        dataset = self._dataset(task)
        revision = self.dataset_revision(task, dataset)
        if revision is not None:
            result.versions = {**result.versions, "dataset_revision": revision}
        load_done = time.perf_counter()
        family = self.host.families.get(task.family)
        artifacts = result_path(self.opt.output_dir, result).with_suffix(".artifacts")
        memo = self.cache.artifacts if self.cache is not None else None
        protocol = self._protocol(task)
        dependencies = self._dependencies(task)
        key = self._memo_key(result, task, family, protocol, dependencies, encoder, cache_key,
                             artifacts)
        hit = None
        if key is not None:
            hit = cell_memo.lookup(self.cache.evaluations, key, encoder.cache, artifacts)
        if hit is not None:
            output, requests, duplicates = hit
            encoder.stats["cache_hits"] += requests
            encoder.stats["duplicates_skipped"] += duplicates
        else:
            before = dict(encoder.stats)
            if key is not None:
                encoder.start_recording()
            try:
                output = family.evaluate(EvalRequest(task, dataset, encoder, protocol,
                                                     self.opt.seed, artifacts, self.opt.device,
                                                     dependencies, memo=memo,
                                                     cache_identity=cache_key))
            finally:
                consumed = encoder.stop_recording()
            if key is not None:
                served = {k: encoder.stats[k] - before.get(k, 0) for k in encoder.stats}
                try:   # the memo only saves time: failing to store never fails the cell
                    cell_memo.store(self.cache.evaluations, key, output, consumed, encoder.cache,
                                    artifacts, served["cache_hits"] + served["items_encoded"],
                                    served["duplicates_skipped"])
                except Exception:
                    pass
        result.metrics = output.metrics
        result.headline = list(task.metrics) or list(output.headline)
        result.tables, result.details, result.n = output.tables, output.details, output.n
        result.timings = {"backend_load": round(load_seconds, 3),
                          "dataset_load": round(load_done - t0, 3),
                          "encode": round(encoder.encode_seconds - encode_before, 3)}
        return hit is not None

    def _memo_key(self, result: CellResult, task: TaskConfig, family: Any, protocol: dict,
                  dependencies: dict[str, Dependency], encoder: CachedEncoder, cache_key: str,
                  artifacts: Path) -> str | None:
        """The evaluation-memo key of this cell (cell_memo.py), None when it has none:
        no disk cache, ``cell_memo=False``, data-parallel, or inputs it cannot identify."""
        if (self.cache is None or encoder.cache is None or not self.opt.cell_memo
                or self.opt.data_parallel):
            return None
        digests = {(name, limited): self._dataset_digest(name, limited)   # all, before any
                   for name, limited in [(task.name, True)]               # evaluator runs
                   + [(d.task.name, False) for d in dependencies.values()]}
        if None in digests.values():
            return None
        try:
            return cell_memo.evaluation_key(
                cell_id=result.cell_id, task=task, family=family,
                family_provenance=self.host.provenance.get(self.host.families.origin(task.family), "?"),
                protocol=protocol, seed=self.opt.seed, limit=self.opt.limit, device=self.opt.device,
                cache_identity=cache_key, capabilities=encoder.capabilities, artifact_dir=artifacts,
                dataset=digests[task.name, True],
                dependencies={role: (d.task.hash, d.task.version,
                                     json_safe(d.protocol), digests[d.task.name, False])
                              for role, d in dependencies.items()})
        except Exception:   # NotMemoizable, or inputs the digest cannot read: evaluate
            return None

    def _dataset_digest(self, name: str, limited: bool) -> str | None:
        """:func:`cell_memo.dataset_digest` of a loaded dataset, taken the first time it is
        asked for (before any evaluator has seen the dataset); None: not digestible."""
        key = (name, limited)
        if key not in self._digests:
            state, value = self._datasets[key]
            try:
                self._digests[key] = cell_memo.dataset_digest(value) if state == "ok" else None
            except Exception:   # NotMemoizable, an unreadable image file, ...: no memo
                self._digests[key] = None
        return self._digests[key]

    @staticmethod
    def _status_line(result: CellResult) -> str:
        if result.status == "ok":
            stats = result.encoder_stats or {}
            cached = stats.get("cache_hits", 0)
            total = cached + stats.get("items_encoded", 0)
            served = f", {cached} of {total} encodings cached" if total else ""
            if stats.get("evaluation_reused"):
                served += ", evaluation cached"
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
