"""One backend for a run: loaded once (or lazily, from a record of an earlier build),
its embedding-cache identity, and the cells it runs one at a time.

``Runner.run`` makes one :class:`BackendSession` per backend group; a Ray actor holds
one for its whole life, so a model is loaded once per worker.

Cache identity (:func:`cache_identity`): the backend's registered name, its plugin
distribution and version, its canonical arguments and the plugin's own fingerprint,
so a fingerprint that forgets an argument cannot serve stale embeddings.

Lazy load: after a backend's first real build its fingerprint and capabilities are
recorded under ``<cache>/backends/<digest>.json``; later sessions of the same backend
(name, args, plugin version, device, identity of the files its arguments name)
answer from the record and build the model only when an item is not in the
embedding cache (:class:`LazyBackend`).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .backend import check_backend_args
from .cell import Cell, backend_label
from .cell_guard import error_info, first_line
from .encoder import CachedEncoder
from .errors import BackendOutputError
from .io.atomic import write_json
from .task_config import TaskConfig

if TYPE_CHECKING:
    from .results import CellResult
    from .runner import Runner

#: Bump when what a backend record holds changes: every record is rebuilt.
BACKEND_RECORD_VERSION = 1
PATH_IDENTITY_MAX_FILES = 10_000


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


def _all_agree(flags: list[bool]) -> list[bool]:
    from . import distributed   # torch.distributed: only for data-parallel runs
    return distributed.all_agree(flags)


class LazyBackend:
    """Stands in for a backend recorded by an earlier run: ``fingerprint()`` and
    ``capabilities`` come from the record; the first ``encode_*`` call (or any other
    attribute) builds the real backend. A real backend whose fingerprint differs from
    the record (a plugin changed without a new version, or a fingerprint that is not
    deterministic) marks the record volatile and raises: its embeddings must not land
    in the recorded fingerprint's cache."""

    def __init__(self, build: Callable[[], Any], fingerprint: str, capabilities: Any,
                 record: Path | None, label: str):
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
                    if self._record is not None:
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
        if opt.data_parallel and not all(_all_agree([self.error is None])):
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
