"""`vlm_embed`: embeddings from a generative VLM, E5-V style.

E5-V (Jiang et al. 2024, arXiv:2407.12580; github.com/kongds/E5-V) prompts a
multimodal LLM to summarise its input "in one word" and takes the **last layer's
hidden state at the last token** as the embedding; ctxbench L2-normalises it
(the context-retrieval study of Tsutsumi & Kohita specifies the same: the final
layer's hidden state at the final token position, L2-normalised). Any
transformers image-text-to-text model works (``AutoModelForImageTextToText`` +
``AutoProcessor``: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Gemma3, LLaVA / LLaVA-NeXT,
Idefics3 / SmolVLM, Mistral3 - whatever the installed transformers supports).

Prompt templates use three placeholders: ``<image>`` (where the image goes),
``<sent>`` (the text being embedded) and ``<context>`` (the context C). Defaults
are E5-V's prompts, and, when a context is given, the same prompt preceded by
``Context: <context>`` - which is what makes the four injection patterns of the
context_retrieval family real for this backend: phi(I, C) puts C into the image
prompt, psi(q, C) into the text prompt.

Two prompt formats:

- ``chat``: the filled template becomes one user message (image as an image
  content item) rendered by the processor's own chat template with the generation
  prompt, so the last token is where the assistant's answer would begin;
- ``raw``: the filled template is used literally, ``<image>`` replaced by the
  model's image placeholder, wrapped in ``raw_wrap`` (``<prompt>`` marks where)
  - E5-V's and VLM2Vec's own formats are raw (see presets.yaml).
``auto`` = chat when the processor has a chat template, else raw.

Batches are left-padded; position ids are computed from the attention mask (or by
the model's own multimodal RoPE index for Qwen-VL models), so a batch gives the
same embeddings as one item at a time (tested to 1e-4). The forward pass runs the
decoder without its LM head (no [tokens x vocabulary] logits are computed).

Args (``--backend-arg``): ``model``, ``revision``, ``dtype``, ``device_map``,
``prompt_format`` (auto/chat/raw), ``image_prompt``, ``text_prompt``,
``image_context_prompt``, ``text_context_prompt``, ``raw_wrap``, ``image_token``,
``system_prompt``, ``context_sides`` (both/image/text/none), ``pooling``
(last/mean), ``normalize``, ``min_vocab``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence

from ctxbench.backend import BackendArg, BackendSpec, Capabilities
from ctxbench.hooks import hookimpl

from . import common_args as ca
from . import hf_common as hc

if TYPE_CHECKING:  # torch and PIL load with the model: `ctxbench list` imports this module
    import torch
    from PIL import Image

E5V_IMAGE_PROMPT = "<image>\nSummary above image in one word:"
E5V_TEXT_PROMPT = "<sent>\nSummary above sentence in one word:"
IMAGE_CONTEXT_PROMPT = "Context: <context>\n<image>\nSummary above image in one word:"
TEXT_CONTEXT_PROMPT = "Context: <context>\n<sent>\nSummary above sentence in one word:"

# What a raw prompt must contain where the image goes (the processor expands it).
RAW_IMAGE_TOKENS = {
    "qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "qwen2_5_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "qwen3_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "qwen3_vl_moe": "<|vision_start|><|image_pad|><|vision_end|>",
    "gemma3": "<start_of_image>",
    "mistral3": "[IMG]",
    "llava": "<image>", "llava_next": "<image>", "llava_onevision": "<image>",
    "idefics3": "<image>", "smolvlm": "<image>",
}
CONTEXT_SIDES = {"both": (True, True), "image": (True, False), "text": (False, True),
                 "none": (False, False)}
PROMPT_FORMAT = BackendArg("prompt_format", str, "auto", "chat (the processor's chat template), raw "
                                                       "(raw_wrap), or auto (chat if it has one)",
                           choices=("auto", "chat", "raw"))
RAW_WRAP = BackendArg("raw_wrap", str, "<prompt>", "raw format: text around the prompt, <prompt> "
                                                   "marks where", variant="Input: <prompt>\n")
IMAGE_TOKEN = BackendArg("image_token", str, None, "raw format: the model's image placeholder "
                                                   "(default: known per model type)", vary=False)
SYSTEM_PROMPT = BackendArg("system_prompt", str, None, "chat format: a system message",
                           variant="You are an embedding model.")
CONTEXT_SIDES_ARG = BackendArg("context_sides", str, "both", "where a context may enter: both, "
                                                             "image, text or none",
                               choices=("both", "image", "text", "none"))
ARGS = (
    ca.model("hub id or local directory of an image-text-to-text model"), ca.REVISION, ca.DTYPE,
    ca.DEVICE_MAP, PROMPT_FORMAT,
    BackendArg("image_prompt", str, E5V_IMAGE_PROMPT, "image template (<image> once)",
               variant="<image>\nDescribe the image in one word:"),
    BackendArg("text_prompt", str, E5V_TEXT_PROMPT, "text template (<sent> once)",
               variant="<sent>\nDescribe the sentence in one word:"),
    BackendArg("image_context_prompt", str, IMAGE_CONTEXT_PROMPT,
               "image template with a context (<image>, <context>)",
               variant="Story: <context>\n<image>\nSummary above image in one word:"),
    BackendArg("text_context_prompt", str, TEXT_CONTEXT_PROMPT,
               "text template with a context (<sent>, <context>)",
               variant="Story: <context>\n<sent>\nSummary above sentence in one word:"),
    RAW_WRAP, IMAGE_TOKEN, SYSTEM_PROMPT, CONTEXT_SIDES_ARG,
    BackendArg("pooling", str, "last", "last token (E5-V) or mean", choices=("last", "mean")),
    BackendArg("normalize", bool, True, "L2-normalise the embeddings"),
    ca.min_vocab(100),
)
_PLACEHOLDER = re.compile(r"(<image>|<sent>|<context>)")
IMAGE = object()   # marks the image's place in a filled template


def check_template(name: str, template: str, need: str, context: bool) -> str:
    if not isinstance(template, str):
        raise hc.ModelLoadError(f"{name} must be a string, got {type(template).__name__}")
    counts = {p: template.count(p) for p in ("<image>", "<sent>", "<context>")}
    other = "<sent>" if need == "<image>" else "<image>"
    if counts[need] != 1 or counts[other]:
        raise hc.ModelLoadError(f"{name}={template!r} must contain {need} exactly once and no {other}")
    if context and counts["<context>"] != 1:
        raise hc.ModelLoadError(f"{name}={template!r} must contain <context> exactly once")
    if not context and counts["<context>"]:
        raise hc.ModelLoadError(f"{name}={template!r} has <context> but is used without a context")
    return template


def fill(template: str, sent: str | None = None, context: str | None = None) -> list:
    """Split a template into text pieces and the IMAGE marker, substituting <sent> and
    <context> (user text is never itself parsed for placeholders)."""
    out: list = []
    for piece in _PLACEHOLDER.split(template):
        value = {"<image>": IMAGE, "<sent>": sent, "<context>": context}.get(piece, piece)
        if value is IMAGE:
            out.append(IMAGE)
        elif value:
            if out and isinstance(out[-1], str):
                out[-1] += value
            else:
                out.append(value)
    return out


class VLMPrompter:
    """Turns filled templates into the strings the processor tokenises."""

    def __init__(self, processor, model_type: str, prompt_format: str = "auto",
                 raw_wrap: str = "<prompt>", image_token: str | None = None,
                 system_prompt: str | None = None):
        has_chat = bool(getattr(processor, "chat_template", None))
        if prompt_format == "auto":
            prompt_format = "chat" if has_chat else "raw"
        if prompt_format not in ("chat", "raw"):
            raise hc.ModelLoadError(f"prompt_format={prompt_format!r}: use auto, chat or raw")
        if prompt_format == "chat" and not has_chat:
            raise hc.ModelLoadError("prompt_format=chat but the processor has no chat template; "
                                    "use prompt_format=raw (with raw_wrap) for base models")
        if raw_wrap.count("<prompt>") != 1:
            raise hc.ModelLoadError(f"raw_wrap={raw_wrap!r} must contain <prompt> exactly once")
        if image_token is None:
            image_token = RAW_IMAGE_TOKENS.get(model_type) or getattr(processor, "image_token", None)
        if prompt_format == "raw" and not image_token:
            raise hc.ModelLoadError(f"no known image placeholder for model type {model_type!r}; "
                                    f"pass --backend-arg image_token=<the model's image token>")
        self.processor = processor
        self.format = prompt_format
        self.raw_wrap = raw_wrap
        self.image_token = image_token
        self.system_prompt = system_prompt

    def settings(self) -> dict:
        return {"format": self.format, "raw_wrap": self.raw_wrap, "image_token": self.image_token,
                "system": self.system_prompt}

    def render(self, pieces_list: list[list]) -> list[str]:
        if self.format == "raw":
            pre, post = self.raw_wrap.split("<prompt>")
            return [pre + "".join(self.image_token if p is IMAGE else p for p in pieces) + post
                    for pieces in pieces_list]
        conversations = []
        for pieces in pieces_list:
            content = [{"type": "image"} if p is IMAGE else {"type": "text", "text": p}
                       for p in pieces]
            messages = [{"role": "user", "content": content}]
            if self.system_prompt:
                messages.insert(0, {"role": "system",
                                    "content": [{"type": "text", "text": self.system_prompt}]})
            conversations.append(messages)
        return list(self.processor.apply_chat_template(conversations, add_generation_prompt=True,
                                                       tokenize=False))

    def tokenize(self, prompts: list[str], images: Sequence[Image.Image] | None, dtype, device) -> dict:
        """Left-padded processor inputs on ``device`` (floating tensors in ``dtype``).

        In chat mode the template already holds the special tokens, so the processor
        adds none; in raw mode it adds its usual ones (e.g. BOS), as E5-V does."""
        import torch

        kwargs = {"text": prompts, "padding": True, "return_tensors": "pt",
                  "add_special_tokens": self.format == "raw"}
        if images is not None:
            kwargs["images"] = [[im] for im in images]
        inputs = self.processor(**kwargs)
        return {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device))
                for k, v in inputs.items() if isinstance(v, torch.Tensor)}


def fill_processor_geometry(processor, config) -> None:
    """LLaVA(-NeXT) processors need the vision tower's patch size and feature
    strategy to expand <image>; a repository without processor_config.json (as
    royokong/e5-v is published) leaves them unset, so take them from the model."""
    if not hasattr(processor, "patch_size") or processor.patch_size is not None:
        return
    vision = getattr(config, "vision_config", None)
    if getattr(vision, "patch_size", None) is None:
        return
    processor.patch_size = vision.patch_size
    strategy = getattr(config, "vision_feature_select_strategy", "default")
    if getattr(processor, "vision_feature_select_strategy", None) is None:
        processor.vision_feature_select_strategy = strategy
    if getattr(vision, "model_type", "") == "clip_vision_model":
        processor.num_additional_image_tokens = 1   # CLIP's class token


def load_vlm(model: str, revision: str | None, dtype, device: str, device_map,
             min_vocab: int, where: str):
    """(model, processor, source) for an image-text-to-text model, checked for sanity."""
    vlm, processor, source = hc.load_pretrained(
        model, revision, "AutoModelForImageTextToText", "AutoProcessor", dtype, device, device_map,
        where, hint=" (is it an image-text-to-text model?)")
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None:
        raise hc.ModelLoadError(f"{where}: its processor has no tokenizer")
    hc.check_tokenizer(tokenizer, where, min_vocab)
    image_token = getattr(processor, "image_token", None)
    if image_token and tokenizer.convert_tokens_to_ids(image_token) in (None, tokenizer.unk_token_id):
        raise hc.TokenizerSanityError(f"{where}: the processor's image token {image_token!r} is not "
                                      f"in the tokenizer's vocabulary; the processor and tokenizer "
                                      f"do not belong together")
    fill_processor_geometry(processor, vlm.config)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return hc.place(vlm, device, device_map), processor, source


class VLMEmbedBackend:
    def __init__(self, model: str, revision: str | None = None, dtype: str = "auto",
                 device: str = "cpu", device_map: str | None = None,
                 prompt_format: str = "auto", image_prompt: str = E5V_IMAGE_PROMPT,
                 text_prompt: str = E5V_TEXT_PROMPT,
                 image_context_prompt: str = IMAGE_CONTEXT_PROMPT,
                 text_context_prompt: str = TEXT_CONTEXT_PROMPT,
                 raw_wrap: str = "<prompt>", image_token: str | None = None,
                 system_prompt: str | None = None, context_sides: str = "both",
                 pooling: str = "last", normalize: bool = True, min_vocab: int = 100):
        self.device = device
        self.dtype = hc.parse_dtype(dtype, device)
        self.prompts = {
            "image": check_template("image_prompt", image_prompt, "<image>", False),
            "text": check_template("text_prompt", text_prompt, "<sent>", False),
            "image_context": check_template("image_context_prompt", image_context_prompt, "<image>", True),
            "text_context": check_template("text_context_prompt", text_context_prompt, "<sent>", True),
        }
        if context_sides not in CONTEXT_SIDES:
            raise hc.ModelLoadError(f"context_sides={context_sides!r}: use {', '.join(CONTEXT_SIDES)}")
        if pooling not in ("last", "mean"):
            raise hc.ModelLoadError(f"pooling={pooling!r}: use last (E5-V) or mean")
        self.pooling, self.normalize, self.context_sides = pooling, bool(normalize), context_sides
        self.model, self.processor, self.source = load_vlm(
            model, revision, self.dtype, device, device_map, min_vocab, f"vlm_embed model {model!r}")
        model_type = getattr(self.model.config, "model_type", "")
        self.prompter = VLMPrompter(self.processor, model_type, prompt_format, raw_wrap,
                                    image_token, system_prompt)
        self.decoder = getattr(self.model, "model", self.model)
        # Qwen-VL models compute their 3-D multimodal RoPE positions from the mask.
        self.own_positions = hasattr(self.decoder, "get_rope_index")
        img_ctx, txt_ctx = CONTEXT_SIDES[context_sides]
        self.capabilities = Capabilities(image_context=img_ctx, text_context=txt_ctx,
                                         normalized=self.normalize,
                                         context_method="prompt" if (img_ctx or txt_ctx) else "none")

    def fingerprint(self) -> str:
        settings = hc.text_hash(self.prompts, self.prompter.settings())
        return (f"vlm_embed:v{hc.PLUGIN_VERSION}:{self.source.ident}:{hc.dtype_name(self.dtype)}"
                f":pool={self.pooling}:norm={int(self.normalize)}:ctx={self.context_sides}"
                f":prompts={settings}")

    def _embed(self, prompts: list[str], images: Sequence[Image.Image] | None) -> torch.Tensor:
        inputs = self.prompter.tokenize(prompts, images, self.dtype, hc.input_device(self.model))
        mask = inputs["attention_mask"]
        if not self.own_positions:
            inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.decoder(**inputs, use_cache=False)
        hidden = out.last_hidden_state
        pooled = hc.last_token(hidden, mask) if self.pooling == "last" else hc.masked_mean(hidden, mask)
        pooled = pooled.float()
        return (hc.l2_normalize(pooled) if self.normalize else pooled).cpu()

    def encode_images(self, images: Sequence[Image.Image], contexts: Sequence[str | None]) -> torch.Tensor:
        pieces = [fill(self.prompts["image_context" if c is not None else "image"], context=c)
                  for c in contexts]
        import torch

        with torch.inference_mode():
            return self._embed(self.prompter.render(pieces), images)

    def encode_texts(self, texts: Sequence[str], contexts: Sequence[str | None]) -> torch.Tensor:
        pieces = [fill(self.prompts["text_context" if c is not None else "text"], sent=t, context=c)
                  for t, c in zip(texts, contexts)]
        import torch

        with torch.inference_mode():
            return self._embed(self.prompter.render(pieces), None)


def make_vlm_embed(device: str = "cpu", **args) -> VLMEmbedBackend:
    if "model" not in args:
        raise hc.ModelLoadError("vlm_embed needs --backend-arg model=<hub id or local directory> "
                                "(an image-text-to-text model, e.g. google/gemma-3-4b-pt)")
    return VLMEmbedBackend(device=device, **args)


@hookimpl
def ctxbench_backends():
    return [BackendSpec(
        name="vlm_embed",
        factory=make_vlm_embed,
        description="E5-V-style VLM embedding (last layer, last token, L2-normalised); args: model, "
                    "dtype, device_map, prompt_format, image_prompt, text_prompt, *_context_prompt, "
                    "context_sides, pooling",
        default_batch_size=8,
        args=ARGS,
    )]
