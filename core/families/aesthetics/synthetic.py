"""Embedded aesthetics datasets built from the synthetic world (no data needed).

Quality set (:func:`build_quality`, loader ``synthetic_aesthetics``), an AVA in
miniature. Each image is a world scene whose four quality knobs are degraded by
amounts ``u = (u_contrast, u_noise, u_blur, u_offcentre)`` in [0, 1]:
``contrast = 1 - 0.7 u_c``, ``noise = 0.15 u_n``, ``blur = 2.5 u_b`` px at 64 px,
``offcentre = 0.8 u_o``. Its latent quality depends on the semantic tags, as in the
paper's premise that what makes a picture good depends on its content:

- tag 1 = the background (8 tags): an appeal offset ``BACKGROUND_APPEAL`` in MOS units;
- tag 2 = the rendering style (4 tags; absent for ``p_no_style_tag`` of the images
  without an intent, below): how much each degradation hurts, ``STYLE_WEIGHTS`` (a
  line drawing suffers from blur, a photograph tolerates noise, a flat design needs
  composition, a textured one contrast). The style of an untagged image still
  applies: it is visible.

Latent MOS ``mu = 2.5 + 5 (1 - w . u) + appeal_background`` (``w`` the style's weights). Each image gets
``n ~ U{votes_min..votes_max}`` votes drawn from a discretised Gaussian on 1..10
around ``mu`` (std ``vote_std``), so the MOS carries AVA-like sampling noise and the
vote histogram is a real 10-bin distribution.

Intent tags (``p_intent`` of images, default 0.3): the image was made for a "soft focus"
or "film grain" theme (:data:`INTENTS`); tag 2 names the theme instead of the style, and
the wanted degradation adds ``INTENT_BONUS`` per unit instead of costing its style weight.
Intents are drawn after the scenes, so the pixels do not depend on them: only the tag
tells wanted blur from accidental blur.

Degradation sweep (:func:`build_sweep`, loader ``synthetic_degradation_sweep``): the
stand-in for the paper's CFG experiment (Sugiura & Yamauchi, section 4.2). For each "prompt" (a background, whose
name is the prompt/tag text) ``scenes_per_prompt`` clean scenes are rendered at each
degradation level L (all four knobs at ``u = L``); the parameter is L, so a good
scorer's predictions fall with it (expected Spearman sign -1).

Seeds: streams ``rng_for("eval/aesthetics", seed)`` and ``rng_for("eval/aesthetics_sweep",
seed)``, disjoint from any ``train/`` stream of the embedded model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import (MIN_PER_CELL, MIN_PER_TAG, AestheticsDataset, DataReport, ParamSweepDataset,
                   limit_items)
from .options import SYNTHETIC_QUALITY_OPTIONS, SYNTHETIC_SWEEP_OPTIONS
from ...protocol_checks import check_dataset_options, is_number
from ... import synthetic_world as world

KNOBS = ("contrast", "noise", "blur", "offcentre")
STYLE_WEIGHTS = {            # share of the quality lost per unit of each degradation
    "flat": (0.25, 0.25, 0.10, 0.40),
    "textured": (0.50, 0.20, 0.20, 0.10),
    "line_drawing": (0.15, 0.15, 0.60, 0.10),
    "photo": (0.30, 0.05, 0.35, 0.30),
}
BACKGROUND_APPEAL = {"meadow": 0.3, "ocean": 0.4, "desert": 0.0, "night sky": 0.2,
                     "kitchen counter": -0.4, "studio": -0.2, "forest": 0.1, "snowfield": -0.1}
#: Intent tags: the picture was made for a "soft focus" or "film grain" theme, so the
#: degradation the theme names is wanted: each unit of it adds ``INTENT_BONUS`` of
#: the quality scale instead of costing its style weight. Nothing in the pixels tells
#: an intended blur from an accidental one; only the tag does.
INTENTS = {"soft focus": 2, "film grain": 1}          # tag text -> index of the knob in u
INTENT_BONUS = 0.3
TAG_NAMES: dict[int, str] = {i + 1: b for i, b in enumerate(world.BACKGROUNDS)}
TAG_NAMES.update({len(world.BACKGROUNDS) + 1 + i: world.STYLE_PHRASES[s]
                  for i, s in enumerate(world.STYLES)})
BACKGROUND_TAG = {b: i + 1 for i, b in enumerate(world.BACKGROUNDS)}
STYLE_TAG = {s: len(world.BACKGROUNDS) + 1 + i for i, s in enumerate(world.STYLES)}
INTENT_TAG = {name: len(TAG_NAMES) + 1 + i for i, name in enumerate(INTENTS)}
TAG_NAMES.update({tag: name for name, tag in INTENT_TAG.items()})


def knobs(u: np.ndarray) -> dict[str, float]:
    """Scene knob values for degradations ``u`` (4 numbers in [0, 1])."""
    return {"contrast": round(1.0 - 0.7 * float(u[0]), 4), "noise": round(0.15 * float(u[1]), 4),
            "blur": round(2.5 * float(u[2]), 4), "offcentre": round(0.8 * float(u[3]), 4)}


def latent_mos(u: np.ndarray, styles, backgrounds, intents=None) -> np.ndarray:
    """``2.5 + 5 (1 - w . u) + appeal_background`` for ``u`` [N, 4], ``w`` the style's
    weights, except that an image's intended knob (``intents``: an :data:`INTENTS`
    name or None per image) weighs ``-INTENT_BONUS``."""
    w = np.array([STYLE_WEIGHTS[s] for s in styles])
    for i, name in enumerate(intents if intents is not None else []):
        if name is not None:
            w[i, INTENTS[name]] = -INTENT_BONUS
    appeal = np.array([BACKGROUND_APPEAL[b] for b in backgrounds])
    return 2.5 + 5.0 * (1.0 - (w * np.asarray(u)).sum(axis=1)) + appeal


def draw_votes(rng: np.random.Generator, mu: np.ndarray, n_votes: np.ndarray,
               std: float) -> np.ndarray:
    """Vote counts [N, 10]: ``n_votes`` draws from a Gaussian on 1..10 around ``mu``."""
    k = np.arange(1, 11, dtype=np.float64)
    logits = -((k[None, :] - mu[:, None]) ** 2) / (2 * std ** 2)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return rng.multinomial(n_votes, p).astype(np.float64)


def build_quality(n_images: int = 600, seed: int = 0, size: int = 64, votes_min: int = 60,
                  votes_max: int = 150, vote_std: float = 1.5, p_no_style_tag: float = 0.1,
                  p_intent: float = 0.3, limit: int | None = None) -> AestheticsDataset:
    """The embedded quality set (module docstring). ``meta`` holds each image's
    scene, degradations ``u`` and latent MOS (for oracle backends and tests)."""
    if n_images < 10:
        raise ValueError("n_images must be at least 10")
    if votes_min > votes_max:
        raise ValueError(f"dataset.options: votes_min ({votes_min}) is above votes_max ({votes_max})")
    rng = world.rng_for("eval/aesthetics", seed)
    u = rng.beta(1.2, 1.8, size=(n_images, 4))
    scenes = [world.sample_scene(rng, (1, 3), **knobs(u[i])) for i in range(n_images)]
    styles = [s.style for s in scenes]
    backgrounds = [s.background for s in scenes]
    names = list(INTENTS)
    intent_draw = rng.random(n_images)
    which = rng.integers(0, len(names), size=n_images)
    intents = [names[which[i]] if intent_draw[i] < p_intent else None for i in range(n_images)]
    mu = latent_mos(u, styles, backgrounds, intents)
    n_votes = rng.integers(votes_min, votes_max + 1, size=n_images)
    votes = draw_votes(rng, mu, n_votes, vote_std)
    style_tag = np.array([STYLE_TAG[s] for s in styles])
    style_tag[rng.random(n_images) < p_no_style_tag] = 0
    for i, name in enumerate(intents):
        if name is not None:
            style_tag[i] = INTENT_TAG[name]
    tags = np.stack([np.array([BACKGROUND_TAG[b] for b in backgrounds]), style_tag], axis=1)
    keep, limited = limit_items(tags[:, 0], limit, seed, MIN_PER_TAG)
    report = DataReport()
    if limit is not None:
        report.filter(f"--limit {limit}: images not sampled", n_images - len(keep))
    return AestheticsDataset(
        name=f"synthetic_aesthetics(n={n_images},seed={seed})",
        ids=[f"synth{i:05d}" for i in keep], refs=[world.scene_ref(scenes[i], size) for i in keep],
        votes=votes[keep], tags=tags[keep], tag_names=dict(TAG_NAMES),
        challenges=np.zeros(len(keep), np.int64), challenge_names={},
        split=np.full(len(keep), "", dtype=object), report=report,
        meta={"generator": f"world v{world.GENERATOR_VERSION}", "scenes": [scenes[i] for i in keep],
              "degradation": u[keep].tolist(), "latent": mu[keep].tolist(),
              "intent": [intents[i] for i in keep],
              "style_weights": {k: list(v) for k, v in STYLE_WEIGHTS.items()},
              "background_appeal": dict(BACKGROUND_APPEAL),
              "intent_bonus": INTENT_BONUS,
              "per_item": ["scenes", "degradation", "latent", "intent"],
              **({"limit": limited} if limited else {})})


def build_sweep(n_prompts: int = 4, scenes_per_prompt: int = 8,
                levels: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0), seed: int = 0,
                size: int = 64, limit: int | None = None) -> ParamSweepDataset:
    """The degradation sweep (module docstring): prompt = background name."""
    backgrounds = list(world.BACKGROUNDS)
    if not 1 <= n_prompts <= len(backgrounds):
        raise ValueError(f"n_prompts must be in 1..{len(backgrounds)}")
    if len(levels) < 2:
        raise ValueError("a sweep needs at least two levels")
    rng = world.rng_for("eval/aesthetics_sweep", seed)
    chosen = [backgrounds[i] for i in np.sort(rng.choice(len(backgrounds), n_prompts, replace=False))]
    refs, pids, params, scenes = [], [], [], []
    for bg in chosen:
        for _ in range(scenes_per_prompt):
            base = world.sample_scene(rng, (1, 3), background=bg)
            for level in levels:
                scene = world.Scene(base.objects, base.background, base.texture, base.lighting,
                                    base.style, **knobs(np.full(4, float(level))))
                refs.append(world.scene_ref(scene, size))
                pids.append(bg.replace(" ", "_"))
                params.append(float(level))
                scenes.append(scene)
    keep, limited = limit_items([f"{p}/{v:g}" for p, v in zip(pids, params)], limit, seed,
                                MIN_PER_CELL)
    return ParamSweepDataset(
        name=f"synthetic_degradation_sweep(seed={seed})", refs=[refs[i] for i in keep],
        prompt_ids=[pids[i] for i in keep], params=[params[i] for i in keep],
        prompts={b.replace(" ", "_"): b for b in chosen}, param_name="degradation",
        meta={"scenes": [scenes[i] for i in keep], "expected_sign": -1,
              "generator": f"world v{world.GENERATOR_VERSION}",
              **({"limit": limited} if limited else {})})


#: option -> (kind, low, high) of the synthetic loaders' numeric options (checked and
#: converted by :func:`ctxbench.protocol_checks.check_dataset_options`)
QUALITY_OPTION_TYPES = {"n_images": ("int", 10, None), "seed": ("int", 0, None),
                        "size": ("int", 8, None), "votes_min": ("int", 1, None),
                        "votes_max": ("int", 1, None), "vote_std": ("number", 1e-6, None),
                        "p_no_style_tag": ("number", 0, 1), "p_intent": ("number", 0, 1)}
SWEEP_OPTION_TYPES = {"n_prompts": ("int", 1, len(world.BACKGROUNDS)),
                      "scenes_per_prompt": ("int", 1, None), "seed": ("int", 0, None),
                      "size": ("int", 8, None)}


def load_quality(options: dict[str, Any], ctx) -> AestheticsDataset:
    """Loader ``synthetic_aesthetics``."""
    opts = check_dataset_options(options, SYNTHETIC_QUALITY_OPTIONS, QUALITY_OPTION_TYPES,
                                 f"{ctx.task_file}: dataset.options")
    return build_quality(limit=ctx.limit, **opts)


def load_sweep(options: dict[str, Any], ctx) -> ParamSweepDataset:
    """Loader ``synthetic_degradation_sweep``."""
    where = f"{ctx.task_file}: dataset.options"
    opts = check_dataset_options(options, SYNTHETIC_SWEEP_OPTIONS, SWEEP_OPTION_TYPES, where)
    if "levels" in opts:
        from ...errors import DatasetFormatError
        levels = opts["levels"]
        if not isinstance(levels, (list, tuple)) or not all(is_number(x, True) for x in levels):
            raise DatasetFormatError(f"{where}.levels: expected a list of numbers, got {levels!r} "
                                     f"({SYNTHETIC_SWEEP_OPTIONS['levels']})")
        opts["levels"] = tuple(float(x) for x in levels)
    return build_sweep(limit=ctx.limit, **opts)
