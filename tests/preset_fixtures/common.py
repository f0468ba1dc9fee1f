"""Shared pieces of the hub-layout fixtures: tokenizers trained offline, JSON
patching of saved configs, and tiny transformer sizes."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from ctxbench.testing.tiny_models import _fast, train_bpe, world_corpus

TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, head_dim=16, max_position_embeddings=512)


def patch_json(path: Path, **updates) -> dict:
    """Rewrite a saved JSON file with ``updates`` (None deletes a key)."""
    data = json.loads(path.read_text()) if path.exists() else {}
    for key, value in updates.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data, indent=2))
    return data


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def train_sentencepiece(path: Path, model_type: str, ids: dict, symbols=(), vocab: int = 400,
                        **extra) -> Path:
    """Train a SentencePiece model on the synthetic-world corpus (offline, <0.1 s).

    ``ids`` maps pad/eos/bos/unk to (id, piece); -1 leaves one out, as SigLIP's
    spiece.model has no BOS."""
    import sentencepiece as spm
    buf = io.BytesIO()
    kw = {}
    for name in ("pad", "eos", "bos", "unk"):
        i, piece = ids.get(name, (-1, None))
        kw[f"{name}_id"] = i
        if piece:
            kw[f"{name}_piece"] = piece
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(world_corpus()) * 3), model_writer=buf, vocab_size=vocab,
        model_type=model_type, user_defined_symbols=list(symbols), character_coverage=1.0,
        hard_vocab_limit=False, minloglevel=2, **kw, **extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def bpe_tokenizer(path: Path, specials: list[str], tokenizer_class: str, post=None,
                  **special_tokens):
    """A byte-level BPE tokenizer saved as tokenizer.json (+ vocab.json/merges.txt
    where the published class writes them), its tokenizer_config naming
    ``tokenizer_class`` as the published one does; returns the reloaded tokenizer."""
    from transformers import AutoTokenizer
    tok = train_bpe(specials, post=post)
    fast = _fast(tok, **special_tokens)
    fast.save_pretrained(path)
    if tokenizer_class != "CLIPTokenizer":   # see build_openai_clip
        patch_json(path / "tokenizer_config.json", tokenizer_class=tokenizer_class)
    if tokenizer_class in ("CLIPTokenizer", "Qwen2Tokenizer"):
        model = json.loads((path / "tokenizer.json").read_text())["model"]
        (path / "vocab.json").write_text(json.dumps(model["vocab"]))
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return AutoTokenizer.from_pretrained(path)


def gemma_tokenizer(path: Path, symbols: list[str], extra: dict | None = None):
    """Gemma's layout: a SentencePiece BPE ``tokenizer.model`` (pad 0, eos 1, bos 2,
    unk 3, byte fallback) plus the ``tokenizer.json`` transformers converts it to."""
    from transformers import AutoTokenizer
    tmp = path / "_spm"
    train_sentencepiece(tmp / "tokenizer.model", "bpe",
                        {"pad": (0, "<pad>"), "eos": (1, "<eos>"), "bos": (2, "<bos>"),
                         "unk": (3, "<unk>")}, symbols, byte_fallback=True)
    write_json(tmp / "tokenizer_config.json", {
        "tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>",
        "pad_token": "<pad>", "unk_token": "<unk>", "add_bos_token": True,
        "add_eos_token": False})
    tok = AutoTokenizer.from_pretrained(tmp, **({"extra_special_tokens": extra} if extra else {}))
    tok.save_pretrained(path)
    shutil.copy(tmp / "tokenizer.model", path / "tokenizer.model")
    shutil.rmtree(tmp)
    return AutoTokenizer.from_pretrained(path)


def legacy_processor_layout(path: Path, image_processor_type: str | None = None,
                            keep_processor_config: bool = True) -> None:
    """Rewrite transformers 5's single processor_config.json into the files the
    published repositories (saved with transformers 4) have: preprocessor_config.json
    (image processor + processor_class), video_preprocessor_config.json,
    processor_config.json with only the processor's own kwargs (dropped where the
    repository has none), and chat_template.json instead of chat_template.jinja."""
    combined = path / "processor_config.json"
    data = json.loads(combined.read_text())
    cls = data.pop("processor_class", None)
    image = data.pop("image_processor", None)
    video = data.pop("video_processor", None)
    if image is not None:
        if image_processor_type:
            image["image_processor_type"] = image_processor_type
        write_json(path / "preprocessor_config.json", {**image, "processor_class": cls})
    if video is not None:
        write_json(path / "video_preprocessor_config.json", {**video, "processor_class": cls})
    if keep_processor_config and data:
        write_json(combined, {**data, "processor_class": cls})
    else:
        combined.unlink()
    jinja = path / "chat_template.jinja"
    if jinja.exists():
        write_json(path / "chat_template.json", {"chat_template": jinja.read_text()})
        jinja.unlink()
