"""Shared helpers of the model backends: where the weights come from, precision,
placement, fingerprints, tokenizer sanity checks and late fusion.

Loading rules (the same for every backend):

- ``model`` is a local directory (used as is) or a Hugging Face hub id. A hub id
  already in the local HF cache is loaded from its cached snapshot, so nothing
  touches the network. A hub id not in the cache fails *immediately* when
  ``HF_HUB_OFFLINE`` is set, or when a 3-second probe cannot reach the hub: the
  message says to download it where there is network, set ``HF_HUB_OFFLINE=1``,
  or pass a local directory. No backend ever sits in a library's retry loop.
- A fingerprint names the weights exactly: a local directory by the sha256 of its
  files (memoised per (path, size, mtime) under the ctxbench cache dir, so a
  multi-GB checkpoint is hashed once), a hub model by its id and the commit of the
  cached snapshot.
- Tokenizers are checked before use (:func:`check_tokenizer`): some tokenizer
  classes given a hub id offline build a near-empty vocabulary instead of
  failing, which would silently produce garbage embeddings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

import torch

from ctxbench.errors import CtxbenchError
from ctxbench.io.hf_datasets import hub_offline

PLUGIN_VERSION = "1"
HUB_PROBE_TIMEOUT_S = 3.0
PROBE_SENTENCE = "a photo of a red circle next to a small blue square in the evening light."
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ModelLoadError(CtxbenchError):
    """A model cannot be loaded; the message says why and what to do."""


class TokenizerSanityError(CtxbenchError):
    """A tokenizer/processor would produce garbage (empty vocabulary, broken round trip)."""


# ----------------------------------------------------------------------------- precision, device
_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp16": torch.float16, "float16": torch.float16, "half": torch.float16}


def parse_dtype(value: str | torch.dtype | None, device: str) -> torch.dtype:
    """``fp32`` / ``bf16`` / ``fp16`` (or their long names); ``auto``/None = bf16 on a
    CUDA device that supports it (else fp16), fp32 elsewhere."""
    if isinstance(value, torch.dtype):
        return value
    if value is None or str(value).lower() == "auto":
        if str(device).startswith("cuda") and torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return _DTYPES[str(value).lower()]
    except KeyError:
        raise ModelLoadError(f"dtype={value!r} is not supported; use one of fp32, bf16, fp16 "
                             f"or auto (--backend-arg dtype=bf16)") from None


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def placement_kwargs(device: str, device_map: str | dict | None) -> dict:
    """``from_pretrained`` keyword arguments for placing the model.

    ``device_map`` (e.g. "auto", to shard a large model over the visible GPUs and
    CPU) needs the ``accelerate`` package; without it the model is moved to
    ``device`` after loading."""
    if device_map in (None, "", "none"):
        return {}
    try:
        import accelerate  # noqa: F401
    except ImportError:
        raise ModelLoadError("device_map needs the 'accelerate' package: pip install accelerate "
                             "(or drop --backend-arg device_map to load onto --device)") from None
    return {"device_map": device_map}


def place(model: torch.nn.Module, device: str, device_map) -> torch.nn.Module:
    if device_map in (None, "", "none"):
        model = model.to(device)
    return model.eval()


def input_device(model: torch.nn.Module) -> torch.device:
    """Where inputs go: the device of the first parameter (the embedding layer when a
    device_map spreads the model)."""
    return next(model.parameters()).device


# ----------------------------------------------------------------------------- model sources
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
def _squash(text: str) -> str:
    """Letters and digits only, lower-cased: SigLIP's tokenizer drops punctuation by
    design (canonicalize_text), which is not a broken round trip."""
    return re.sub(r"[\W_]+", "", text.lower())


def check_round_trip(encode: Callable[[str], Sequence[int]], decode: Callable[[Sequence[int]], str],
                     vocab_size: int, where: str, min_vocab: int = 100,
                     unk_id: int | None = None, probe: str = PROBE_SENTENCE) -> None:
    """Refuse a tokenizer with a tiny vocabulary, mostly-unknown tokens, or a probe
    sentence that does not survive encode -> decode (case and spaces ignored)."""
    fix = ("Pass the model's local directory (--backend-arg model=/path) or make sure the "
           "model is fully downloaded into the Hugging Face cache.")
    if vocab_size < int(min_vocab):
        raise TokenizerSanityError(
            f"{where}: the tokenizer has only {vocab_size} tokens (expected >= {min_vocab}); "
            f"a tokenizer built from a hub id while offline can come back empty like this. {fix} "
            f"If the vocabulary is genuinely this small, pass --backend-arg min_vocab={vocab_size}.")
    ids = list(encode(probe))
    if not ids:
        raise TokenizerSanityError(f"{where}: the tokenizer turns the probe sentence {probe!r} "
                                   f"into no tokens at all. {fix}")
    if unk_id is not None and sum(i == unk_id for i in ids) > len(ids) // 2:
        raise TokenizerSanityError(f"{where}: the tokenizer maps most of the probe sentence "
                                   f"{probe!r} to the unknown token. {fix}")
    back = decode(ids)
    if _squash(back) != _squash(probe):
        raise TokenizerSanityError(f"{where}: the probe sentence {probe!r} does not survive a "
                                   f"tokenizer round trip (got {back!r}). {fix}")


def check_tokenizer(tokenizer, where: str, min_vocab: int = 100) -> None:
    """:func:`check_round_trip` for a transformers tokenizer."""
    check_round_trip(
        lambda s: tokenizer(s, add_special_tokens=False, verbose=False)["input_ids"],
        lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
        len(tokenizer), where, min_vocab, unk_id=tokenizer.unk_token_id)


def quiet_transformers() -> None:
    """Silence weight-loading progress bars (they would interleave with ours)."""
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    except Exception:
        pass


# ----------------------------------------------------------------------------- features
def features(output: Any, where: str) -> torch.Tensor:
    """A [N, D] tensor from ``get_image_features`` / ``get_text_features``: a tensor
    (transformers 4) or an output object whose ``pooler_output`` holds it (5)."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    raise ModelLoadError(f"{where} returned {type(output).__name__} without a pooler_output; "
                         f"this model is not a supported dual encoder")


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def last_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state at each row's last attended position (left or right padding)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    last = (attention_mask.to(torch.long) * (positions + 1)).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)]


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.to(hidden.device, hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


# ----------------------------------------------------------------------------- late fusion
FUSION_MODES = ("none", "late")


def parse_fusion(context_fusion: str | None, fusion_weight: float) -> tuple[str, float]:
    mode = str(context_fusion or "none").lower()
    if mode not in FUSION_MODES:
        raise ModelLoadError(f"context_fusion={context_fusion!r}: use 'none' (a dual encoder "
                             f"takes no context) or 'late' (late-fusion fallback)")
    weight = float(fusion_weight)
    if mode == "late" and not (weight > 0 and weight == weight and weight != float("inf")):
        raise ModelLoadError(f"fusion_weight={fusion_weight!r} must be a positive number")
    return mode, weight


def late_fuse(base: torch.Tensor, contexts: Sequence[str | None], weight: float,
              encode_contexts: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
    """Late-fusion fallback for dual encoders (ctxbench's, not from a paper):
    ``phi(I, C) = normalize(normalize(phi(I)) + w * normalize(psi(C)))``, and the same
    for texts; rows without a context are just ``normalize(base)``. Each distinct
    context is encoded once (text tower)."""
    base = l2_normalize(base)
    unique = list(dict.fromkeys(c for c in contexts if c is not None))
    if not unique:
        return base
    ctx = l2_normalize(encode_contexts(unique)).to(base.device)
    index = {c: i for i, c in enumerate(unique)}
    rows = torch.tensor([i for i, c in enumerate(contexts) if c is not None], device=base.device)
    which = torch.tensor([index[c] for c in contexts if c is not None], device=base.device)
    fused = base.clone()
    fused[rows] = l2_normalize(base[rows] + weight * ctx[which])
    return fused


def load_pretrained(model: str, revision: str | None, model_class: str, preprocessor_class: str,
                    dtype: torch.dtype, device: str, device_map, where: str, hint: str = ""):
    """(model, preprocessor, source): resolve ``model`` (local dir, HF cache, or a fast
    refusal when offline), then ``transformers.<model_class>.from_pretrained`` with the
    dtype and placement, and ``<preprocessor_class>.from_pretrained``. A load failure
    becomes a ModelLoadError naming both classes."""
    source = resolve_model(model, revision)   # fails fast, before the slow import
    refuse_adapter_only(source, where)
    import transformers

    quiet_transformers()
    try:
        loaded = getattr(transformers, model_class).from_pretrained(
            source.load_from, dtype=dtype, **source.from_pretrained_kwargs(),
            **placement_kwargs(device, device_map))
        pre = getattr(transformers, preprocessor_class).from_pretrained(
            source.load_from, **source.from_pretrained_kwargs())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{where}: cannot load it with {model_class}/{preprocessor_class}"
                             f"{hint}: {exc}") from exc
    return loaded, pre, after_download(source)


WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "model*.bin", "*.pt")


