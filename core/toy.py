"""The embedded default model: a small CLIP trained on the synthetic world.

``ctxbench run --task all`` must show something meaningful on a machine with no
data and no hub access, so ctxbench ships a small open_clip model trained here
(the ``toy_clip`` backend loads it through the ordinary ``open_clip`` backend).

Architecture: an open_clip ``CLIP`` (Radford et al. 2021, "Learning Transferable
Visual Models From Natural Language Supervision"; github.com/mlfoundations/open_clip)
described by :data:`MODEL_CONFIG` and registered with ``open_clip.add_model_config``
under the name :data:`ARCH`: a ViT with 8-pixel patches on 64x64 images and a
4-layer text transformer using open_clip's own BPE tokenizer (its vocabulary ships
inside the open_clip package, so nothing is downloaded).

Data: image-text pairs drawn from :mod:`ctxbench.synthetic_world` with
``rng_for("train/toy_clip", seed)``; the held-out retrieval set uses
``rng_for("train/toy_clip/heldout", seed)``. Evaluation datasets draw from
``eval/...`` purposes, which are independent streams whatever the integer seed,
so no evaluation scene is replayed in training. Scenes are fresh at every step (no
epoch over a fixed set). The texts are the kinds of text the families use: world
captions, object lists in the L1 form, single objects, tag lists, lighting/style and
warm/cool colour phrases, and picture-quality words for scenes whose quality knobs
are degraded. Motions are not trained: a single frame does not show a motion, and
an order-free average of frame embeddings cannot tell "slide left" from "slide
right".

Loss: the symmetric InfoNCE of CLIP (Radford et al. 2021, Fig. 3 pseudo-code) with a
learnable temperature clamped at 100 (open_clip's training loop), generalised to
duplicate texts in a batch: pairs whose texts are identical are all positives, with
the target mass spread uniformly over them (otherwise "a red star" drawn twice in a
batch would push apart two correct matches). Optimiser AdamW with CLIP's betas
(0.9, 0.98), eps 1e-6, weight decay on matrices only (open_clip's rule: no decay on
gains, biases, logit scale), linear warm-up then cosine decay.

Determinism: given (seed, steps, batch_size, lr, threads) the run is bit-for-bit
repeatable on one machine: data come from the seeded world streams, torch is seeded
and ``torch.use_deterministic_algorithms(True)`` is on while training.

Outputs (:func:`train_toy`), each written atomically: ``toy_clip.safetensors``
(weights stored as float16 to keep the file small; open_clip casts them to the
model's precision on load), ``ctxbench-toy-clip.json`` (the architecture; its file
stem is the architecture name, as ``open_clip.add_model_config`` names configs) and
``card.json`` (architecture, parameters, training seed and settings, generator
version, training time, held-out retrieval, sha256 of the weights file).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .io.atomic import write_bytes, write_json
from . import synthetic_world as world

ARCH = "ctxbench-toy-clip"
WEIGHTS_FILE = "toy_clip.safetensors"
CONFIG_FILE = f"{ARCH}.json"
CARD_FILE = "card.json"
CARD_VERSION = 1
DATA_PURPOSE = "train/toy_clip"
HELDOUT_PURPOSE = "train/toy_clip/heldout"

MODEL_CONFIG: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 128, "layers": 4, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4},
}

#: share of each kind of training text (see :func:`sample_text`)
TEXT_MIX = {"caption": 0.25, "objects": 0.30, "object": 0.15, "tags": 0.10, "setting": 0.10,
            "quality": 0.10}
#: probability that a training scene has degraded quality knobs, and the knob ranges
#: (those of the aesthetics family's embedded data)
DEGRADE_P = 0.3
KNOB_RANGES = {"contrast": (0.3, 1.0), "noise": (0.0, 0.15), "blur": (0.0, 2.5), "offcentre": (0.0, 0.8)}


# ----------------------------------------------------------------------------- data
def sample_training_scene(rng: np.random.Generator) -> world.Scene:
    """A scene of 1-3 objects in any style; with probability :data:`DEGRADE_P` each
    quality knob is independently degraded (probability 1/2) within its range."""
    scene = world.sample_scene(rng, (1, 3))
    if rng.random() < DEGRADE_P:
        knobs = {}
        for knob, (lo, hi) in KNOB_RANGES.items():
            if rng.random() < 0.5:
                knobs[knob] = round(float(rng.uniform(lo, hi)), 3)
        if knobs:
            from dataclasses import replace
            scene = replace(scene, **knobs)
    return scene


def objects_phrase(scene: world.Scene, sort: bool = True) -> str:
    """``"a large red circle and a small blue star"`` (sorted as in L1 queries, or in
    scene order)."""
    objs = [world.describe_object(o) for o in scene.objects]
    return world.list_phrase([world.article(o) for o in (sorted(objs) if sort else objs)])


def quality_words(scene: world.Scene) -> list[str]:
    """Words for the degraded knobs of ``scene`` (empty when it is clean)."""
    words = []
    if scene.contrast < 0.75:
        words.append("low-contrast")
    if scene.noise > 0.04:
        words.append("noisy")
    if scene.blur > 0.8:
        words.append("blurry")
    if scene.offcentre > 0.3:
        words.append("badly framed")
    return words


def colour_temperature(scene: world.Scene) -> str | None:
    cols = {o.colour for o in scene.objects}
    if cols <= set(world.WARM_COLOURS):
        return "warm-coloured"
    if cols <= set(world.COOL_COLOURS):
        return "cool-coloured"
    return None


def sample_text(scene: world.Scene, rng: np.random.Generator) -> str:
    """One training text for ``scene``, its kind drawn from :data:`TEXT_MIX`."""
    kinds = list(TEXT_MIX)
    kind = kinds[int(rng.choice(len(kinds), p=np.array(list(TEXT_MIX.values())) / sum(TEXT_MIX.values())))]
    if kind == "caption":
        return world.caption(scene)
    if kind == "objects":
        return f"{objects_phrase(scene, sort=bool(rng.random() < 0.7))} on {world.article(scene.background)} background"
    if kind == "object":
        obj = scene.objects[int(rng.integers(len(scene.objects)))]
        forms = (world.article(world.describe_object(obj)), f"the {obj.colour} {obj.shape}",
                 world.article(obj.shape), world.article(f"{obj.colour} {obj.shape}"),
                 f"{world.article(obj.colour)} object")
        return forms[int(rng.integers(len(forms)))]
    if kind == "tags":
        return ", ".join(world.tags(scene))
    if kind == "setting":
        temp = colour_temperature(scene)
        forms = [f"{objects_phrase(scene)} in {world.LIGHTING_PHRASES[scene.lighting]}",
                 f"a scene in {world.LIGHTING_PHRASES[scene.lighting]}, {world.STYLE_PHRASES[scene.style]}",
                 f"{world.article(world.STYLE_PHRASES[scene.style])} of {objects_phrase(scene)}"]
        if temp:
            forms.append(f"{temp} objects in {world.LIGHTING_PHRASES[scene.lighting]}")
        return forms[int(rng.integers(len(forms)))]
    words = quality_words(scene)   # kind == "quality"
    quality = ", ".join(words) if words else "sharp, clean, well-framed"
    return f"{world.article(quality)} picture of {objects_phrase(scene)}"


def heldout_set(seed: int, n: int = 256) -> tuple[list[world.Scene], list[str]]:
    """Held-out retrieval pairs: scenes of 2-3 objects with their L1-form text."""
    rng = world.rng_for(HELDOUT_PURPOSE, seed)
    scenes = [world.sample_scene(rng, (2, 3)) for _ in range(n)]
    texts = [f"{objects_phrase(s)} on {world.article(s.background)} background" for s in scenes]
    return scenes, texts


# ----------------------------------------------------------------------------- model
def register_arch(out_dir: Path) -> Path:
    """Write :data:`MODEL_CONFIG` to ``out_dir/ctxbench-toy-clip.json`` and register it."""
    import open_clip
    path = Path(out_dir) / CONFIG_FILE
    write_json(path, MODEL_CONFIG)
    open_clip.add_model_config(path)
    return path


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor,
                     same_text: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP, Radford et al. 2021) on L2-normalised features; rows
    whose texts are identical (``same_text[i, j]``) share the positive mass."""
    logits = scale * img @ txt.T
    target = same_text.float() / same_text.sum(1, keepdim=True)
    return 0.5 * (torch.sum(-target * F.log_softmax(logits, 1), 1).mean()
                  + torch.sum(-target * F.log_softmax(logits.T, 1), 1).mean())


