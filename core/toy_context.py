"""The embedded context-aware model ``toy_ctx``: toy_clip that learned to read a story.

toy_clip (:mod:`ctxbench.toy`) takes no context, so on its own it cannot show the
finding of context-dependent retrieval (Tsutsumi & Kohita, "Same image, different
meaning"): that handing the model the story changes what it retrieves at the
context-dependent levels L2-L4. ``toy_ctx`` is the smallest honest model that can:

- **Towers.** toy_clip's image and text towers, frozen: ``v(I)`` and ``t(x)``.
- **Entity channel** (what lets the model *read* a story): a text's bag of token
  ids, each token a fixed random unit code (near-orthogonal, regenerated from the
  seed) weighted by a learned per-token salience, summed and soft-normalised
  (``x / max(|x|, 1)``): ``e(x)``. Training raises the weight of the tokens that tie
  a query to its story (protagonists' names) and leaves function words near zero, so
  ``e(q) . e(C)`` measures how much a query and a story are about the same people.
- **Context fusion** (learned late fusion; ctxbench's own design, not the paper's
  VLM prompt), with ``[a; b]`` a normalised concatenation:
  ``phi(I) = [v(I); 0]``, ``phi(I, C) = [v(I); e(C)]`` (the image carries its story's
  entities), ``psi(q) = [t(q); e(q)]``,
  ``psi(q, C) = [t(q) + m (f(t(q), t(C)) + g); soft(e(q) + e(C))]`` with the overlap
  ``m = e(q) . e(C)``, ``f(x, c) = mlp([x, c, x * c])`` (two layers, GELU, last layer
  zero at start) and ``g`` a learned direction that lets the overlap move the query
  towards every image. A story changes a query only as far as they share entities,
  so an object list (L1) or a query about another protagonist is left as it is.
  Because a story is embedded once and fused afterwards, a query costs one text
  pass however many candidate stories it is scored with.

Training data: movies of the context_retrieval family's generator drawn with
``purpose = "train/toy_ctx"`` (:func:`ctxbench.families.context_retrieval.synthetic.build`),
a fresh set of movies at every step; evaluation movies come from
``eval/context_retrieval``, an independent stream, so none is seen in training. The
held-out figures use ``train/toy_ctx/heldout``.

Loss: the paper's retrieval setting trained directly. For a batch of movies, every
assigned query of every level is scored against every image of the batch with the
paper's eq. 2 (the query side fused with the *candidate's* story), in each of the
four injection patterns (no_ctx, query_ctx, image_ctx, both_ctx), and the loss is
the mean cross-entropy of the correct image, summed over patterns; so the model is
taught to keep L1 (where context is irrelevant) while using the story at L2-L4.
A sparsity term (``sparsity`` x the mean entity norm of the queries) keeps the
salience of tokens that tie nothing together (function words, object words) near
zero, so a context-free query has next to no entity vector.
AdamW (CLIP's betas), weight decay on matrices only, linear warm-up then cosine
decay, as :mod:`ctxbench.toy`.

Outputs (:func:`train_toy_context`), written atomically: ``toy_ctx.safetensors``
(the trained tensors only, float16: token salience, entity scale, gate direction,
fusion) and ``card.json`` (base model and its sha256,
seeds, steps, held-out Recall@1 per level and pattern, sha256 of the weights).
Given (seed, steps, batch, lr, threads) training is bit-for-bit repeatable on one
machine (seeded streams, ``torch.use_deterministic_algorithms``).
"""

from __future__ import annotations

import hashlib
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .io.atomic import write_bytes, write_json
from . import synthetic_world as world
from . import toy

WEIGHTS_FILE = "toy_ctx.safetensors"
CARD_FILE = "card.json"
CARD_VERSION = 1
DATA_PURPOSE = "train/toy_ctx"
HELDOUT_PURPOSE = "train/toy_ctx/heldout"
PATTERNS = ("no_ctx", "query_ctx", "image_ctx", "both_ctx")
IMAGE_FUSED = {"image_ctx", "both_ctx"}
TEXT_FUSED = {"query_ctx", "both_ctx"}
#: toy_clip parameters fine-tuned (and shipped) here; the rest stay toy_clip's
CONTEXT_METHOD = "learned late fusion + entity channel over frozen toy_clip towers (ctxbench toy_ctx)"
ENTITY_DIM = 64
#: held-out movies: the embedded task's size (50 x 5 images), so its figures are comparable
HELDOUT_MOVIES = 50