def refuse_adapter_only(source: ModelSource, where: str) -> None:
    """A directory with a PEFT adapter (adapter_config.json) but no model weights
    (as TIGER-Lab/VLM2Vec-Qwen2VL-2B is published) would otherwise fail deep inside
    transformers, or need peft and a download of the base; say how to merge it."""
    path = source.path
    if path is None or not (path / "adapter_config.json").is_file():
        return
    if any(f for pattern in WEIGHT_FILES for f in path.glob(pattern)
           if not f.name.startswith("adapter_")):
        return
    try:
        base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, ValueError):
        base = None
    raise ModelLoadError(
        f"{where} holds a LoRA adapter (adapter_config.json) but no model weights. Merge it into "
        f"its base{f' ({base})' if base else ''} first: pip install peft; then "
        f"PeftModel.from_pretrained(base_model, '{path}').merge_and_unload().save_pretrained(DIR) "
        f"and save the base's processor into DIR; pass --backend-arg model=DIR.")


class DualEncoderMixin:
    """The Backend methods shared by dual encoders (open_clip, hf_clip): the class
    provides ``_image_features``/``_text_features`` (raw tower outputs), ``fusion``
    ("none" or "late") and ``fusion_weight``; outputs are L2-normalised, and with
    late fusion the context goes through the text tower (:func:`late_fuse`)."""

    def _finish(self, emb: torch.Tensor, contexts: Sequence[str | None]) -> torch.Tensor:
        if self.fusion == "late":
            return late_fuse(emb, contexts, self.fusion_weight, self._text_features).cpu()
        return l2_normalize(emb).cpu()

    def encode_images(self, images, contexts: Sequence[str | None]) -> torch.Tensor:
        with torch.inference_mode():
            return self._finish(self._image_features(images), contexts)

    def encode_texts(self, texts: Sequence[str], contexts: Sequence[str | None]) -> torch.Tensor:
        with torch.inference_mode():
            return self._finish(self._text_features(texts), contexts)


def warn(message: str) -> None:
    print(f"[ctxbench] {message}", file=sys.stderr)