def recall_at_1(img: torch.Tensor, txt: torch.Tensor) -> float:
    """Text-to-image Recall@1 of matched pairs (row i of each is pair i)."""
    hits = (txt @ img.T).argmax(1) == torch.arange(len(txt))
    return float(hits.float().mean())


def _batch(scenes: Sequence[world.Scene], texts: Sequence[str], preprocess, tokenizer):
    pixels = torch.stack([preprocess(world.render(s, 64)) for s in scenes])
    return pixels, tokenizer(list(texts))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        exclude = p.ndim < 2 or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _evaluate(model, pixels: torch.Tensor, tokens: torch.Tensor) -> float:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        img = F.normalize(model.encode_image(pixels), dim=-1)
        txt = F.normalize(model.encode_text(tokens), dim=-1)
    model.train(was_training)
    return recall_at_1(img.cpu(), txt.cpu())


def _half_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().to(torch.float16).contiguous().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- training
def train_toy(out_dir: str | Path, seed: int = 0, steps: int = 1500, batch_size: int = 128,
              lr: float = 1e-3, weight_decay: float = 0.1, warmup: int | None = None,
              threads: int = 2, eval_every: int = 100, log_every: int = 20, n_heldout: int = 256,
              device: str = "cpu", log: Callable[[str], None] = lambda s: print(s, flush=True)) -> dict:
    """Train the embedded model and write weights, config and card to ``out_dir``.
    Returns the card. See the module docstring for data, loss and determinism."""
    import open_clip
    from safetensors.torch import save as st_save

    if steps < 1 or batch_size < 2:
        raise ValueError("train_toy needs steps >= 1 and batch_size >= 2")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    warmup = max(1, steps // 20) if warmup is None else int(warmup)
    if str(device).startswith("cuda"):   # cuBLAS needs this for deterministic matmuls
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        register_arch(out)
        model, _, preprocess = open_clip.create_model_and_transforms(ARCH, pretrained=None, device=device)
        tokenizer = open_clip.get_tokenizer(ARCH)
        model.train()
        n_params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
        rng = world.rng_for(DATA_PURPOSE, seed)
        h_scenes, h_texts = heldout_set(seed, n_heldout)
        h_pixels, h_tokens = (x.to(device) for x in _batch(h_scenes, h_texts, preprocess, tokenizer))
        log(f"toy_clip: {ARCH}, {n_params:,} parameters; {steps} steps x batch {batch_size}, "
            f"lr {lr}, seed {seed}, {threads} threads; held-out pool {n_heldout}")
        history: list[dict] = []
        t0 = time.perf_counter()
        running = []
        for step in range(steps):
            scenes = [sample_training_scene(rng) for _ in range(batch_size)]
            texts = [sample_text(s, rng) for s in scenes]
            pixels, tokens = _batch(scenes, texts, preprocess, tokenizer)
            pixels, tokens = pixels.to(device), tokens.to(device)
            same = torch.as_tensor(np.array(texts)[:, None] == np.array(texts)[None, :]).to(device)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, steps, lr, warmup)
            img, txt, scale = model(pixels, tokens)[:3]
            loss = contrastive_loss(img, txt, scale, same)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            running.append(loss.item())
            if (step + 1) % log_every == 0 or step == steps - 1:
                log(f"step {step + 1}/{steps}  loss {np.mean(running):.4f}  "
                    f"lr {opt.param_groups[0]['lr']:.2e}  {time.perf_counter() - t0:.0f}s")
                running = []
            if (step + 1) % eval_every == 0 or step == steps - 1:
                r1 = _evaluate(model, h_pixels, h_tokens)
                history.append({"step": step + 1, "loss": loss.item(), "heldout_R@1": r1,
                                "elapsed_s": round(time.perf_counter() - t0, 1)})
                log(f"step {step + 1}: held-out text->image R@1 {r1:.3f} (pool {n_heldout}, "
                    f"chance {1 / n_heldout:.3f})")
        train_time = time.perf_counter() - t0
        state = _half_state(model)
        shipped = copy.deepcopy(model)   # the held-out figure of the weights as shipped (fp16)
        shipped.load_state_dict(state)
        final_r1 = _evaluate(shipped, h_pixels, h_tokens)
        # one metadata key only: safetensors writes a metadata map in hash order, which
        # would make the file bytes (and the card's sha256) differ between identical runs
        blob = st_save(state, metadata={"format": "pt"})
        write_bytes(out / WEIGHTS_FILE, blob)
        card = {
            "card_version": CARD_VERSION,
            "name": "toy_clip",
            "architecture": {"open_clip_arch": ARCH, "config_file": CONFIG_FILE, "config": MODEL_CONFIG,
                             "parameters": n_params, "tokenizer": "open_clip SimpleTokenizer (bundled BPE)",
                             "preprocess": "open_clip validation transform (OpenAI mean/std, 64 px)"},
            "weights": {"file": WEIGHTS_FILE, "dtype": "float16", "bytes": len(blob),
                        "sha256": hashlib.sha256(blob).hexdigest()},
            "training": {"seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
                         "weight_decay": weight_decay, "warmup_steps": warmup, "threads": threads,
                         "data_purpose": DATA_PURPOSE, "heldout_purpose": HELDOUT_PURPOSE,
                         "generator_version": world.GENERATOR_VERSION, "text_mix": TEXT_MIX,
                         "degrade_p": DEGRADE_P, "train_time_s": round(train_time, 1),
                         "machine": f"{platform.machine()} {platform.system()}",
                         "torch": torch.__version__, "open_clip": open_clip.__version__},
            "heldout": {"metric": "text->image R@1", "pool": n_heldout, "chance": 1 / n_heldout,
                        "R@1_fp16": final_r1, "history": history},
        }
        write_json(out / CARD_FILE, card)
        log(f"done in {train_time:.0f}s: held-out R@1 {final_r1:.3f} (fp16 weights); wrote "
            f"{out / WEIGHTS_FILE} ({len(blob) / 1e6:.1f} MB), {out / CARD_FILE}, {out / CONFIG_FILE}")
        return card
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)


