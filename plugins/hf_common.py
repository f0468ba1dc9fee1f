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

import json
import re
import sys
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ctxbench.errors import CtxbenchError

# where model files come from and their identity (re-exported: backends use hc.<name>)
from .hf_hub import (HUB_PROBE_TIMEOUT_S, ModelLoadError, ModelSource, after_download,  # noqa: F401
                     cached_file, dir_hash, file_hash, hub_endpoint, hub_reachable,
                     require_download_allowed, resolve_model, text_hash)

if TYPE_CHECKING:  # torch loads when a model does: `ctxbench list` imports the backends
    import torch

PLUGIN_VERSION = "1"
PROBE_SENTENCE = "a photo of a red circle next to a small blue square in the evening light."


class TokenizerSanityError(CtxbenchError):
    """A tokenizer/processor would produce garbage (empty vocabulary, broken round trip)."""


# ----------------------------------------------------------------------------- precision, device
_DTYPES = {"fp32": "float32", "float32": "float32", "float": "float32",
           "bf16": "bfloat16", "bfloat16": "bfloat16",
           "fp16": "float16", "float16": "float16", "half": "float16"}   # name -> torch.<dtype>


def parse_dtype(value: str | torch.dtype | None, device: str) -> torch.dtype:
    """``fp32`` / ``bf16`` / ``fp16`` (or their long names); ``auto``/None = bf16 on a
    CUDA device that supports it (else fp16), fp32 elsewhere."""
    import torch

    if isinstance(value, torch.dtype):
        return value
    if value is None or str(value).lower() == "auto":
        if str(device).startswith("cuda") and torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return getattr(torch, _DTYPES[str(value).lower()])
    except KeyError:
        raise ModelLoadError(f"dtype={value!r} is not supported; use one of fp32, bf16, fp16 "
                             f"or auto (--backend-arg dtype=bf16)") from None


def dtype_name(dtype: torch.dtype) -> str:
    import torch

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
    import torch

    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    raise ModelLoadError(f"{where} returned {type(output).__name__} without a pooler_output; "
                         f"this model is not a supported dual encoder")


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.nn.functional.normalize(x.float(), dim=-1)


def last_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state at each row's last attended position (left or right padding)."""
    import torch

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
    import torch

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
        import torch

        with torch.inference_mode():
            return self._finish(self._image_features(images), contexts)

    def encode_texts(self, texts: Sequence[str], contexts: Sequence[str | None]) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            return self._finish(self._text_features(texts), contexts)


def warn(message: str) -> None:
    print(f"[ctxbench] {message}", file=sys.stderr)
