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
"""

from __future__ import annotations

import hashlib
import os
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
            for row, key in enumerate(keys.tolist()):
                self._index[key.decode()] = (seg, row)
            self._seen_files.add(keys_file.name)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def get_many(self, keys: list[str]) -> np.ndarray:
        """Rows for keys that are all present (check with ``in`` first)."""
        locs = [self._index[k] for k in keys]
        return np.stack([self._segments[s][r] for s, r in locs]).astype(np.float32, copy=False)

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
        for row, key in enumerate(keys):
            self._index[key] = (seg, row)
        self._seen_files.add(f"{stem}.keys.npy")


class EmbeddingCache:
    """Root of the cache; one :class:`BackendCache` per backend fingerprint."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def for_backend(self, fingerprint: str) -> BackendCache:
        digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:24]
        return BackendCache(self.root / "embeddings" / digest, fingerprint)
