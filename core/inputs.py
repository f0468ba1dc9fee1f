"""Inputs with content-hash keys, so the cache never encodes the same thing twice.

An :class:`ImageRef` carries a key and loads its pixels only when needed (on a
cache miss). Keys are content hashes: of the file's bytes for images on disk, of
the decoded pixels for in-memory images, and of the generator parameters for
procedurally drawn images (a pure function of those parameters).

A file's bytes are hashed once per file version: :func:`file_key` memoises the
hash on the file's identity (device, inode, size, mtime and ctime in ns), in this
process and, when a store is set with :func:`set_file_hash_store` (the embedding
cache sets one), across runs, so a warm rerun reads no image file at all.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Callable, Protocol

from PIL import Image

from .errors import DatasetFormatError


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_key(text: str) -> str:
    return sha256_hex(b"text\0" + text.encode("utf-8"))


def context_key(context: str | None) -> str:
    """Hash of a context; ``None`` (no context) has its own fixed key."""
    if context is None:
        return "none"
    return sha256_hex(b"ctx\0" + context.encode("utf-8"))


def pil_key(image: Image.Image) -> str:
    h = hashlib.sha256(b"pil\0")
    h.update(f"{image.mode}:{image.size[0]}x{image.size[1]}\0".encode())
    h.update(image.tobytes())
    return h.hexdigest()


class FileHashStore(Protocol):
    """Persistent ``identity -> key`` memo (see :class:`ctxbench.cache.FileHashStore`)."""

    def get(self, ident: str) -> str | None: ...

    def put(self, ident: str, key: str) -> None: ...


_FILE_KEYS: dict[str, str] = {}
_FILE_KEYS_LOCK = threading.Lock()
_STORE: FileHashStore | None = None


def set_file_hash_store(store: FileHashStore | None) -> None:
    """Where :func:`file_key` remembers hashes across runs (``None``: this process only)."""
    global _STORE
    _STORE = store


def file_identity(path: Path) -> str:
    """What must be unchanged for a stored hash to hold: path, device, inode, size,
    mtime and ctime (ns). Any rewrite, copy or ``touch`` changes one of them."""
    st = os.stat(path)
    return (f"{os.path.abspath(path)}\0{st.st_dev}:{st.st_ino}:{st.st_size}:"
            f"{st.st_mtime_ns}:{st.st_ctime_ns}")


def file_key(path: str | Path) -> str:
    """sha256 of ``b"file\\0" + bytes``, computed once per file version (memoised on
    :func:`file_identity`); raises :class:`DatasetFormatError` if the file is missing."""
    path = Path(path)
    try:
        ident = file_identity(path)
        with _FILE_KEYS_LOCK:
            key = _FILE_KEYS.get(ident)
        if key is None and _STORE is not None:
            key = _STORE.get(ident)
        if key is None:
            key = sha256_hex(b"file\0" + path.read_bytes())
            if _STORE is not None:
                _STORE.put(ident, key)
        with _FILE_KEYS_LOCK:
            _FILE_KEYS[ident] = key
        return key
    except FileNotFoundError:
        raise DatasetFormatError(f"image not found: {path}") from None


class ImageRef:
    """A lazily loaded RGB image with a stable content key.

    ``key`` may be given directly or as a function computed on first use (so
    listing a large dataset does not read every file).
    """

    __slots__ = ("_key", "_key_fn", "_load", "label")

    def __init__(self, key: str | Callable[[], str], load: Callable[[], Image.Image],
                 label: str = ""):
        self._key = key if isinstance(key, str) else None
        self._key_fn = None if isinstance(key, str) else key
        self._load = load
        self.label = label  # human-readable origin (a path), used in error messages

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = self._key_fn()
        return self._key

    def load(self) -> Image.Image:
        try:
            image = self._load()
        except FileNotFoundError as exc:
            raise DatasetFormatError(f"image not found: {self.label or exc.filename}") from exc
        except Image.DecompressionBombError as exc:
            raise DatasetFormatError(f"{self.label}: refused as a decompression bomb ({exc}); "
                                     "if the image is genuine, downscale it first") from exc
        except (OSError, ValueError, SyntaxError) as exc:   # PIL raises all three on bad files
            raise DatasetFormatError(f"cannot decode image {self.label}: {exc}") from exc
        return image if image.mode == "RGB" else image.convert("RGB")

    def __repr__(self) -> str:
        return f"ImageRef({self.label or self.key[:12]})"

    @classmethod
    def from_pil(cls, image: Image.Image, label: str = "") -> "ImageRef":
        return cls(pil_key(image), lambda: image, label)

    @classmethod
    def from_path(cls, path: str | Path) -> "ImageRef":
        """Key = sha256 of the file bytes (:func:`file_key`), on first use of ``key``."""
        path = Path(path)

        def key() -> str:
            return file_key(path)

        def load() -> Image.Image:
            with Image.open(path) as im:
                im.load()
                return im.copy()

        return cls(key, load, str(path))

    @classmethod
    def procedural(cls, params_key: str, render: Callable[[], Image.Image],
                   label: str = "") -> "ImageRef":
        """An image drawn by a deterministic generator: key = hash of its parameters."""
        return cls(sha256_hex(b"proc\0" + params_key.encode()), render, label)
