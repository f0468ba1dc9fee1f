"""Where a model's files come from, and their identity.

``resolve_model`` turns ``--backend-arg model=...`` into a local folder or a hub id
with a revision, refusing at once (with the download command) when the weights are
not local and the hub is unreachable or HUB_OFFLINE is set; ``file_hash``/``dir_hash``
give a checkpoint's content identity for fingerprints (memoised per file version).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ctxbench.errors import CtxbenchError
from ctxbench.io.hf_datasets import hub_offline

HUB_PROBE_TIMEOUT_S = 3.0
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ModelLoadError(CtxbenchError):
    """A model cannot be loaded; the message says why and what to do."""


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: ``path`` to load from (local dir or cached snapshot) or
    ``hub_id`` + ``revision`` to download; ``ident`` is the fingerprint part."""

    spec: str
    path: Path | None
    hub_id: str | None
    revision: str | None
    ident: str

    @property
    def load_from(self) -> str:
        return str(self.path) if self.path is not None else self.hub_id

    def from_pretrained_kwargs(self) -> dict:
        if self.path is not None:
            return {"local_files_only": True}
        return {"revision": self.revision} if self.revision else {}


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """A TCP connection to the hub endpoint within ``timeout`` seconds."""
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _missing_model_message(what: str, reason: str, download: str, local_hint: str) -> str:
    return (f"{what} is not available locally and {reason}. Either download it where there is "
            f"network ({download}; the Hugging Face cache is {_hf_cache_dir()}), or pass a "
            f"local copy ({local_hint}). Set HF_HUB_OFFLINE=1 when working offline.")


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants
        return str(constants.HF_HUB_CACHE)
    except Exception:
        return "~/.cache/huggingface/hub"


def require_download_allowed(what: str, download: str | None = None,
                             local_hint: str = "--backend-arg model=/path/to/model/dir") -> None:
    """Fail fast unless a download of ``what`` can succeed right now.

    ``download`` is the command that fetches it (default: ``hf download <what>``)."""
    download = download or f"`hf download {what.split()[-1]}`"
    if hub_offline(datasets=False):
        raise ModelLoadError(_missing_model_message(
            what, "HF_HUB_OFFLINE=1 forbids downloading", download, local_hint))
    if not hub_reachable():
        raise ModelLoadError(_missing_model_message(
            what, f"{hub_endpoint()} cannot be reached (no answer within "
                  f"{HUB_PROBE_TIMEOUT_S:.0f} s)", download, local_hint))


def cached_file(repo_id: str, filename: str, revision: str | None = None) -> Path | None:
    """Path of ``filename`` of ``repo_id`` in the local HF cache, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def resolve_model(spec: str, revision: str | None = None, marker: str = "config.json") -> ModelSource:
    """Resolve ``spec`` (local dir or hub id) without waiting on the network.

    ``marker`` is a file every snapshot of the model has (its cached copy locates
    the snapshot directory, whose name is the commit hash)."""
    if not spec or not isinstance(spec, str):
        raise ModelLoadError("no model given: pass --backend-arg model=<hub id or local directory>")
    local = Path(spec).expanduser()
    if local.is_dir():
        local = local.resolve()
        return ModelSource(spec, local, None, None, f"local:{local.name}@sha256:{dir_hash(local)[:16]}")
    if local.exists():
        raise ModelLoadError(f"model={spec!r} is a file; pass the directory that holds the model's "
                             f"config and weights")
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") != 1 or "\\" in spec
    if looks_like_path or not _HUB_ID.match(spec):
        raise ModelLoadError(f"model={spec!r}: no such directory, and it is not a hub id "
                             f"('org/name'); check the path")
    found = cached_file(spec, marker, revision)
    if found is not None:
        snapshot = found.parent
        return ModelSource(spec, snapshot, spec, revision, f"hub:{spec}@{snapshot.name}")
    require_download_allowed(f"model {spec}")
    return ModelSource(spec, None, spec, revision, f"hub:{spec}@{revision or 'main'}")


def after_download(source: ModelSource, marker: str = "config.json") -> ModelSource:
    """Once a hub model is downloaded, pin its fingerprint to the snapshot's commit."""
    if source.path is not None:
        return source
    found = cached_file(source.hub_id, marker, source.revision)
    if found is None:
        return source
    return ModelSource(source.spec, found.parent, source.hub_id, source.revision,
                       f"hub:{source.hub_id}@{found.parent.name}")


# ----------------------------------------------------------------------------- content hashes
def _memo_path() -> Path:
    from ctxbench.cache import default_cache_dir
    return default_cache_dir() / "file_hashes.json"


def _load_memo() -> dict:
    try:
        data = json.loads(_memo_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_memo(memo: dict) -> None:
    try:
        from ctxbench.io.atomic import write_json
        write_json(_memo_path(), memo)
    except OSError:
        pass  # the memo only saves time


def file_hash(path: Path, memo: dict | None = None) -> str:
    """sha256 of a file's bytes (memoised by absolute path, size and mtime)."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if memo is not None and key in memo:
        return memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    if memo is not None:
        memo[key] = digest
    return digest


def dir_hash(path: Path) -> str:
    """sha256 over (relative path, file sha256) of every non-hidden file below ``path``."""
    memo = _load_memo()
    before = len(memo)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        h.update(rel.encode() + b"\0" + file_hash(f, memo).encode() + b"\0")
    if len(memo) != before:
        _save_memo(memo)
    return h.hexdigest()


def text_hash(*parts: Any) -> str:
    """Short hash of settings that change the numbers (prompts, pooling, ...)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- sanity checks
