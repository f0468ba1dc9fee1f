"""The embedded default model: a small CLIP trained on the synthetic world.

``ctxbench run --task all`` must show something meaningful on a machine with no
data and no hub access, so ctxbench ships a small open_clip model trained here
(the ``toy_clip`` backend loads it through the ordinary ``open_clip`` backend).

Architecture: an open_clip ``CLIP`` (Radford et al. 2021, "Learning Transferable
Visual Models From Natural Language Supervision"; github.com/mlfoundations/open_clip)
described by :data:`MODEL_CONFIG` and registered with ``open_clip.add_model_config``
under the name :data:`ARCH`: a small plain CNN image tower on 64x64 images
(:mod:`ctxbench.toy_vision`, registered as a timm model, which open_clip builds through
``timm_model_name``; why not a ViT or CLIP's ModifiedResNet is measured there), and a
4-layer text transformer using open_clip's own BPE tokenizer (its vocabulary ships
inside the open_clip package, so nothing is downloaded).

Data: image-text items of :mod:`ctxbench.toy_data` (pictures and motion clips, texts
that name objects, shapes, settings, picture quality, moods and motions, and shape
twins that only shape tells apart), drawn with ``rng_for("train/toy_clip", seed)``;
the held-out figures use ``rng_for("train/toy_clip/heldout...", seed)``. Evaluation
datasets draw from ``eval/...`` purposes, which are independent streams whatever the
integer seed, so no evaluation scene is replayed in training. Items are fresh at every
step (no epoch over a fixed set).

Held-out figures (in the card, after every ``eval_every`` steps and for the shipped
fp16 weights): text-to-image Recall@1 of L1-form object lists over 256 scenes, and two
zero-shot top-1 accuracies (:data:`HELDOUT_PROBES`): the shape of a single object in
any style among the 8 shapes, and the emotion of a mood-rule scene among the 8 FI
emotions.

Loss: the symmetric InfoNCE of CLIP (Radford et al. 2021, Fig. 3 pseudo-code) with a
learnable temperature clamped at 100 (open_clip's training loop); a clip item's image
side is the normalised mean of its normalised frame embeddings (:func:`item_embeddings`).
Generalised to duplicate texts in a batch: pairs whose texts are identical are all positives, with
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
from . import toy_data, toy_vision

ARCH = "ctxbench-toy-clip"
WEIGHTS_FILE = "toy_clip.safetensors"
CONFIG_FILE = f"{ARCH}.json"
CARD_FILE = "card.json"
CARD_VERSION = 2
DATA_PURPOSE = "train/toy_clip"
HELDOUT_PURPOSE = "train/toy_clip/heldout"

MODEL_CONFIG: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "timm_model_name": toy_vision.NAME, "timm_model_pretrained": False,
                   "timm_pool": "", "timm_proj": "linear"},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4},
}

# ----------------------------------------------------------------------------- held-out figures
def heldout_set(seed: int, n: int = 256) -> tuple[list[world.Scene], list[str]]:
    """Held-out retrieval pairs: scenes of 2-3 objects with their L1-form text."""
    rng = world.rng_for(HELDOUT_PURPOSE, seed)
    scenes = [world.sample_scene(rng, (2, 3)) for _ in range(n)]
    texts = [f"{toy_data.objects_phrase(s)} on {world.article(s.background)} background" for s in scenes]
    return scenes, texts


#: zero-shot held-out probes: name -> prompt template (classes: :func:`heldout_probe_set`)
HELDOUT_PROBES = {"shape_top1": "a picture of a {}.", "mood_top1": "a photo that evokes {}."}


def heldout_probe_set(name: str, seed: int, n: int = 256) -> tuple[list[world.Scene], list[int], list[str]]:
    """(scenes, labels, class prompts) of a zero-shot probe of :data:`HELDOUT_PROBES`:
    single objects of every style named by shape, or mood-rule scenes named by emotion."""
    rng = world.rng_for(f"{HELDOUT_PURPOSE}/{name}", seed)
    if name == "shape_top1":
        classes = world.SHAPES
        labels = [int(rng.integers(len(classes))) for _ in range(n)]
        scenes = [world.sample_scene(rng, 1, shapes=(classes[k],)) for k in labels]
    elif name == "mood_top1":
        from .families.metadata_sentiment.synthetic import FI_EMOTIONS as classes
        items = [toy_data.mood_item(rng) for _ in range(n)]
        scenes = [it.scenes[0] for it in items]
        labels = [classes.index(it.label) for it in items]
    else:
        raise ValueError(f"unknown held-out probe {name!r}; known: {', '.join(HELDOUT_PROBES)}")
    return scenes, labels, [HELDOUT_PROBES[name].format(c) for c in classes]


# ----------------------------------------------------------------------------- model
def register_arch(out_dir: Path) -> Path:
    """Write :data:`MODEL_CONFIG` to ``out_dir/ctxbench-toy-clip.json`` and register it
    (with its image tower, :func:`ctxbench.toy_vision.register`)."""
    import open_clip
    toy_vision.register()
    path = Path(out_dir) / CONFIG_FILE
    write_json(path, MODEL_CONFIG)
    open_clip.add_model_config(path)
    return path


#: weight of the auxiliary attribute losses (see :class:`AuxiliaryHeads`)
AUX_WEIGHT = 1.0


class AuxiliaryHeads(torch.nn.Module):
    """Linear read-outs used in training only (not part of the shipped model).

    A shape is a small part of a picture, and at initialisation neither tower encodes
    it, so the contrastive loss of a twin pair (scenes that differ in one shape only)
    starts out symmetric and moves it slowly (the first toy_clip, trained
    contrastively alone, ended with image features from which a linear probe told
    the 8 shapes apart at chance). Three supervised read-outs give the towers a
    direct signal from the first step: which shapes an item's picture contains
    (multi-label, image side), which shapes its text names (multi-label, text side),
    and for a clip the motion group an order-free frame mean can show (slide /
    rise-or-fall / spin / grow-or-shrink; image side). The contrastive loss aligns
    the towers; the read-outs are dropped after training. Inputs are the normalised
    embeddings times 10 (a fixed scale, so the read-outs do not need large weights).
    """

    MOTION_GROUPS = {"slide left": 0, "slide right": 0, "rise": 1, "fall": 1, "spin": 2, "grow": 3,
                     "shrink": 3}

    def __init__(self, dim: int):
        super().__init__()
        self.image_shapes = torch.nn.Linear(dim, len(world.SHAPES))
        self.text_shapes = torch.nn.Linear(dim, len(world.SHAPES))
        self.motion = torch.nn.Linear(dim, 4)

    @staticmethod
    def targets(items: Sequence[toy_data.TrainItem]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shapes = torch.zeros(len(items), len(world.SHAPES))
        named = torch.zeros(len(items), len(world.SHAPES))
        motion = torch.full((len(items),), -100, dtype=torch.long)   # -100: no motion target
        for i, it in enumerate(items):
            for obj in it.scenes[0].objects:
                shapes[i, world.SHAPES.index(obj.shape)] = 1.0
            words = set(it.text.replace(",", " ").replace(";", " ").split())
            for k, shape in enumerate(world.SHAPES):
                named[i, k] = float(shape in words)
            if it.kind == "clip":
                motion[i] = AuxiliaryHeads.MOTION_GROUPS[it.label]
        return shapes, named, motion

    def loss(self, img: torch.Tensor, txt: torch.Tensor, items: Sequence[toy_data.TrainItem]) -> torch.Tensor:
        shapes, named, motion = (t.to(img.device) for t in self.targets(items))
        out = F.binary_cross_entropy_with_logits(self.image_shapes(img * 10), shapes) + \
            F.binary_cross_entropy_with_logits(self.text_shapes(txt * 10), named)
        if (motion >= 0).any():
            out = out + F.cross_entropy(self.motion(img * 10), motion, ignore_index=-100)
        return out


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


def _item_batch(items: Sequence[toy_data.TrainItem], preprocess, tokenizer):
    """(pixels of every frame, tokens, owner): ``owner[f]`` is the item of frame f."""
    frames = [s for it in items for s in it.scenes]
    owner = torch.as_tensor([i for i, it in enumerate(items) for _ in it.scenes])
    pixels, tokens = _batch(frames, [it.text for it in items], preprocess, tokenizer)
    return pixels, tokens, owner


def item_embeddings(frame_emb: torch.Tensor, owner: torch.Tensor, n_items: int) -> torch.Tensor:
    """Per item the mean of its normalised frame embeddings, normalised (how the
    multi_instance_retrieval family embeds a clip for an image-only backend)."""
    frame_emb = F.normalize(frame_emb, dim=-1)
    total = torch.zeros(n_items, frame_emb.shape[1], dtype=frame_emb.dtype, device=frame_emb.device)
    total = total.index_add(0, owner.to(frame_emb.device), frame_emb)
    return F.normalize(total, dim=-1)


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


def _embed_for_eval(model, pixels: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised image and text embeddings in eval mode (training mode restored)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        img = F.normalize(model.encode_image(pixels), dim=-1)
        txt = F.normalize(model.encode_text(tokens), dim=-1)
    model.train(was_training)
    return img.cpu(), txt.cpu()


def _evaluate(model, pixels: torch.Tensor, tokens: torch.Tensor) -> float:
    return recall_at_1(*_embed_for_eval(model, pixels, tokens))


def _zero_shot(model, pixels: torch.Tensor, tokens: torch.Tensor, labels: torch.Tensor) -> float:
    img, txt = _embed_for_eval(model, pixels, tokens)
    return float(((img @ txt.T).argmax(1) == labels).float().mean())


def _heldout_figures(model, heldout: dict) -> dict[str, float]:
    figures = {"R@1": _evaluate(model, *heldout["R@1"])}
    for name in HELDOUT_PROBES:
        figures[name] = _zero_shot(model, *heldout[name])
    return figures


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
        aux = AuxiliaryHeads(MODEL_CONFIG["embed_dim"]).to(device)   # training only, not shipped
        opt = torch.optim.AdamW(_param_groups(model, weight_decay) + _param_groups(aux, weight_decay),
                                lr=lr, betas=(0.9, 0.98), eps=1e-6)
        rng = world.rng_for(DATA_PURPOSE, seed)
        h_scenes, h_texts = heldout_set(seed, n_heldout)
        heldout = {"R@1": tuple(x.to(device) for x in _batch(h_scenes, h_texts, preprocess, tokenizer))}
        for name in HELDOUT_PROBES:
            p_scenes, p_labels, prompts = heldout_probe_set(name, seed, n_heldout)
            pixels, tokens = _batch(p_scenes, prompts, preprocess, tokenizer)
            heldout[name] = (pixels.to(device), tokens.to(device), torch.as_tensor(p_labels))
        log(f"toy_clip: {ARCH}, {n_params:,} parameters; {steps} steps x batch {batch_size}, "
            f"lr {lr}, seed {seed}, {threads} threads; held-out pool {n_heldout}")
        history: list[dict] = []
        t0 = time.perf_counter()
        running = []
        for step in range(steps):
            items = toy_data.sample_batch(rng, batch_size)
            texts = [it.text for it in items]
            pixels, tokens, owner = _item_batch(items, preprocess, tokenizer)
            pixels, tokens = pixels.to(device), tokens.to(device)
            same = torch.as_tensor(np.array(texts)[:, None] == np.array(texts)[None, :]).to(device)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, steps, lr, warmup)
            img = item_embeddings(model.encode_image(pixels), owner, len(items))
            txt = F.normalize(model.encode_text(tokens), dim=-1)
            loss = contrastive_loss(img, txt, model.logit_scale.exp(), same) + \
                AUX_WEIGHT * aux.loss(img, txt, items)
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
                figures = _heldout_figures(model, heldout)
                history.append({"step": step + 1, "loss": loss.item(), "heldout_R@1": figures["R@1"],
                                **{f"heldout_{k}": v for k, v in figures.items() if k != "R@1"},
                                "elapsed_s": round(time.perf_counter() - t0, 1)})
                log(f"step {step + 1}: held-out text->image R@1 {figures['R@1']:.3f} (pool {n_heldout}, "
                    f"chance {1 / n_heldout:.3f}); " + ", ".join(
                        f"{k} {v:.3f}" for k, v in figures.items() if k != "R@1"))
        train_time = time.perf_counter() - t0
        state = _half_state(model)
        shipped = copy.deepcopy(model)   # the held-out figure of the weights as shipped (fp16)
        shipped.load_state_dict(state)
        final = _heldout_figures(shipped, heldout)
        final_r1 = final["R@1"]
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
                         "generator_version": world.GENERATOR_VERSION, "data_version": toy_data.DATA_VERSION,
                         "text_mix": toy_data.TEXT_MIX, "twin_p": toy_data.TWIN_P, "aux_weight": AUX_WEIGHT,
                         "style_weights": toy_data.STYLE_WEIGHTS, "degrade_p": toy_data.DEGRADE_P,
                         "train_time_s": round(train_time, 1),
                         "machine": f"{platform.machine()} {platform.system()}",
                         "torch": torch.__version__, "open_clip": open_clip.__version__},
            "heldout": {"metric": "text->image R@1", "pool": n_heldout, "chance": 1 / n_heldout,
                        "R@1_fp16": final_r1,
                        "zero_shot_fp16": {name: {"value": final[name], "classes": len(heldout[name][1]),
                                               "prompt": prompt} for name, prompt in HELDOUT_PROBES.items()},
                        "history": history},
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
