"""Tiny, randomly initialised models built from configs, saved like real checkpoints.

Every builder writes a directory (``save_pretrained`` for transformers models, a
config JSON + checkpoint for open_clip) that a backend then loads through its
normal path, the same code a user's pretrained model takes. Nothing touches the
network: tokenizers are trained on a small corpus with the ``tokenizers``
library, image processors are constructed from arguments, and chat templates are
written here.

The weights are random, so the numbers mean nothing; what the tests check is the
plumbing (prompting, padding, pooling, normalisation, caching, context
handling). Sizes are kept minimal (hidden 32-64, 1-2 layers) so a model builds
and runs in well under a second on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import torch

PROBE_CORPUS = (
    "a photo of a red circle and a blue square on a green meadow",
    "summary above image in one word:",
    "summary above sentence in one word:",
    "describe the image in one sentence.",
    "context: title: story: a romance story. anna waits longingly for the warm light.",
    "the yellow triangle glows warmly at the heart of the frame in dim dusk light",
    "a large purple star, a small orange hexagon, a medium cyan ring over the ocean",
    "represent the given image. find me an everyday image that matches the caption",
    "The quick brown fox jumps over the lazy dog. 0123456789 !?,.;:'\"()-",
)


def world_corpus() -> list[str]:
    """Words of the synthetic world (captions, stories) plus the prompts above."""
    lines = list(PROBE_CORPUS)
    try:
        from .. import synthetic_world as world
        lines += list(world.SHAPES) + list(world.COLOURS) + list(world.SIZES)
        lines += list(world.BACKGROUNDS) + list(world.TEXTURES) + list(world.LIGHTING)
        rng = world.rng_for("tiny_models/tokenizer", 0)
        lines += [world.caption(world.sample_scene(rng)) for _ in range(40)]
    except Exception:  # the world is optional here; the probe corpus suffices
        pass
    return lines


def train_bpe(special_tokens: Iterable[str], vocab_size: int = 600,
              corpus: Iterable[str] | None = None, post: tuple[str, str] | None = None):
    """A byte-level BPE ``tokenizers.Tokenizer`` (round-trips any text exactly).

    ``post=(bos, eos)`` adds a template post-processor wrapping every sequence.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = list(dict.fromkeys(special_tokens))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(corpus or world_corpus()) * 3, trainer)
    if post is not None:
        bos, eos = post
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} $B {eos}",
            special_tokens=[(bos, tok.token_to_id(bos)), (eos, tok.token_to_id(eos))])
    return tok


def _fast(tok, **special) -> "PreTrainedTokenizerFast":
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special)


# ----------------------------------------------------------------------------- dual encoders
def build_clip(path: str | Path, kind: str = "clip", image_size: int = 32,
               seed: int = 0) -> Path:
    """A tiny ``CLIPModel`` (kind="clip") or ``SiglipModel`` (kind="siglip") with
    its processor, saved to ``path``."""
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor,
                              SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor)

    path = Path(path)
    torch.manual_seed(seed)
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    if kind == "clip":
        tok = train_bpe([bos, eos], post=(bos, eos))
        tokenizer = _fast(tok, bos_token=bos, eos_token=eos, pad_token=eos,
                          unk_token=eos, model_max_length=48)
        text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=48,
                    bos_token_id=tok.token_to_id(bos), eos_token_id=tok.token_to_id(eos),
                    pad_token_id=tok.token_to_id(eos))
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, image_size=image_size, patch_size=8)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
        processor = CLIPProcessor(
            image_processor=CLIPImageProcessor(size={"shortest_edge": image_size},
                                               crop_size={"height": image_size, "width": image_size}),
            tokenizer=tokenizer)
    elif kind == "siglip":
        pad = "<pad>"
        tok = train_bpe([pad, eos], post=None)
        from tokenizers import processors
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", special_tokens=[(eos, tok.token_to_id(eos))])
        tokenizer = _fast(tok, eos_token=eos, pad_token=pad, unk_token=eos, model_max_length=16)
        text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
                    pad_token_id=tok.token_to_id(pad), bos_token_id=tok.token_to_id(eos),
                    eos_token_id=tok.token_to_id(eos))
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, image_size=image_size, patch_size=8)
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        processor = SiglipProcessor(
            image_processor=SiglipImageProcessor(size={"height": image_size, "width": image_size}),
            tokenizer=tokenizer)
    else:
        raise ValueError(f"kind must be 'clip' or 'siglip', not {kind!r}")
    model.eval()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