class ContextFusion(nn.Module):
    """``mlp([x, c, x * c])`` for unit rows ``x`` (embedding) and ``c`` (context): the
    correction a context makes to ``x``; the last layer starts at zero."""

    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3 * dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([x, c, x * c], dim=-1))


def soft_unit(x: torch.Tensor) -> torch.Tensor:
    """``x / max(|x|, 1)`` per row: a text whose tokens carry little entity weight (an
    object list) keeps a small entity vector instead of being blown up to unit length."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1.0)


def entity_codes(vocab_size: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Fixed random unit code per token id (near-orthogonal), regenerated from the seed."""
    gen = torch.Generator().manual_seed(int(seed))
    return F.normalize(torch.randn(vocab_size, dim, generator=gen), dim=-1)


class ToyContextModel(nn.Module):
    """toy_clip's frozen towers plus an entity channel and the query-side context fusion
    (see the module docstring)."""

    def __init__(self, clip: nn.Module, dim: int, vocab_size: int, entity_dim: int = ENTITY_DIM,
                 code_seed: int = 0):
        super().__init__()
        self.clip = clip
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.register_buffer("codes", entity_codes(vocab_size, entity_dim, code_seed), persistent=False)
        self.token_weight = nn.Parameter(torch.full((vocab_size,), -2.0))
        self.entity_scale = nn.Parameter(torch.tensor(1.0))
        self.gate_direction = nn.Parameter(torch.zeros(dim))
        self.text_fusion = ContextFusion(dim)

    def image(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip.encode_image(pixels), dim=-1)

    def text(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(unit dense text embedding, unit entity vector) of tokenized strings."""
        with torch.no_grad():   # the towers are frozen
            dense = F.normalize(self.clip.encode_text(tokens), dim=-1)
        weights = F.softplus(self.token_weight[tokens]) * (tokens > 0)
        return dense, soft_unit((weights[..., None] * self.codes[tokens]).sum(1))

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The tensors this module trains (what ``toy_ctx.safetensors`` holds)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("clip.")}


def _cat(dense: torch.Tensor, entity: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return F.normalize(torch.cat([dense, scale * entity], dim=-1), dim=-1)


def embed_image(model: ToyContextModel, image: torch.Tensor, context=None) -> torch.Tensor:
    """phi(I) = [v; 0] or phi(I, C) = [v; e(C)] (unit rows; ``context`` is a (dense,
    entity) pair of per-row tensors): the image carries its story's entities."""
    if context is None:
        zeros = image.new_zeros(image.shape[0], model.codes.shape[1])
        return _cat(image, zeros, model.entity_scale)
    return _cat(image, context[1], model.entity_scale)


def embed_text(model: ToyContextModel, text, context=None) -> torch.Tensor:
    """psi(q) = [t(q); e(q)] or
    psi(q, C) = [t(q) + (e(q).e(C)) (f(t(q), t(C)) + g); soft_unit(e(q) + e(C))]
    (unit rows; ``text``/``context`` are (dense, entity) pairs of per-row tensors). The
    story changes the query only as far as the two share entities: a query about
    nobody in the story (an object list, or another protagonist's story) is left as
    it is, so context cannot blur a context-free query."""
    q_dense, q_ent = text
    if context is None:
        return _cat(q_dense, q_ent, model.entity_scale)
    c_dense, c_ent = context
    match = (q_ent * c_ent).sum(-1, keepdim=True)
    dense = q_dense + match * (model.text_fusion(q_dense, c_dense) + model.gate_direction)
    return _cat(dense, soft_unit(q_ent + c_ent), model.entity_scale)


def pattern_scores(model: ToyContextModel, images: torch.Tensor, queries, contexts,
                   context_of_image: torch.Tensor, pattern: str) -> torch.Tensor:
    """[Q, N] cosine scores of queries against N candidate images under one injection
    pattern; the query side takes each *candidate's* context (eq. 2). ``queries`` and
    ``contexts`` are (dense, entity) pairs from :meth:`ToyContextModel.text`."""
    if pattern in IMAGE_FUSED:
        img = embed_image(model, images, tuple(x[context_of_image] for x in contexts))
    else:
        img = embed_image(model, images)
    if pattern not in TEXT_FUSED:
        return embed_text(model, queries) @ img.T
    n_q, n_c = queries[0].shape[0], contexts[0].shape[0]
    pairs_q = tuple(x.repeat_interleave(n_c, dim=0) for x in queries)     # row q * n_c + c
    pairs_c = tuple(x.repeat(n_q, 1) for x in contexts)
    psi = embed_text(model, pairs_q, pairs_c).reshape(n_q, n_c, -1)
    return torch.einsum("qnd,nd->qn", psi[:, context_of_image], img)


# ----------------------------------------------------------------------------- data
def movie_batch(purpose: str, seed: int, n_groups: int, full_names: bool):
    """One batch of movies: (images, texts of the stories, context index per image,
    list of (level, target index, query))."""
    from .families.context_retrieval.data import LEVELS
    from .families.context_retrieval.synthetic import build
    ds = build(n_groups=n_groups, images_per_group=5, stories_per_group=2, seed=seed,
               purpose=purpose, full_names=full_names)
    contexts = [ds.stories[ds.assignment[im.id]].context_text() for im in ds.images]
    unique = list(dict.fromkeys(contexts))
    index = [unique.index(c) for c in contexts]
    queries = [(level, t, q) for level in LEVELS for t, q in ds.evaluation_queries(level)]
    return [im.ref.load() for im in ds.images], unique, index, queries


def _encode_batch(model, preprocess, tokenizer, batch, device):
    pil, stories, index, queries = batch
    with torch.no_grad():
        images = model.image(torch.stack([preprocess(im) for im in pil]).to(device))
    dense, entity = model.text(tokenizer([q for _, _, q in queries] + stories).to(device))
    n_q = len(queries)
    return images, (dense[:n_q], entity[:n_q]), (dense[n_q:], entity[n_q:]), \
        torch.tensor(index, device=device), \
        torch.tensor([t for _, t, _ in queries], device=device)


def heldout_recall(model, preprocess, tokenizer, batch, device) -> dict[str, float]:
    """Recall@1 per ``level/pattern`` on a held-out batch of movies."""
    was = model.training
    model.eval()
    with torch.no_grad():
        images, q, c, index, targets = _encode_batch(model, preprocess, tokenizer, batch, device)
        levels = np.array([lv for lv, _, _ in batch[3]])
        out = {}
        for pattern in PATTERNS:
            hits = (pattern_scores(model, images, q, c, index, pattern).argmax(1) == targets).cpu().numpy()
            for lv in sorted(set(levels)):
                out[f"{lv}/{pattern}"] = float(hits[levels == lv].mean())
    model.train(was)
    return out


# ----------------------------------------------------------------------------- training
def load_base(base_dir: Path, device: str):
    """toy_clip from ``base_dir`` (its card checked), with its preprocess and tokenizer."""
    import open_clip
    card = toy.verify_card(base_dir)
    toy.toy_vision.register()   # toy_clip's image tower is a timm model of ctxbench's own
    open_clip.add_model_config(base_dir / toy.CONFIG_FILE)
    clip, _, preprocess = open_clip.create_model_and_transforms(
        toy.ARCH, pretrained=str(base_dir / card["weights"]["file"]), device=device)
    return clip, preprocess, open_clip.get_tokenizer(toy.ARCH), card


def train_toy_context(out_dir: str | Path, base_dir: str | Path, seed: int = 0, steps: int = 400,
                      n_groups: int = 16, lr: float = 1e-2, fusion_lr: float = 1e-3,
                      weight_decay: float = 0.1, scale: float = 50.0, sparsity: float = 0.5, threads: int = 2,
                      eval_every: int = 100, device: str = "cpu",
                      log: Callable[[str], None] = lambda s: print(s, flush=True)) -> dict:
    """Fine-tune toy_clip from ``base_dir`` into ``toy_ctx`` and write weights and card
    to ``out_dir``; returns the card (see the module docstring)."""
    from safetensors.torch import save as st_save

    out, base_dir = Path(out_dir), Path(base_dir)
    out.mkdir(parents=True, exist_ok=True)
    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        clip, preprocess, tokenizer, base_card = load_base(base_dir, device)
        config = base_card["architecture"]["config"]
        model = ToyContextModel(clip, int(config["embed_dim"]), int(config["text_cfg"]["vocab_size"]),
                                code_seed=seed).to(device)
        trained = [(n, p) for n, p in model.named_parameters() if not n.startswith("clip.")]
        entity = [p for n, p in trained if "fusion." not in n]
        fusion = [p for n, p in trained if "fusion." in n]
        groups = []
        for params, group_lr in ((entity, lr), (fusion, fusion_lr)):
            decay = [p for p in params if p.ndim >= 2]
            groups += [{"params": decay, "weight_decay": weight_decay, "base_lr": group_lr},
                       {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0, "base_lr": group_lr}]
        opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)
        warmup = max(1, steps // 20)
        rng = world.rng_for(DATA_PURPOSE, seed)
        held = movie_batch(HELDOUT_PURPOSE, seed, HELDOUT_MOVIES, full_names=True)
        log(f"toy_ctx: training {sum(p.numel() for _, p in trained):,} parameters over frozen toy_clip; "
            f"{steps} steps x {n_groups} movies, seed {seed}, {threads} threads")
        model.train()
        model.clip.eval()
        history, running, t0 = [], [], time.perf_counter()
        for step in range(steps):
            batch = movie_batch(DATA_PURPOSE, int(rng.integers(2**31)), n_groups,
                                full_names=bool(rng.random() < 0.5))
            images, q, c, index, targets = _encode_batch(model, preprocess, tokenizer, batch, device)
            loss = sum(F.cross_entropy(scale * pattern_scores(model, images, q, c, index, p), targets)
                       for p in PATTERNS) / len(PATTERNS)
            loss = loss + sparsity * q[1].norm(dim=-1).mean()   # queries carry few entities
            for g in opt.param_groups:
                g["lr"] = toy._lr_at(step, steps, g["base_lr"], warmup)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running.append(loss.item())
            if (step + 1) % eval_every == 0 or step == steps - 1:
                r1 = heldout_recall(model, preprocess, tokenizer, held, device)
                history.append({"step": step + 1, "loss": float(np.mean(running)), "heldout_R@1": r1,
                                "elapsed_s": round(time.perf_counter() - t0, 1)})
                running = []
                log(f"step {step + 1}/{steps} loss {history[-1]['loss']:.3f} {time.perf_counter() - t0:.0f}s  "
                    + "  ".join(f"{k} {v:.2f}" for k, v in r1.items()))
        train_time = time.perf_counter() - t0
        state = {k: v.detach().cpu().to(torch.float16).contiguous().clone()
                 for k, v in model.trained_state().items()}
        model.load_state_dict(state, strict=False)   # the held-out figure of the shipped fp16 tensors
        final = heldout_recall(model, preprocess, tokenizer, held, device)
        blob = st_save(state, metadata={"format": "pt"})
        write_bytes(out / WEIGHTS_FILE, blob)
        card = {
            "card_version": CARD_VERSION, "name": "toy_ctx",
            "base": {"name": "toy_clip", "weights_sha256": base_card["weights"]["sha256"]},
            "architecture": {"context_method": CONTEXT_METHOD, "fusion_hidden": 256,
                             "embed_dim": int(config["embed_dim"]),
                             "vocab_size": int(config["text_cfg"]["vocab_size"]),
                             "entity_dim": ENTITY_DIM, "entity_code_seed": seed,
                             "trained_parameters": sum(p.numel() for _, p in trained)},
            "weights": {"file": WEIGHTS_FILE, "dtype": "float16", "bytes": len(blob),
                        "sha256": hashlib.sha256(blob).hexdigest()},
            "training": {"seed": seed, "steps": steps, "movies_per_step": n_groups, "lr": lr,
                         "fusion_lr": fusion_lr, "weight_decay": weight_decay, "scale": scale,
                         "sparsity": sparsity,
                         "warmup_steps": warmup, "threads": threads, "data_purpose": DATA_PURPOSE,
                         "heldout_purpose": HELDOUT_PURPOSE, "generator_version": world.GENERATOR_VERSION,
                         "train_time_s": round(train_time, 1),
                         "machine": f"{platform.machine()} {platform.system()}", "torch": torch.__version__},
            "heldout": {"metric": "Recall@1 per level/pattern", "movies": HELDOUT_MOVIES, "pool": len(held[0]),
                        "R@1_fp16": final, "history": history},
        }
        write_json(out / CARD_FILE, card)
        log(f"done in {train_time:.0f}s; wrote {out / WEIGHTS_FILE} ({len(blob) / 1e6:.1f} MB), {out / CARD_FILE}")
        return card
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)


def verify_card(directory: str | Path) -> dict:
    """``card.json`` of a toy_ctx directory, its weights' sha256 and size checked
    (:func:`ctxbench.toy.verify_card`)."""
    return toy.verify_card(directory, retrain="ctxbench toy train-context")
