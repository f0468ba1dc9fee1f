"""`hf_clip`: any transformers dual encoder with an image and a text tower.

CLIPModel, SiglipModel, Siglip2Model (and whatever ``AutoModel`` resolves to that
has ``get_image_features`` / ``get_text_features``), with the model's own
processor; features are L2-normalised (CLIP, Radford et al. 2021; SigLIP, Zhai et
al. 2023, both compare L2-normalised embeddings by cosine).

A dual encoder takes no context. ``context_fusion=late`` switches on ctxbench's
clearly named late-fusion fallback (see :func:`ctxbench_plugins.hf_common.late_fuse`):
the capabilities then say ``context_method="late_fusion"`` and the fingerprint
changes, so results are never silently mixed with the plain model's.

Args (``--backend-arg key=value``): ``model`` (hub id or local dir), ``revision``,
``dtype`` (auto/fp32/bf16/fp16), ``device_map`` (e.g. auto), ``text_padding``
(auto: max_length for SigLIP models, which were trained on padded text, else
longest), ``max_length``, ``context_fusion`` (none/late), ``fusion_weight``,
``min_vocab`` (tokenizer sanity threshold).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ctxbench.backend import BackendArg, BackendSpec, Capabilities
from ctxbench.hooks import hookimpl

from . import common_args as ca
from . import hf_common as hc

if TYPE_CHECKING:  # type hints only: `ctxbench list` imports this module
    import torch
    from PIL import Image

SIGLIP_TYPES = ("siglip", "siglip2")
ARGS = (
    ca.model("hub id or local directory of a CLIP/SigLIP dual encoder"), ca.REVISION, ca.DTYPE,
    ca.DEVICE_MAP,
    BackendArg("text_padding", str, "auto", "auto (max_length for SigLIP, else longest), longest "
                                            "or max_length", choices=("auto", "longest", "max_length")),
    BackendArg("max_length", int, None, "text token limit (default: the model's)", variant=16),
    ca.CONTEXT_FUSION, ca.FUSION_WEIGHT, ca.min_vocab(100),
)


class HFDualEncoder(hc.DualEncoderMixin):
    def __init__(self, model: str, revision: str | None = None, dtype: str = "auto",
                 device: str = "cpu", device_map: str | None = None,
                 text_padding: str = "auto", max_length: int | None = None,
                 context_fusion: str = "none", fusion_weight: float = 0.5,
                 min_vocab: int = 100):
        self.device = device
        self.dtype = hc.parse_dtype(dtype, device)
        self.fusion, self.fusion_weight = hc.parse_fusion(context_fusion, fusion_weight)
        where = f"hf_clip model {model!r}"
        self.model, self.processor, self.source = hc.load_pretrained(
            model, revision, "AutoModel", "AutoProcessor", self.dtype, device, device_map, where)
        if not (hasattr(self.model, "get_image_features") and hasattr(self.model, "get_text_features")):
            raise hc.ModelLoadError(
                f"{where} loads as {type(self.model).__name__}, which has no get_image_features/"
                f"get_text_features: it is not a dual encoder. Use the vlm_embed backend for "
                f"image-text-to-text models.")
        self.model = hc.place(self.model, device, device_map)
        self.tokenizer = getattr(self.processor, "tokenizer", None)
        if self.tokenizer is None:
            raise hc.ModelLoadError(f"{where}: its processor has no tokenizer")
        hc.check_tokenizer(self.tokenizer, where, min_vocab)
        model_type = getattr(self.model.config, "model_type", "")
        if text_padding == "auto":
            text_padding = "max_length" if model_type in SIGLIP_TYPES else "longest"
        if text_padding not in ("longest", "max_length"):
            raise hc.ModelLoadError(f"text_padding={text_padding!r}: use auto, longest or max_length")
        self.text_padding = text_padding
        text_cfg = getattr(self.model.config, "text_config", self.model.config)
        self.max_length = int(max_length or getattr(text_cfg, "max_position_embeddings", 77))
        self.model_type = model_type
        late = self.fusion == "late"
        self.capabilities = Capabilities(image_context=late, text_context=late, normalized=True,
                                         context_method="late_fusion" if late else "none")

    def fingerprint(self) -> str:
        fp = (f"hf_clip:v{hc.PLUGIN_VERSION}:{self.source.ident}:{hc.dtype_name(self.dtype)}"
              f":pad={self.text_padding}:maxlen={self.max_length}")
        if self.fusion == "late":
            fp += f":late_fusion(w={self.fusion_weight:g})"
        return fp

    # -- towers -------------------------------------------------------------------
    def _image_features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        inputs = self.processor(images=list(images), return_tensors="pt")
        dev = hc.input_device(self.model)
        inputs = {k: (v.to(dev, self.dtype) if v.is_floating_point() else v.to(dev))
                  for k, v in inputs.items()}
        return hc.features(self.model.get_image_features(**inputs), "get_image_features")

    def _text_features(self, texts: Sequence[str]) -> torch.Tensor:
        inputs = self.tokenizer(list(texts), padding=self.text_padding, truncation=True,
                                max_length=self.max_length, return_tensors="pt")
        dev = hc.input_device(self.model)
        inputs = {k: v.to(dev) for k, v in inputs.items()
                  if k in ("input_ids", "attention_mask", "position_ids")}
        if self.model_type in SIGLIP_TYPES:
            inputs.pop("attention_mask", None)  # SigLIP's text tower attends to padding by design
        return hc.features(self.model.get_text_features(**inputs), "get_text_features")



def make_hf_clip(device: str = "cpu", **args) -> HFDualEncoder:
    if "model" not in args:
        raise hc.ModelLoadError("hf_clip needs --backend-arg model=<hub id or local directory> "
                                "(e.g. openai/clip-vit-large-patch14, google/siglip-so400m-patch14-384)")
    return HFDualEncoder(device=device, **args)


@hookimpl
def ctxbench_backends():
    return [BackendSpec(
        name="hf_clip",
        factory=make_hf_clip,
        description="transformers dual encoder (CLIP/SigLIP/SigLIP2); args: model, revision, dtype, "
                    "device_map, text_padding, max_length, context_fusion=none|late, fusion_weight",
        default_batch_size=64,
        args=ARGS,
    )]
