"""`vlm_caption`: a generative VLM writes a caption; a text embedder embeds it.

The "VLM-Caption" method of Tsutsumi & Kohita ("same image, different meaning"
context-dependent retrieval): a VLM captions the
image - given the context C in its prompt for phi(I, C) - and a text encoder
(Qwen3-Embedding-0.6B in the paper) embeds the caption; queries are embedded by
the same text encoder, with C in their text for psi(q, C). Decoding is greedy
(``max_new_tokens`` configurable), so captions are deterministic.

Captions are cached like embeddings: JSONL segment files under
``<ctxbench cache>/captions/<sha256(captioner fingerprint)[:24]>/``, each written
atomically (temp file + rename), keyed by sha256(captioner fingerprint, image
hash, context hash, prompt). A killed run leaves only whole segments; a torn line
in a foreign file is skipped. :meth:`VLMCaptionBackend.captions` returns the
captions this backend produced or served, for the evaluator to save with the
results.

Args (``--backend-arg``): ``model`` (the captioner), ``embedder`` (text embedder,
default Qwen/Qwen3-Embedding-0.6B), ``revision``, ``embedder_revision``, ``dtype``,
``device_map``, ``prompt_format`` / ``raw_wrap`` / ``image_token`` /
``system_prompt`` (as vlm_embed), ``caption_prompt``, ``caption_context_prompt``
(placeholders ``<image>``, ``<context>``), ``query_prompt``,
``query_context_prompt``, ``caption_embed_prompt`` (placeholders ``<sent>``,
``<context>``), ``max_new_tokens``, ``embed_pooling``, ``embed_max_length``,
``context_sides`` (both/image/text/none), ``cache_dir`` (``none``: memory only).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ctxbench.io.atomic import atomic_path
from ctxbench.backend import BackendArg, BackendSpec, Capabilities
from ctxbench.hooks import hookimpl

from . import common_args as ca
from . import hf_common as hc
from .text_embedder import TextEmbedder
from .vlm_embed import (CONTEXT_SIDES, CONTEXT_SIDES_ARG, IMAGE_TOKEN, PROMPT_FORMAT, RAW_WRAP,
                        SYSTEM_PROMPT, VLMPrompter, check_template, fill, load_vlm)

if TYPE_CHECKING:  # torch and PIL load with the model: `ctxbench list` imports this module
    import torch
    from PIL import Image

CAPTION_PROMPT = "<image>\nDescribe this image in one sentence."
CAPTION_CONTEXT_PROMPT = ("Context: <context>\n<image>\nDescribe this image in one sentence, "
                          "in the light of the context.")
QUERY_PROMPT = "<sent>"
QUERY_CONTEXT_PROMPT = "Context: <context>\n<sent>"
CAPTION_EMBED_PROMPT = "<sent>"
DEFAULT_EMBEDDER = "Qwen/Qwen3-Embedding-0.6B"
ARGS = (
    ca.model("hub id or local directory of the captioning VLM"),
    BackendArg("embedder", str, DEFAULT_EMBEDDER, "hub id or local directory of the text embedder"),
    ca.REVISION, BackendArg("embedder_revision", str, None, "hub revision of embedder"),
    ca.DTYPE, ca.DEVICE_MAP, PROMPT_FORMAT,
    BackendArg("caption_prompt", str, CAPTION_PROMPT, "captioning template (<image> once)",
               variant="<image>\nWhat does this image show?"),
    BackendArg("caption_context_prompt", str, CAPTION_CONTEXT_PROMPT,
               "captioning template with a context (<image>, <context>)",
               variant="Story: <context>\n<image>\nWhat does this image show in the story?"),
    BackendArg("query_prompt", str, QUERY_PROMPT, "query template (<sent> once)",
               variant="Query: <sent>"),
    BackendArg("query_context_prompt", str, QUERY_CONTEXT_PROMPT,
               "query template with a context (<sent>, <context>)",
               variant="Story: <context>\nQuery: <sent>"),
    BackendArg("caption_embed_prompt", str, CAPTION_EMBED_PROMPT,
               "template the caption is embedded with (<sent> once)", variant="Caption: <sent>"),
    RAW_WRAP, IMAGE_TOKEN, SYSTEM_PROMPT,
    BackendArg("max_new_tokens", int, 64, "caption length limit (greedy decoding)", variant=4),
    BackendArg("embed_pooling", str, "auto", "text embedder pooling: auto, mean, last or cls",
               choices=("auto", "mean", "last", "cls")),
    BackendArg("embed_max_length", int, 512, "text embedder token limit", variant=8),
    CONTEXT_SIDES_ARG,
    BackendArg("cache_dir", str, None, "caption cache folder (default <ctxbench cache>/captions; "
                                       "none: memory only)", vary=False),
    ca.min_vocab(100),
)


class CaptionStore:
    """Append-only caption cache of one captioner (``directory`` None: memory only)."""

    def __init__(self, directory: Path | None):
        self.dir = directory
        self._captions: dict[str, str] = {}
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            for seg in sorted(directory.glob("seg-*.jsonl")):
                self._read(seg)

    def _read(self, seg: Path) -> None:
        try:
            lines = seg.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue   # a torn line: that caption is simply generated again
            if isinstance(rec, dict) and isinstance(rec.get("key"), str) \
                    and isinstance(rec.get("caption"), str):
                self._captions[rec["key"]] = rec["caption"]

    def __len__(self) -> int:
        return len(self._captions)

    def get(self, key: str) -> str | None:
        return self._captions.get(key)

    def put_many(self, records: list[dict]) -> None:
        if not records:
            return
        for rec in records:
            self._captions[rec["key"]] = rec["caption"]
        if self.dir is None:
            return
        body = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
        with atomic_path(self.dir / f"seg-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl") as tmp:
            tmp.write_text(body, encoding="utf-8")


class VLMCaptionBackend:
    def __init__(self, model: str, embedder: str = DEFAULT_EMBEDDER, revision: str | None = None,
                 embedder_revision: str | None = None, dtype: str = "auto", device: str = "cpu",
                 device_map: str | None = None, prompt_format: str = "auto",
                 caption_prompt: str = CAPTION_PROMPT,
                 caption_context_prompt: str = CAPTION_CONTEXT_PROMPT,
                 query_prompt: str = QUERY_PROMPT, query_context_prompt: str = QUERY_CONTEXT_PROMPT,
                 caption_embed_prompt: str = CAPTION_EMBED_PROMPT,
                 raw_wrap: str = "<prompt>", image_token: str | None = None,
                 system_prompt: str | None = None, max_new_tokens: int = 64,
                 embed_pooling: str = "auto", embed_max_length: int = 512,
                 context_sides: str = "both", cache_dir: str | None = None, min_vocab: int = 100):
        self.dtype = hc.parse_dtype(dtype, device)
        self.prompts = {
            "caption": check_template("caption_prompt", caption_prompt, "<image>", False),
            "caption_context": check_template("caption_context_prompt", caption_context_prompt,
                                               "<image>", True),
            "query": check_template("query_prompt", query_prompt, "<sent>", False),
            "query_context": check_template("query_context_prompt", query_context_prompt,
                                             "<sent>", True),
            "caption_embed": check_template("caption_embed_prompt", caption_embed_prompt,
                                             "<sent>", False),
        }
        if context_sides not in CONTEXT_SIDES:
            raise hc.ModelLoadError(f"context_sides={context_sides!r}: use {', '.join(CONTEXT_SIDES)}")
        self.max_new_tokens = int(max_new_tokens)
        if self.max_new_tokens < 1:
            raise hc.ModelLoadError(f"max_new_tokens={max_new_tokens!r} must be >= 1")
        self.model, self.processor, self.source = load_vlm(
            model, revision, self.dtype, device, device_map, min_vocab, f"vlm_caption model {model!r}")
        self.prompter = VLMPrompter(self.processor, getattr(self.model.config, "model_type", ""),
                                    prompt_format, raw_wrap, image_token, system_prompt)
        self.embedder = TextEmbedder(embedder, embedder_revision, dtype, device, device_map,
                                     pooling=embed_pooling, max_length=embed_max_length,
                                     min_vocab=min_vocab)
        self.context_sides = context_sides
        img_ctx, txt_ctx = CONTEXT_SIDES[context_sides]
        self.capabilities = Capabilities(image_context=img_ctx, text_context=txt_ctx, normalized=True,
                                         context_method="prompt" if (img_ctx or txt_ctx) else "none")
        if cache_dir is None:
            from ctxbench.cache import default_cache_dir
            root: Path | None = default_cache_dir() / "captions"
        elif str(cache_dir).lower() in ("none", "off", "false", ""):
            root = None
        else:
            root = Path(str(cache_dir)).expanduser()
        digest = hashlib.sha256(self.captioner_fingerprint().encode()).hexdigest()[:24]
        self.store = CaptionStore(root / digest if root is not None else None)
        self._session: dict[str, str] = {}

    # -- identity -------------------------------------------------------------------
    def captioner_fingerprint(self) -> str:
        settings = hc.text_hash(self.prompts["caption"], self.prompts["caption_context"],
                                self.prompter.settings())
        return (f"vlm_caption/captioner:v{hc.PLUGIN_VERSION}:{self.source.ident}"
                f":{hc.dtype_name(self.dtype)}:greedy:max_new={self.max_new_tokens}:prompts={settings}")

    def fingerprint(self) -> str:
        query = hc.text_hash(self.prompts["query"], self.prompts["query_context"],
                             self.prompts["caption_embed"])
        return (f"vlm_caption:v{hc.PLUGIN_VERSION}:[{self.captioner_fingerprint()}]"
                f":[{self.embedder.fingerprint()}]:ctx={self.context_sides}:query={query}")

    def captions(self) -> dict[str, str]:
        """Captions produced or served so far: ``{image key: caption}``, where the key
        is ``ctxbench.inputs.pil_key(image)`` and, for a captioned-with-context image,
        ``"<pil_key>#<context_key(context)>"``."""
        return dict(self._session)

    # -- captioning -----------------------------------------------------------------
    def _caption_key(self, image_key: str, ctx_key: str, template: str) -> str:
        return hashlib.sha256("\0".join((self.captioner_fingerprint(), image_key, ctx_key,
                                         template)).encode()).hexdigest()

    def generate(self, images: Sequence[Image.Image], contexts: Sequence[str | None]) -> list[str]:
        """Greedy captions for one batch (no cache)."""
        pieces = [fill(self.prompts["caption_context" if c is not None else "caption"], context=c)
                  for c in contexts]
        inputs = self.prompter.tokenize(self.prompter.render(pieces), images, self.dtype,
                                        hc.input_device(self.model))
        import torch

        tok = self.processor.tokenizer
        with torch.inference_mode():
            out = self.model.generate(**inputs, do_sample=False, num_beams=1,
                                      max_new_tokens=self.max_new_tokens,
                                      pad_token_id=tok.pad_token_id, temperature=None,
                                      top_p=None, top_k=None)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]

    def caption_images(self, images: Sequence[Image.Image], contexts: Sequence[str | None]) -> list[str]:
        """Captions through the cache; missing ones are generated in one batch."""
        from ctxbench.inputs import context_key, pil_key

        image_keys = [pil_key(im) for im in images]
        ctx_keys = [context_key(c) for c in contexts]
        templates = [self.prompts["caption_context" if c is not None else "caption"] for c in contexts]
        keys = [self._caption_key(i, c, t) for i, c, t in zip(image_keys, ctx_keys, templates)]
        found = [self.store.get(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            fresh = self.generate([images[i] for i in missing], [contexts[i] for i in missing])
            records = []
            for i, caption in zip(missing, fresh):
                found[i] = caption
                records.append({"key": keys[i], "image": image_keys[i], "context": ctx_keys[i],
                                "prompt": templates[i], "caption": caption,
                                "captioner": self.captioner_fingerprint()})
            self.store.put_many(records)
        for i, caption in enumerate(found):
            name = image_keys[i] if contexts[i] is None else f"{image_keys[i]}#{ctx_keys[i]}"
            self._session[name] = caption
        return found

    # -- Backend protocol -----------------------------------------------------------
    def _embed(self, texts: list[str], contexts: Sequence[str | None], plain: str, with_ctx: str):
        rendered = ["".join(fill(self.prompts[with_ctx if c is not None else plain], sent=t, context=c))
                    for t, c in zip(texts, contexts)]
        return self.embedder.embed(rendered)

    def encode_images(self, images: Sequence[Image.Image], contexts: Sequence[str | None]) -> torch.Tensor:
        captions = self.caption_images(images, contexts)
        return self._embed(captions, [None] * len(captions), "caption_embed", "caption_embed")

    def encode_texts(self, texts: Sequence[str], contexts: Sequence[str | None]) -> torch.Tensor:
        return self._embed(list(texts), contexts, "query", "query_context")


def make_vlm_caption(device: str = "cpu", **args) -> VLMCaptionBackend:
    if "model" not in args:
        raise hc.ModelLoadError("vlm_caption needs --backend-arg model=<captioning VLM> "
                                "(and optionally embedder=<text embedder>)")
    return VLMCaptionBackend(device=device, **args)


@hookimpl
def ctxbench_backends():
    return [BackendSpec(
        name="vlm_caption",
        factory=make_vlm_caption,
        description="VLM caption (greedy, context in the prompt) embedded by a text embedder; args: "
                    "model, embedder, dtype, max_new_tokens, caption_prompt, query_prompt, ...",
        default_batch_size=8,
        args=ARGS,
    )]
