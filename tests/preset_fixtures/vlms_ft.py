"""Hub-layout fixtures of the fine-tuned VLM embedders (E5-V, VLM2Vec)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .common import TEXT, bpe_tokenizer, legacy_processor_layout, write_json
from .vlms import QWEN_SPECIALS, _qwen_chat, _qwen_tokenizer, _save


def build_e5v(path: Path) -> Path:
    """royokong/e5-v (https://huggingface.co/royokong/e5-v/tree/main): config.json
    (LlavaNextForConditionalGeneration, model_type llava_next, Llama-3 text, CLIP
    ViT-L/14-336 vision, image_grid_pinpoints), tokenizer.json + tokenizer_config.json
    + special_tokens_map.json (Llama-3 PreTrainedTokenizerFast with <image> added),
    preprocessor_config.json (LlavaNextImageProcessor) and *no* processor_config.json
    or chat_template file, so the processor's patch_size and feature strategy are
    unset. Not confirmed offline: the exact tokenizer_config.json contents (51 kB)."""
    from transformers import LlavaNextConfig, LlavaNextImageProcessor, LlavaNextProcessor
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                "<|end_header_id|>", "<|eot_id|>", "<image>", "<pad>"]
    bos = "<|begin_of_text|>"
    tok = bpe_tokenizer(path, specials, "PreTrainedTokenizerFast", post=None, bos_token=bos,
                        eos_token="<|eot_id|>", pad_token="<pad>")
    from tokenizers import processors
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tok.convert_tokens_to_ids(bos))])
    tok.save_pretrained(path)
    ids = tok.convert_tokens_to_ids
    pinpoints = [[32, 32], [32, 64], [64, 32]]
    config = LlavaNextConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, image_size=32,
                           patch_size=8, projection_dim=32),
        text_config=dict(model_type="llama", vocab_size=len(tok), pad_token_id=ids("<pad>"),
                         bos_token_id=ids(bos), eos_token_id=ids("<|eot_id|>"), **TEXT),
        image_token_index=ids("<image>"), image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2, vision_feature_select_strategy="default")
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessor(size={"shortest_edge": 32},
                                                crop_size={"height": 32, "width": 32},
                                                image_grid_pinpoints=pinpoints),
        tokenizer=tok)
    return _save(config, processor, path, keep_processor_config=False)


def _qwen2_vl(path: Path):
    from transformers import (Qwen2VLConfig, Qwen2VLImageProcessor, Qwen2VLProcessor,
                              Qwen2VLVideoProcessor)
    tok = _qwen_tokenizer(path, QWEN_SPECIALS)
    ids = tok.convert_tokens_to_ids
    text = dict(model_type="qwen2_vl_text", vocab_size=len(tok),
                rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                 "mrope_section": [2, 3, 3]},
                pad_token_id=ids("<|endoftext|>"), bos_token_id=ids("<|endoftext|>"),
                eos_token_id=ids("<|im_end|>"), **TEXT)
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    pix = dict(min_pixels=56 * 56, max_pixels=56 * 56)
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(**pix),
                                 video_processor=Qwen2VLVideoProcessor(**pix), tokenizer=tok,
                                 chat_template=_qwen_chat(default_system=True))
    return config, processor


def build_vlm2vec_full(path: Path) -> Path:
    """TIGER-Lab/VLM2Vec-Qwen2VL-7B (https://huggingface.co/TIGER-Lab/VLM2Vec-Qwen2VL-7B/tree/main):
    merged weights as pickled ``pytorch_model-0000N-of-00004.bin`` shards (plus a
    LoRA copy under lora/), config.json (Qwen2VLForConditionalGeneration,
    model_type qwen2_vl), vocab.json/merges.txt/tokenizer.json/added_tokens.json,
    chat_template.json, preprocessor_config.json (Qwen2VLImageProcessor, patch 14,
    min/max_pixels)."""
    config, processor = _qwen2_vl(path)
    _save(config, processor, path, keep_processor_config=False)
    from safetensors.torch import load_file
    weights = path / "model.safetensors"
    torch.save(load_file(str(weights)), path / "pytorch_model.bin")
    weights.unlink()
    return path


def build_vlm2vec_adapter(path: Path) -> Path:
    """TIGER-Lab/VLM2Vec-Qwen2VL-2B (https://huggingface.co/TIGER-Lab/VLM2Vec-Qwen2VL-2B/tree/main):
    a LoRA adapter (adapter_config.json + adapter_model.bin, 18.8 MB) with the base's
    config.json and processor files, but no model weights. Not confirmed offline:
    VLM2Vec/VLM2Vec-V2.0's file list (assumed the same adapter layout)."""
    config, processor = _qwen2_vl(path)
    config.save_pretrained(path)
    processor.save_pretrained(path)
    legacy_processor_layout(path, keep_processor_config=False)
    write_json(path / "adapter_config.json", {
        "base_model_name_or_path": "Qwen/Qwen2-VL-2B-Instruct", "peft_type": "LORA",
        "r": 8, "lora_alpha": 64, "target_modules": ["q_proj", "v_proj"]})
    torch.save({}, path / "adapter_model.bin")
    return path
