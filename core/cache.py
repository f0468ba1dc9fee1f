"""On-disk embedding cache keyed by content hashes (the lmms-eval idea: content-hash
keys and crash-safe replay).

Layout::

    <cache_dir>/<sha256(fingerprint)[:24]>/
        fingerprint.txt                 # the backend fingerprint, for humans
        seg-<id>.emb.npy                # float32 [n, D]
        seg-<id>.keys.npy               # S64 [n]: sha256(kind, input key, context key)

A segment is committed when its ``.keys.npy`` exists: embeddings are written
first, keys last, each atomically (temp file + rename). A run killed at any
point therefore leaves only whole segments, and a resumed run recomputes exactly
the entries that never reached the disk. Processes sharing one cache (shards of a
job) write distinct segment names, so they never clobber each other's files.

``<cache_root>/artifacts`` holds deterministic evaluator work (trained probes) and
``<cache_root>/evaluations`` whole evaluations (:mod:`ctxbench.cell_memo`), both
:class:`ArtifactMemo` entries keyed by the digest of their inputs.

``<cache_root>/file-hashes.tsv`` remembers the content hash of image files by file
identity (:class:`FileHashStore`), so a rerun does not read and hash them again.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import uuid
from pathlib import Path

import numpy as np

from .io.atomic import atomic_path


def default_cache_dir() -> Path:
    """$CTXBENCH_CACHE, else $XDG_CACHE_HOME/ctxbench, else ~/.cache/ctxbench."""
    if os.environ.get("CTXBENCH_CACHE"):
        return Path(os.environ["CTXBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ctxbench"


def entry_key(kind: str, input_key: str, ctx_key: str) -> str:
    return hashlib.sha256(f"{kind}\0{input_key}\0{ctx_key}".encode()).hexdigest()


class CacheWidthError(ValueError):
    """Cached rows of one backend fingerprint that disagree in width with each other
    or with what the backend returns now: the fingerprint did not change although the
    backend's output did, so no row of that cache can be trusted."""

    def __init__(self, directory: Path, widths: list[int], detail: str = ""):
        self.directory, self.widths = directory, widths
        super().__init__(
            f"embedding cache {directory} holds rows of dimension {' and '.join(map(str, widths))}"
            f"{detail}: the backend's output changed but its fingerprint did not. Delete that "
            f"folder (or run with --no-cache), and make the backend's fingerprint() cover whatever "
            f"changed its output (weights, config, arguments)")