# ----------------------------------------------------------------------------- open_clip
def open_clip_config() -> dict:
    """A tiny open_clip architecture (ViT image tower + transformer text tower)
    using open_clip's bundled BPE tokenizer (vocab 49408, so offline)."""
    return {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                       "patch_size": 8},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 1},
    }


def build_open_clip(path: str | Path, arch: str = "ctxbench-tiny-test", seed: int = 0,
                    fmt: str = "pt") -> tuple[Path, Path]:
    """Write ``<arch>.json`` and a checkpoint (``fmt`` "pt": torch.save of the
    state dict; "safetensors") under ``path``; returns (config, checkpoint)."""
    import open_clip

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = path / f"{arch}.json"
    config.write_text(json.dumps(open_clip_config(), indent=2))
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file
        ckpt = path / f"{arch}.safetensors"
        save_file(state, str(ckpt))
    elif fmt == "pt":
        ckpt = path / f"{arch}.pt"
        torch.save(state, ckpt)
    else:
        raise ValueError(f"fmt must be 'pt' or 'safetensors', not {fmt!r}")
    return config, ckpt


# ----------------------------------------------------------------------------- text encoders
def build_text_encoder(path: str | Path, arch: str = "bert", seed: int = 0) -> Path:
    """A tiny text encoder: "bert" (sentence-transformers layout with mean pooling in
    1_Pooling/config.json) or "qwen3" (decoder, last-token pooling, left padding,
    like Qwen3-Embedding)."""
    from transformers import BertConfig, BertModel, Qwen3Config, Qwen3Model

    path = Path(path)
    torch.manual_seed(seed)
    if arch == "bert":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok = train_bpe(specials, post=("[CLS]", "[SEP]"))
        tokenizer = _fast(tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                          sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)
        model = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32,
                                     num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64,
                                     pad_token_id=0), add_pooling_layer=True)
        pooling = {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True,
                   "pooling_mode_cls_token": False, "pooling_mode_lasttoken": False}
    elif arch == "qwen3":
        eos = "<|endoftext|>"
        tok = train_bpe([eos, "<|im_start|>", "<|im_end|>"])
        from tokenizers import processors
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", special_tokens=[(eos, tok.token_to_id(eos))])
        tokenizer = _fast(tok, eos_token=eos, pad_token=eos, unk_token=eos,
                          model_max_length=64, padding_side="left")
        model = Qwen3Model(Qwen3Config(vocab_size=len(tokenizer), hidden_size=32,
                                       intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, num_key_value_heads=1,
                                       head_dim=16, max_position_embeddings=128,
                                       pad_token_id=tok.token_to_id(eos),
                                       eos_token_id=tok.token_to_id(eos)))
        pooling = {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": False,
                   "pooling_mode_cls_token": False, "pooling_mode_lasttoken": True}
    else:
        raise ValueError(f"arch must be 'bert' or 'qwen3', not {arch!r}")
    model.eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ], indent=2))
    return path


# ----------------------------------------------------------------------------- VLMs
def _chat_template(image_text: str, bos: str = "") -> str:
    """A ChatML-style Jinja template; an image content item renders as ``image_text``."""
    return (
        bos +
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for item in message['content'] %}"
        "{% if item['type'] == 'image' %}" + image_text + "{% elif item['type'] == 'text' %}"
        "{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


VLM_FAMILIES = ("llava", "qwen2_vl", "gemma3")


