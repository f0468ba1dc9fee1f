"""Text embedders: any transformers encoder (or decoder) with mean, CLS or
last-token pooling, L2-normalised.

Covers sentence-transformers checkpoints (pooling read from their
``1_Pooling/config.json``: mean for most, last token for Qwen3-Embedding;
Reimers & Gurevych 2019) and decoder embedders such as Qwen3-Embedding (Zhang et
al. 2025, arXiv:2506.05176: the hidden state of the final [EOS] token, with an
"Instruct: ...\\nQuery: ..." prefix on the query side only).

This is a component (of ``vlm_caption``, and for text-only diagnostics such as the
semantic distance between queries), not a backend: it cannot embed images.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Sequence

from . import hf_common as hc

if TYPE_CHECKING:  # torch loads with the model (vlm_caption imports this module)
    import torch

POOLINGS = ("auto", "mean", "last", "cls")


def _st_pooling(path) -> str | None:
    """Pooling declared by a sentence-transformers checkpoint, if any."""
    if path is None:
        return None
    modules = path / "modules.json"
    if modules.is_file():
        try:
            entries = json.loads(modules.read_text())
        except ValueError as exc:
            raise hc.ModelLoadError(f"{modules}: not valid JSON: {exc}") from None
        for entry in entries if isinstance(entries, list) else []:
            kind = str(entry.get("type", "")) if isinstance(entry, dict) else ""
            if kind.endswith(("models.Dense", "models.LayerNorm", "models.WeightedLayerPooling")):
                raise hc.ModelLoadError(
                    f"{modules}: module {kind} is not supported by ctxbench's text embedder "
                    f"(only Transformer + Pooling [+ Normalize]); use a checkpoint without it")
    pool_cfg = path / "1_Pooling" / "config.json"
    if not pool_cfg.is_file():
        return None
    try:
        cfg = json.loads(pool_cfg.read_text())
    except ValueError as exc:
        raise hc.ModelLoadError(f"{pool_cfg}: not valid JSON: {exc}") from None
    for key, mode in (("pooling_mode_lasttoken", "last"), ("pooling_mode_cls_token", "cls"),
                      ("pooling_mode_mean_tokens", "mean")):
        if cfg.get(key):
            return mode
    raise hc.ModelLoadError(f"{pool_cfg}: no supported pooling mode is true (ctxbench supports "
                            f"pooling_mode_mean_tokens, pooling_mode_cls_token, pooling_mode_lasttoken)")


class TextEmbedder:
    """``embed(texts) -> [N, D]`` float32 CPU tensor."""

    def __init__(self, model: str, revision: str | None = None, dtype: str = "auto",
                 device: str = "cpu", device_map: str | None = None, pooling: str = "auto",
                 normalize: bool = True, max_length: int = 512, min_vocab: int = 100):
        if pooling not in POOLINGS:
            raise hc.ModelLoadError(f"pooling={pooling!r}: use one of {', '.join(POOLINGS)}")
        self.dtype = hc.parse_dtype(dtype, device)
        where = f"text embedder {model!r}"
        self.model, self.tokenizer, self.source = hc.load_pretrained(
            model, revision, "AutoModel", "AutoTokenizer", self.dtype, device, device_map, where)
        self.model = hc.place(self.model, device, device_map)
        hc.check_tokenizer(self.tokenizer, where, min_vocab)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if pooling == "auto":
            declared = _st_pooling(self.source.path)
            # decoder-only LMs (Qwen3-Embedding, e5-mistral, ...) pool the last token;
            # they are recognised by their grouped-query attention config field
            config = self.model.config
            decoder = bool(getattr(config, "is_decoder", False)) or hasattr(config, "num_key_value_heads")
            pooling = declared or ("last" if decoder else "mean")
        self.pooling, self.normalize = pooling, bool(normalize)
        limits = [int(max_length)]
        tok_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_limit, int) and tok_limit < 1_000_000:   # transformers' "unset" is huge
            limits.append(tok_limit)
        pos_limit = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(pos_limit, int) and pos_limit > 0:
            limits.append(pos_limit)
        self.max_length = min(limits)
        self._warned_truncation = False
        self.tokenizer.padding_side = "right"   # positions stay 0.. for every row

    def fingerprint(self) -> str:
        return (f"text:{self.source.ident}:{hc.dtype_name(self.dtype)}:pool={self.pooling}"
                f":norm={int(self.normalize)}:maxlen={self.max_length}")

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        import torch

        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt",
                               return_overflowing_tokens=False, return_length=True)
        lengths = batch.pop("length", None)
        if (lengths is not None and not self._warned_truncation
                and int(lengths.max()) >= self.max_length):
            self._warned_truncation = True
            hc.warn(f"text embedder {self.source.spec}: inputs longer than {self.max_length} "
                    f"tokens are truncated (their end is dropped)")
        dev = hc.input_device(self.model)
        batch = {k: v.to(dev) for k, v in batch.items()}
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"]
        if self.pooling == "mean":
            pooled = hc.masked_mean(hidden, mask)
        elif self.pooling == "last":
            pooled = hc.last_token(hidden, mask)
        else:
            pooled = hidden[:, 0]
        pooled = pooled.float()
        return (hc.l2_normalize(pooled) if self.normalize else pooled).cpu()
