"""Hub-layout fixtures of the image-text-to-text presets (vlm_embed, vlm_caption)."""

from __future__ import annotations

from pathlib import Path

import torch

from .common import TEXT, bpe_tokenizer, gemma_tokenizer, legacy_processor_layout

# Published Gemma 3 IT chat template (chat_template.json), minus its role-order check.
GEMMA3_CHAT = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = \"\" -%}"
    "{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}{%- else -%}"
    "{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}{%- elif item['type'] == 'text' -%}"
    "{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}{%- endif -%}{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}")


def _qwen_chat(default_system: bool) -> str:
    """Qwen's ChatML template; Qwen2-VL's adds a default system turn, Qwen3-VL's does not."""
    system = ("{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
              "You are a helpful assistant.<|im_end|>\n{% endif %}") if default_system else ""
    return ("{% for message in messages %}" + system + "<|im_start|>{{ message['role'] }}\n"
            "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
            "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
            "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'text' %}"
            "{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _save(model_config, processor, path: Path, image_processor_type: str | None = None,
          keep_processor_config: bool = True) -> Path:
    """Save a random-weight model and its processor in the published file layout."""
    from transformers import AutoModelForImageTextToText
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(model_config).eval()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    legacy_processor_layout(path, image_processor_type, keep_processor_config)
    return path


def build_gemma3(path: Path, instruct: bool) -> Path:
    """google/gemma-3-4b-pt / -12b-pt / -4b-it / -12b-it
    (https://huggingface.co/google/gemma-3-4b-it/tree/main): config.json
    (Gemma3ForConditionalGeneration, model_type gemma3, text gemma3_text, vision
    siglip_vision_model, mm_tokens_per_image 256), tokenizer.model + tokenizer.json
    (GemmaTokenizer), preprocessor_config.json (Gemma3ImageProcessor),
    processor_config.json (image_seq_length), chat_template.json for the IT models.
    Not confirmed offline: whether the -pt repositories also ship the chat template
    (the presets use prompt_format=raw for them, so it does not matter)."""
    from transformers import Gemma3Config, Gemma3ImageProcessor, Gemma3Processor
    symbols = ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>",
               "<image_soft_token>"]
    tok = gemma_tokenizer(path, symbols, {"image_token": "<image_soft_token>",
                                          "boi_token": "<start_of_image>",
                                          "eoi_token": "<end_of_image>"})
    ids = tok.convert_tokens_to_ids
    config = Gemma3Config(
        text_config=dict(vocab_size=len(tok), pad_token_id=0, eos_token_id=1, bos_token_id=2,
                         sliding_window=512, **TEXT),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=32, patch_size=8),
        mm_tokens_per_image=4, boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"), image_token_index=ids("<image_soft_token>"))
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok,
        image_seq_length=4, chat_template=GEMMA3_CHAT if instruct else None)
    return _save(config, processor, path)


def build_ministral3(path: Path) -> Path:
    """mistralai/Ministral-3-3B-Base-2512 / -8B-Base-2512
    (https://huggingface.co/mistralai/Ministral-3-3B-Base-2512; file list as the
    Instruct sibling's https://huggingface.co/mistralai/Ministral-3-3B-Instruct-2512/tree/main):
    config.json (Mistral3ForConditionalGeneration, model_type mistral3, text
    ministral3, vision pixtral), PixtralProcessor with [IMG]/[IMG_BREAK]/[IMG_END]
    (image token id 10). Not confirmed offline: the repositories ship Mistral's
    tekken.json (mistral-common) and consolidated.safetensors; this fixture uses the
    transformers layout (tokenizer.json, model.safetensors), which a tekken-only
    checkout would not have."""
    from transformers import Mistral3Config, PixtralImageProcessor, PixtralProcessor
    specials = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]",
                "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]",
                "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]"]
    from tokenizers import processors
    tok = bpe_tokenizer(path, specials, "TokenizersBackend", unk_token="<unk>", bos_token="<s>",
                        eos_token="</s>", pad_token="<pad>")
    inner = tok.backend_tokenizer
    inner.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save_pretrained(path)
    config = Mistral3Config(
        text_config=dict(model_type="ministral3", vocab_size=len(tok), pad_token_id=11,
                         bos_token_id=1, eos_token_id=2, **TEXT),
        vision_config=dict(model_type="pixtral", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2, head_dim=16,
                           image_size=32, patch_size=8),
        image_token_index=10, spatial_merge_size=2)
    processor = PixtralProcessor(
        image_processor=PixtralImageProcessor(size={"longest_edge": 32}, patch_size=8),
        tokenizer=tok, patch_size=8, spatial_merge_size=2)
    return _save(config, processor, path, keep_processor_config=False)


def _qwen_tokenizer(path: Path, specials: list[str]):
    return bpe_tokenizer(path, specials, "Qwen2Tokenizer", pad_token="<|endoftext|>",
                         eos_token="<|im_end|>", unk_token=None)


QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def build_qwen3_vl(path: Path) -> Path:
    """Qwen/Qwen3-VL-2B/4B/8B-Instruct (https://huggingface.co/Qwen/Qwen3-VL-2B-Instruct/tree/main):
    config.json (Qwen3VLForConditionalGeneration, model_type qwen3_vl, text
    qwen3_vl_text with interleaved M-RoPE, vision patch 16 / merge 2 with deepstack
    layers), vocab.json + merges.txt + tokenizer.json (Qwen2Tokenizer),
    chat_template.json, preprocessor_config.json (Qwen2VLImageProcessorFast,
    size {longest_edge, shortest_edge}, patch_size 16, merge_size 2, mean/std 0.5)
    and video_preprocessor_config.json (Qwen3VLVideoProcessor)."""
    from transformers import (Qwen2VLImageProcessorFast, Qwen3VLConfig, Qwen3VLProcessor,
                              Qwen3VLVideoProcessor)
    tok = _qwen_tokenizer(path, QWEN_SPECIALS)
    ids = tok.convert_tokens_to_ids
    text = dict(model_type="qwen3_vl_text", vocab_size=len(tok),
                rope_parameters={"rope_type": "default", "rope_theta": 5e6,
                                 "mrope_section": [2, 3, 3], "mrope_interleaved": True},
                **TEXT)
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                           patch_size=16, spatial_merge_size=2, out_hidden_size=32,
                           num_position_embeddings=16, deepstack_visual_indexes=[0]),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    pix = dict(patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3,
               image_std=[0.5] * 3, size={"shortest_edge": 32 * 32, "longest_edge": 64 * 64})
    processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessorFast(**pix),
                                 video_processor=Qwen3VLVideoProcessor(**pix), tokenizer=tok,
                                 chat_template=_qwen_chat(default_system=False))
    return _save(config, processor, path, "Qwen2VLImageProcessorFast", keep_processor_config=False)