def build_vlm(path: str | Path, family: str = "llava", seed: int = 0) -> Path:
    """A tiny image-text-to-text model of ``family`` (see :data:`VLM_FAMILIES`) with
    its processor (tokenizer with the family's special tokens, image processor, chat
    template), saved to ``path``."""
    from transformers import AutoModelForImageTextToText

    path = Path(path)
    torch.manual_seed(seed)
    chat = ["<|im_start|>", "<|im_end|>"]
    text_common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                       max_position_embeddings=512)
    if family == "llava":
        from transformers import CLIPImageProcessor, LlavaConfig, LlavaProcessor
        specials = ["<pad>", "<s>", "</s>", "<image>"] + chat
        tok = train_bpe(specials)
        ids = {t: tok.token_to_id(t) for t in specials}
        tokenizer = _fast(tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                          unk_token="</s>", extra_special_tokens={"image_token": "<image>"})
        config = LlavaConfig(
            vision_config=dict(model_type="clip_vision_model", hidden_size=32,
                               intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=32, patch_size=8, projection_dim=32),
            text_config=dict(model_type="llama", vocab_size=len(tokenizer),
                             pad_token_id=ids["<pad>"], bos_token_id=ids["<s>"],
                             eos_token_id=ids["</s>"], **text_common),
            image_token_id=ids["<image>"], vision_feature_layer=-1,
            vision_feature_select_strategy="default", pad_token_id=ids["<pad>"])
        processor = LlavaProcessor(
            image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                               crop_size={"height": 32, "width": 32}),
            tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
            num_additional_image_tokens=1, chat_template=_chat_template("<image>\n"))
    elif family == "qwen2_vl":
        from transformers import (Qwen2VLConfig, Qwen2VLImageProcessor, Qwen2VLProcessor,
                                  Qwen2VLVideoProcessor)
        specials = ["<|endoftext|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                    "<|video_pad|>"] + chat
        tok = train_bpe(specials)
        ids = {t: tok.token_to_id(t) for t in specials}
        tokenizer = _fast(tok, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                          unk_token="<|endoftext|>",
                          extra_special_tokens={"image_token": "<|image_pad|>",
                                                "video_token": "<|video_pad|>"})
        text = dict(model_type="qwen2_vl_text", vocab_size=len(tokenizer),
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                     "mrope_section": [2, 3, 3]},
                    pad_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                    bos_token_id=ids["<|endoftext|>"], **text_common)
        config = Qwen2VLConfig(
            text_config=text,
            vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2,
                               mlp_ratio=2, patch_size=14, spatial_merge_size=2,
                               temporal_patch_size=2),
            image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"])
        pix = dict(min_pixels=56 * 56, max_pixels=56 * 56)
        processor = Qwen2VLProcessor(
            image_processor=Qwen2VLImageProcessor(**pix),
            video_processor=Qwen2VLVideoProcessor(**pix), tokenizer=tokenizer,
            chat_template=_chat_template("<|vision_start|><|image_pad|><|vision_end|>"))
    elif family == "gemma3":
        from transformers import Gemma3Config, Gemma3ImageProcessor, Gemma3Processor
        specials = ["<pad>", "<eos>", "<bos>", "<start_of_image>", "<end_of_image>",
                    "<image_soft_token>"] + chat
        tok = train_bpe(specials)
        ids = {t: tok.token_to_id(t) for t in specials}
        tokenizer = _fast(tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                          unk_token="<eos>",
                          extra_special_tokens={"image_token": "<image_soft_token>",
                                                "boi_token": "<start_of_image>",
                                                "eoi_token": "<end_of_image>"})
        config = Gemma3Config(
            text_config=dict(vocab_size=len(tokenizer), pad_token_id=ids["<pad>"],
                             eos_token_id=ids["<eos>"], bos_token_id=ids["<bos>"],
                             sliding_window=64, **text_common),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=2, image_size=32, patch_size=8),
            mm_tokens_per_image=4, boi_token_index=ids["<start_of_image>"],
            eoi_token_index=ids["<end_of_image>"], image_token_index=ids["<image_soft_token>"])
        processor = Gemma3Processor(
            image_processor=Gemma3ImageProcessor(size={"height": 32, "width": 32}),
            tokenizer=tokenizer, image_seq_length=4,
            chat_template=_chat_template("<start_of_image>", bos="{{ bos_token }}"))
    else:
        raise ValueError(f"family must be one of {VLM_FAMILIES}, not {family!r}")
    model = AutoModelForImageTextToText.from_config(config)
    model.eval()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
