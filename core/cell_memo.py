"""Whole evaluations remembered across runs (issue 18): a ``--rerun`` whose inputs are
all unchanged restores the evaluator's output instead of computing it again, so a
warm rerun imports no torch, builds no model, reads no image and trains no probe.

An evaluation is a deterministic function of what the evaluator can see; the memo
key (:func:`evaluation_key`) is the digest of all of it:

* the code: identity (relative path, size, mtime in ns) of every ``.py`` file of the
  ctxbench package and of the family's own package, the family plugin's
  distribution and version, and the versions of python, numpy, torch, scipy, ...;
* the cell: cell id (backend, its arguments, task hash, seed, limit), the task's
  name, version, family, expanded dataset options and merged protocol, the device,
  the backend's embedding-cache identity and capabilities, the artifact folder;
* the data: a structural digest of the loaded dataset (:func:`dataset_digest`:
  dataclasses, containers, arrays, scalars, and :class:`~ctxbench.inputs.ImageRef`
  by its content key), and of every dependency's dataset and protocol. A dataset
  holding anything else (a ``Path`` read later, a video reader, a callable) has no
  digest and its cells are always evaluated.

An entry also records which embeddings the evaluation read (their entry keys) and
where they lived in the cache (:meth:`BackendCache.locations_digest`), and the
identity of every file it left in the artifact folder. A lookup is a hit only if
all of them are still there unchanged; anything else evaluates again (and
rewrites the entry). ``--no-cache`` evaluates everything.

Entries live in ``<cache>/evaluations/<key>.npz`` (:class:`ArtifactMemo`, no pickle).
Standard library and numpy only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import ImageRef
from .results import MetricValue, json_safe, library_versions

#: Bump when what an entry holds or how a key is made changes: every entry misses.
MEMO_VERSION = 1
MAX_DEPTH = 64
MAX_CODE_FILES = 5_000


class NotMemoizable(Exception):
    """The inputs of an evaluation cannot be identified; it is always evaluated."""


# -- dataset digest ------------------------------------------------------------
def dataset_digest(obj: Any) -> str:
    """sha256 of a loaded dataset's structure and content; raises :class:`NotMemoizable`
    for a value whose content it cannot see (anything but dataclasses, lists, tuples,
    dicts (in order), sets, numpy arrays and scalars, str/bytes/int/float/bool/None,
    ImageRefs (content key and label) and torch tensors)."""
    h = hashlib.sha256(b"ctxbench-dataset\0")
    _feed(h, obj, 0, set())
    return h.hexdigest()


_SCALARS = (type(None), bool, int, float, str)
_FIELDS: dict[type, tuple[str, ...]] = {}


def _flat(v: Any) -> bool:
    t = type(v)
    return t in _SCALARS or (t is tuple and all(type(u) in _SCALARS for u in v))


def _scalars_json(items) -> str | None:
    """``items`` as JSON when every one is None/bool/int/float/str or a tuple of those
    (exact: floats by repr, ints and floats told apart; a nested array is always a
    tuple), else None. The fast path for long columns."""
    if all(map(_flat, items)):
        return json.dumps(items if type(items) is list else list(items), ensure_ascii=False)
    return None


def _feed(h, x: Any, depth: int, active: set[int]) -> None:
    t = type(x)
    if t in _SCALARS or t is complex:
        h.update(f"{t.__name__}:{x!r};".encode("utf-8", "surrogatepass"))
        return
    if t is bytes:
        h.update(b"bytes:%d:" % len(x))
        h.update(x)
        return
    if depth > MAX_DEPTH:
        raise NotMemoizable("the dataset is nested too deeply")
    if isinstance(x, np.ndarray):
        if x.dtype.hasobject:
            h.update(f"ndo:{x.shape}:".encode())
            for v in x.ravel().tolist():
                _feed(h, v, depth + 1, active)
        else:
            a = np.ascontiguousarray(x)
            h.update(f"nd:{a.dtype.str}:{a.shape}:".encode())
            try:
                h.update(a)                  # the buffer itself, no copy
            except (TypeError, ValueError, BufferError):
                h.update(a.tobytes())        # dtypes without a buffer format (datetime64)
        return
    if isinstance(x, np.generic):
        _feed(h, np.asarray(x), depth + 1, active)
        return
    if t is ImageRef:
        h.update(f"img:{x.key}:{len(x.label)}:{x.label};".encode("utf-8", "surrogatepass"))
        return
    if isinstance(x, ImageRef):   # a subclass: its type is part of what it is
        h.update(f"img:{t.__module__}.{t.__qualname__}:".encode())
        h.update(f"{x.key}:{len(x.label)}:{x.label};".encode("utf-8", "surrogatepass"))
        return
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):   # a torch tensor
        h.update(b"tensor:")
        _feed(h, x.detach().cpu().numpy(), depth + 1, active)
        return
    if id(x) in active:
        raise NotMemoizable("the dataset contains a reference cycle")
    active.add(id(x))
    try:
        if t in (list, tuple):
            h.update(f"{t.__name__}{len(x)}:".encode())
            flat = _scalars_json(x)
            if flat is not None:
                h.update(b"j:")
                h.update(flat.encode("utf-8", "surrogatepass"))
                return
            for v in x:
                _feed(h, v, depth + 1, active)
        elif t is dict:
            h.update(f"dict{len(x)}:".encode())
            keys, values = _scalars_json(x.keys()), _scalars_json(x.values())
            if keys is not None and values is not None:   # in order: an evaluator may iterate it
                h.update(b"j:")
                h.update(f"{len(keys)}:{keys}{values}".encode("utf-8", "surrogatepass"))
                return
            for k, v in x.items():
                _feed(h, k, depth + 1, active)
                _feed(h, v, depth + 1, active)
        elif t in (set, frozenset):
            h.update(f"{t.__name__}{len(x)}:".encode())
            for v in sorted(x, key=repr):
                _feed(h, v, depth + 1, active)
        elif dataclasses.is_dataclass(x) and not isinstance(x, type):
            h.update(f"dc:{t.__module__}.{t.__qualname__}:".encode())
            names = _FIELDS.get(t)
            if names is None:
                names = _FIELDS[t] = tuple(f.name for f in dataclasses.fields(x))
            extra = [k for k in getattr(x, "__dict__", ()) if k not in names]
            every = (*names, *sorted(extra))
            values = [getattr(x, name) for name in every]
            flat = _scalars_json(values)
            if flat is not None:
                h.update(f"j:{json.dumps(every)}{flat}".encode("utf-8", "surrogatepass"))
                return
            for name, value in zip(every, values):
                h.update(f"{name}=".encode())
                _feed(h, value, depth + 1, active)
        else:
            raise NotMemoizable(f"the dataset holds a {t.__module__}.{t.__qualname__}, whose "
                                "content cannot be digested")
    finally:
        active.discard(id(x))


# -- code identity -------------------------------------------------------------
_CODE: dict[str, list] = {}


def _package_dir(module: str) -> Path | None:
    """The folder of the top-level package of ``module`` (None: a single-file module
    or not found), without importing it."""
    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent if spec.origin else None


def code_identity(folder: Path) -> list:
    """(relative path, size, mtime ns) of every ``.py`` file under ``folder``, sorted;
    memoised per process. Raises :class:`NotMemoizable` past MAX_CODE_FILES files."""
    key = str(folder)
    if key not in _CODE:
        entries = []
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            for f in sorted(files):
                if f.endswith(".py"):
                    full = os.path.join(root, f)
                    try:
                        st = os.stat(full)
                    except OSError:
                        continue
                    entries.append([os.path.relpath(full, folder), st.st_size, st.st_mtime_ns])
                    if len(entries) > MAX_CODE_FILES:
                        raise NotMemoizable(f"{folder} has more than {MAX_CODE_FILES} files")
        _CODE[key] = entries
    return _CODE[key]


def _family_module(family: Any) -> str:
    evaluate = family.evaluate
    target = getattr(evaluate, "target", None)   # a lazy hook (ctxbench.lazy)
    if isinstance(target, str):
        return target.partition(":")[0]
    return getattr(evaluate, "__module__", None) or ""


_VERSIONS: dict[str, str] = {}


def _versions() -> dict[str, str]:
    if not _VERSIONS:
        out = dict(library_versions())
        for dist in ("scipy", "pillow"):
            try:
                out[dist] = md.version(dist)
            except md.PackageNotFoundError:
                out[dist] = "not installed"
        out["machine"] = platform.machine()
        _VERSIONS.update(out)
    return _VERSIONS


def evaluation_key(*, cell_id: str, task: Any, family: Any, family_provenance: str,
                   protocol: dict, seed: int, limit: int | None, device: str,
                   cache_identity: str, capabilities: Any, artifact_dir: Path | None,
                   dataset: str, dependencies: dict[str, tuple]) -> str:
    """The memo key of one evaluation (module docstring); ``dataset`` is the loaded
    dataset's :func:`dataset_digest`, ``dependencies`` role -> (task hash, protocol,
    dataset digest). Raises :class:`NotMemoizable`."""
    from . import __file__ as core_init
    from .cache import digest
    core = Path(core_init).parent
    module = _family_module(family)
    own = _package_dir(module) if module else None
    code = {"ctxbench": code_identity(core)}
    if own is not None and own.resolve() != core.resolve():
        code[module.split(".")[0]] = code_identity(own)
    if not dataclasses.is_dataclass(capabilities):
        raise NotMemoizable("the backend's capabilities are not a dataclass")
    return digest("ctxbench-evaluation", MEMO_VERSION, code, _versions(), family_provenance,
                  cell_id, task.name, task.hash, task.version, task.family,
                  json.dumps(json_safe(task.options), sort_keys=True, default=repr),
                  json.dumps(json_safe(protocol), sort_keys=True, default=repr),
                  int(seed), limit, str(device), cache_identity,
                  dataclasses.asdict(capabilities),
                  "" if artifact_dir is None else os.path.abspath(artifact_dir),
                  dataset, {k: list(v) for k, v in sorted(dependencies.items())})


# -- entries -------------------------------------------------------------------
def artifact_identity(folder: Path | None) -> list:
    """(relative path, size, mtime ns) of every file under ``folder`` (empty if none)."""
    if folder is None or not Path(folder).is_dir():
        return []
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for f in sorted(files):
            full = os.path.join(root, f)
            st = os.stat(full)
            out.append([os.path.relpath(full, folder), st.st_size, st.st_mtime_ns])
    return out


def output_to_json(output: Any) -> dict:
    """A FamilyOutput as the JSON the result file will hold (so a restore writes the
    same bytes)."""
    return {"metrics": {k: v.to_json() for k, v in output.metrics.items()},
            "headline": list(output.headline), "tables": json_safe(output.tables),
            "details": json_safe(output.details), "n": output.n}


def output_from_json(d: dict) -> Any:
    from .families.contract import FamilyOutput
    return FamilyOutput(metrics={k: MetricValue.from_json(v) for k, v in d["metrics"].items()},
                        headline=list(d["headline"]), tables=d["tables"], details=d["details"],
                        n=d["n"])


def store(memo: Any, key: str, output: Any, consumed: set[str], cache: Any,
          artifact_dir: Path | None, requests: int, duplicates: int) -> bool:
    """Remember an evaluation (False when it cannot be: an embedding it read is not
    in the disk cache, or its output is not JSON)."""
    locations = cache.locations_digest(consumed) if cache is not None else None
    if locations is None:
        return False
    try:
        entry = json.dumps({"version": MEMO_VERSION, "output": output_to_json(output),
                            "locations": locations, "artifacts": artifact_identity(artifact_dir),
                            "requests": int(requests), "duplicates": int(duplicates)},
                           allow_nan=False)
    except (TypeError, ValueError, OSError):
        return False
    memo.put(key, {"entry": np.array(entry), "keys": np.array(sorted(consumed), dtype="S64")})
    return True


def lookup(memo: Any, key: str, cache: Any, artifact_dir: Path | None) -> tuple[Any, int, int] | None:
    """(FamilyOutput, requests, duplicates) of a remembered evaluation whose embeddings
    and artifacts are all unchanged; None otherwise."""
    got = memo.get(key)
    if got is None or cache is None:
        return None
    try:
        entry = json.loads(str(got["entry"]))
        keys = [k.decode() for k in got["keys"].tolist()]
        if entry.get("version") != MEMO_VERSION:
            return None
        if cache.locations_digest(keys) != entry["locations"]:
            return None
        if artifact_identity(artifact_dir) != entry["artifacts"]:
            return None
        return output_from_json(entry["output"]), int(entry["requests"]), int(entry["duplicates"])
    except Exception:   # an entry of another layout, a torn file: evaluate
        return None