class BackendCache:
    """The cache of one backend fingerprint."""

    def __init__(self, directory: Path, fingerprint: str):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        fp_file = self.dir / "fingerprint.txt"
        if not fp_file.exists():
            with atomic_path(fp_file) as tmp:
                tmp.write_text(fingerprint + "\n")
        self._index: dict[str, tuple[int, int]] = {}
        self._segments: list[np.ndarray] = []
        self._names: list[str] = []          # segment file stem, parallel to _segments
        self._seen_files: set[str] = set()
        self.refresh()

    def refresh(self) -> None:
        """Index segments written since the last look (by us or by other processes)."""
        for keys_file in sorted(self.dir.glob("seg-*.keys.npy")):
            if keys_file.name in self._seen_files:
                continue
            emb_file = keys_file.with_name(keys_file.name.replace(".keys.npy", ".emb.npy"))
            try:
                keys = np.load(keys_file, allow_pickle=False)
                emb = np.load(emb_file, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError):
                continue  # unreadable segment: ignored, its entries get recomputed
            if emb.ndim != 2 or len(emb) != len(keys):
                continue
            seg = len(self._segments)
            self._segments.append(emb)
            self._names.append(keys_file.name[:-len(".keys.npy")])
            for row, key in enumerate(keys.tolist()):
                self._index[key.decode()] = (seg, row)
            self._seen_files.add(keys_file.name)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def get_many(self, keys: list[str]) -> np.ndarray:
        """Rows for keys that are all present (check with ``in`` first), in order.

        One fancy-indexed read per segment instead of one per row: a warm run reads
        thousands of rows, and per-row memmap slicing dominated the lookup."""
        if not keys:
            return np.zeros((0, self._segments[0].shape[1] if self._segments else 0), np.float32)
        locs = np.array([self._index[k] for k in keys], dtype=np.int64).reshape(-1, 2)
        seg_ids = locs[:, 0]
        segments = np.unique(seg_ids).tolist()
        widths = {self._segments[seg].shape[1] for seg in segments}
        if len(widths) > 1:
            raise CacheWidthError(self.dir, sorted(widths))
        out = np.empty((len(keys), widths.pop()), np.float32)
        for seg in segments:
            where = np.flatnonzero(seg_ids == seg)
            out[where] = np.asarray(self._segments[seg][locs[where, 1]], dtype=np.float32)
        return out

    def put_many(self, keys: list[str], embeddings: np.ndarray) -> None:
        if not keys:
            return
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        stem = f"seg-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        with atomic_path(self.dir / f"{stem}.emb.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, emb)
        with atomic_path(self.dir / f"{stem}.keys.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.array(keys, dtype="S64"))
        seg = len(self._segments)
        self._segments.append(emb)
        self._names.append(stem)
        for row, key in enumerate(keys):
            self._index[key] = (seg, row)
        self._seen_files.add(f"{stem}.keys.npy")

    def locations_digest(self, keys) -> str | None:
        """Digest of where ``keys`` live (segment name and shape, row), None if one is
        absent. Segments are written once under unique names and never change, so an
        unchanged digest means unchanged rows, without reading them."""
        h = hashlib.sha256(b"locations\0")
        index, names, segments = self._index, self._names, self._segments
        for key in sorted(keys):
            loc = index.get(key)
            if loc is None:
                return None
            seg, row = loc
            h.update(f"{key}:{names[seg]}:{segments[seg].shape}:{row}\n".encode())
        return h.hexdigest()


_HEX = re.compile(r"[0-9a-f]{64}")


class FileHashStore:
    """Content hashes of files by identity, persisted across runs (append-only TSV).

    Each line is ``sha256(identity)\\tcontent key``; it is written with one
    ``O_APPEND`` write, so concurrent processes interleave whole lines, and a line
    torn by a crash fails the format check and is ignored (that file is hashed
    again). The file is read once, on first use.
    """

    def __init__(self, path: Path):
        self.path = path
        self._table: dict[str, str] | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _digest(ident: str) -> str:
        return hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()

    def _load(self) -> dict[str, str]:
        if self._table is None:
            table: dict[str, str] = {}
            try:
                text = self.path.read_text("ascii", errors="replace")
            except OSError:
                text = ""
            for line in text.split("\n"):
                ident, _, key = line.partition("\t")
                if _HEX.fullmatch(ident) and _HEX.fullmatch(key):
                    table[ident] = key
            self._table = table
        return self._table

    def get(self, ident: str) -> str | None:
        with self._lock:
            return self._load().get(self._digest(ident))

    def put(self, ident: str, key: str) -> None:
        digest = self._digest(ident)
        with self._lock:
            self._load()[digest] = key
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
                try:
                    os.write(fd, f"{digest}\t{key}\n".encode("ascii"))
                finally:
                    os.close(fd)
            except OSError:
                pass  # a read-only cache still works; the hash is kept for this process


def digest(*parts) -> str:
    """sha256 over strings, numbers, arrays/tensors (dtype, shape and bytes) and
    nested lists/tuples/dicts of them: the key of a deterministic computation."""
    h = hashlib.sha256()

    def feed(x) -> None:
        if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
            x = x.detach().cpu().numpy()
        if isinstance(x, np.ndarray):
            a = np.ascontiguousarray(x)
            h.update(f"nd:{a.dtype.str}:{a.shape}:".encode())
            h.update(a.tobytes())
        elif isinstance(x, dict):
            h.update(b"dict:")
            for k in sorted(x, key=str):
                feed(str(k))
                feed(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(f"seq{len(x)}:".encode())
            for v in x:
                feed(v)
        else:
            h.update(f"{type(x).__name__}:{x!r};".encode())
    for part in parts:
        feed(part)
    return h.hexdigest()


class ArtifactMemo:
    """Deterministic evaluator results (a trained probe's state, bootstrap draws)
    stored by the :func:`digest` of everything they depend on, so a rerun on the
    same embeddings skips the work. One ``<key>.npz`` per entry (no pickle),
    written atomically; an unreadable entry counts as absent."""

    def __init__(self, directory: Path):
        self.dir = directory

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        try:
            with np.load(self.dir / f"{key}.npz", allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError):
            return None

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        try:
            with atomic_path(self.dir / f"{key}.npz") as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
        except OSError:
            pass  # a read-only cache: the result is just not remembered


class EmbeddingCache:
    """Root of the cache; one :class:`BackendCache` per backend fingerprint.

    Also the store of file content hashes (:func:`ctxbench.inputs.set_file_hash_store`)."""

    def __init__(self, root: str | Path | None = None):
        from .inputs import set_file_hash_store
        self.root = Path(root) if root is not None else default_cache_dir()
        self.file_hashes = FileHashStore(self.root / "file-hashes.tsv")
        set_file_hash_store(self.file_hashes)
        self.artifacts = ArtifactMemo(self.root / "artifacts")
        self.evaluations = ArtifactMemo(self.root / "evaluations")   # cell_memo.py

    def for_backend(self, fingerprint: str) -> BackendCache:
        digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:24]
        return BackendCache(self.root / "embeddings" / digest, fingerprint)