def main_train(args) -> int:
    """Entry point for ``ctxbench toy train --out DIR --seed N --steps N`` (also reads
    optional ``batch_size``, ``lr`` and ``threads`` attributes of ``args``)."""
    kwargs = {k: getattr(args, k) for k in ("batch_size", "lr", "threads")
              if getattr(args, k, None) is not None}
    train_toy(args.out, seed=int(getattr(args, "seed", 0) or 0),
              steps=int(getattr(args, "steps", None) or 1500), **kwargs)
    return 0


def verify_card(directory: str | Path, retrain: str = "ctxbench toy train") -> dict:
    """Load ``card.json`` of a model directory and check the weights' sha256 and size;
    returns the card, raises ``ValueError`` naming the file (and ``retrain``, the
    command that rebuilds it) on a mismatch."""
    directory = Path(directory)
    card = json.loads((directory / CARD_FILE).read_text(encoding="utf-8"))
    weights = directory / card["weights"]["file"]
    data = weights.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != card["weights"]["sha256"] or len(data) != card["weights"]["bytes"]:
        raise ValueError(f"{weights}: sha256 {digest} ({len(data)} bytes) does not match "
                         f"{directory / CARD_FILE} ({card['weights']['sha256']}, "
                         f"{card['weights']['bytes']} bytes); retrain with `{retrain}` "
                         f"or restore both files together")
    return card
