"""Hub-layout fixtures of the dual-encoder presets (hf_clip, open_clip)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .common import bpe_tokenizer, gemma_tokenizer, patch_json, train_sentencepiece, write_json

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
              image_size=32, patch_size=8)


def build_openai_clip(path: Path) -> Path:
    """openai/clip-vit-large-patch14 (https://huggingface.co/openai/clip-vit-large-patch14/tree/main):
    config.json (CLIPModel, model_type clip), vocab.json + merges.txt + tokenizer.json
    (CLIPTokenizer, model_max_length 77, <|startoftext|>/<|endoftext|>), and the legacy
    preprocessor_config.json (feature_extractor_type CLIPFeatureExtractor, integer
    size/crop_size, CLIP mean/std, resample 3). Differs: tokenizer_config.json keeps
    tokenizer_class PreTrainedTokenizerFast, because CLIPTokenizer rebuilds its model
    from vocab.json/merges.txt with CLIP's </w> word-end merges, which a tokenizer
    trained offline here does not have (the round-trip check then rightly refuses it)."""
    from transformers import CLIPConfig, CLIPModel
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    tok = bpe_tokenizer(path, [bos, eos], "CLIPTokenizer", post=(bos, eos), bos_token=bos,
                        eos_token=eos, pad_token=eos, unk_token=eos, model_max_length=77)
    ids = tok.convert_tokens_to_ids
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=77, bos_token_id=ids(bos),
                eos_token_id=ids(eos), pad_token_id=ids(eos))
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=VISION, projection_dim=24)).save_pretrained(path)
    write_json(path / "preprocessor_config.json", {
        "crop_size": 32, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 32})
    return path


def _siglip_preprocessor(path: Path) -> None:
    write_json(path / "preprocessor_config.json", {
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5] * 3,
        "image_std": [0.5] * 3, "image_processor_type": "SiglipImageProcessor",
        "processor_class": "SiglipProcessor", "resample": 3, "rescale_factor": 1 / 255,
        "size": {"height": 32, "width": 32}})


def _siglip_model(path: Path, vocab: int, pad: int, eos: int) -> None:
    from transformers import SiglipConfig, SiglipModel
    text = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=64, pad_token_id=pad,
                eos_token_id=eos, bos_token_id=eos)
    torch.manual_seed(0)
    SiglipModel(SiglipConfig(text_config=text, vision_config=VISION)).save_pretrained(path)


def build_siglip(path: Path) -> Path:
    """google/siglip-so400m-patch14-384 (https://huggingface.co/google/siglip-so400m-patch14-384/tree/main):
    config.json (SiglipModel, model_type siglip, patch 14 at 384), a SentencePiece
    ``spiece.model`` with no tokenizer.json, tokenizer_config.json as published
    (https://huggingface.co/google/siglip-so400m-patch14-384/blob/main/tokenizer_config.json:
    SiglipTokenizer, model_max_length 64, do_lower_case, eos/pad </s> = 1, unk <unk> = 2,
    model_input_names [input_ids]) and preprocessor_config.json (SiglipImageProcessor,
    size {height, width}, mean/std 0.5, resample 3)."""
    train_sentencepiece(path / "spiece.model", "unigram",
                        {"pad": (0, "<pad>"), "eos": (1, "</s>"), "unk": (2, "<unk>")})
    special = {"content": "", "lstrip": True, "normalized": False, "rstrip": True,
               "single_word": False, "special": True}
    write_json(path / "tokenizer_config.json", {
        "added_tokens_decoder": {"1": {**special, "content": "</s>"},
                                 "2": {**special, "content": "<unk>"}},
        "additional_special_tokens": [], "clean_up_tokenization_spaces": True,
        "do_lower_case": True, "eos_token": "</s>", "model_input_names": ["input_ids"],
        "model_max_length": 64, "pad_token": "</s>", "processor_class": "SiglipProcessor",
        "sp_model_kwargs": {}, "tokenizer_class": "SiglipTokenizer", "unk_token": "<unk>"})
    write_json(path / "special_tokens_map.json", {"eos_token": "</s>", "pad_token": "</s>",
                                                  "unk_token": "<unk>"})
    from transformers import SiglipTokenizer
    vocab = len(SiglipTokenizer.from_pretrained(path))
    _siglip_model(path, vocab, pad=1, eos=1)
    _siglip_preprocessor(path)
    return path


def build_siglip2(path: Path) -> Path:
    """google/siglip2-so400m-patch14-384 (https://huggingface.co/google/siglip2-so400m-patch14-384):
    the fixed-resolution SigLIP 2 checkpoints are published as ``SiglipModel``
    (model_type siglip, Conv2d patch embedding; see the model's discussion #7 and
    the siglip2-base-patch16-512 config.json), not the NaFlex ``Siglip2Model``, with
    the Gemma tokenizer (tokenizer.model + tokenizer.json, vocab 256000) and a
    SiglipImageProcessor preprocessor_config.json. Not confirmed offline: the exact
    tokenizer_config.json keys (taken as GemmaTokenizer, model_max_length 64)."""
    tok = gemma_tokenizer(path, [])
    patch_json(path / "tokenizer_config.json", model_max_length=64,
               processor_class="SiglipProcessor")
    _siglip_model(path, len(tok), pad=tok.pad_token_id, eos=tok.eos_token_id)
    _siglip_preprocessor(path)
    return path


def build_open_clip_h14(path: Path) -> Path:
    """laion/CLIP-ViT-H-14-laion2B-s32B-b79K (https://huggingface.co/laion/CLIP-ViT-H-14-laion2B-s32B-b79K/tree/main),
    where open_clip's ``laion2b_s32b_b79k`` tag downloads from: open_clip_config.json
    (``model_cfg``: embed_dim, vision_cfg, text_cfg; ``preprocess_cfg``: the OpenAI CLIP
    mean/std) and open_clip_model.safetensors (the repository also has
    open_clip_pytorch_model.bin and a transformers copy, not needed by open_clip). The
    architecture is shrunk to a tiny ViT with open_clip's bundled BPE tokenizer (the
    published text_cfg names no hf_tokenizer_name either). Returns the folder."""
    import open_clip
    from safetensors.torch import save_file
    from ctxbench.testing.tiny_models import open_clip_config
    path.mkdir(parents=True, exist_ok=True)
    cfg = open_clip_config()
    write_json(path / "open_clip_config.json", {"model_cfg": cfg, "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}})
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(path / "open_clip_model.safetensors"))
    return path
