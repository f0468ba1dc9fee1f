"""Embedded mini dataset of the domain_adaptation family, drawn from the synthetic world.

Domains are the world's rendering STYLES (flat, textured, line_drawing, photo): the
same object classes drawn in different styles, the style shift TRUST adapts across
(DomainNet's clipart/painting/real/sketch, in miniature). The class of an image is
the shape of its single object; colour, size, position, background, texture and
lighting vary at random and are not tied to the class.

Each image carries a caption and tags of a given *quality* (drawn per image from a
mix, ``caption_quality``), so text-guided adaptation has informative and misleading
text to cope with:

- ``full``: the world's caption of the scene (names the shape);
- ``partial``: the same caption with the shape replaced by "object" (no class
  evidence: a certainty weight should discount it);
- ``wrong``: the caption of the same scene with another shape (a confidently wrong
  caption, as noisy web text);
- ``unrelated``: the caption of an independent random scene (noise; it names the
  right shape by chance, 1 time in ``len(classes)``).

``meta`` keeps the scene of every image and of every caption, so a test-side oracle
can check each property above.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import numpy as np

from .data import DomainDataset, DomainSplit, apply_limit
from ...synthetic_world import GENERATOR_VERSION, SHAPES, STYLES, Scene, caption, rng_for, sample_scene, scene_ref, tags

QUALITIES = ("full", "partial", "wrong", "unrelated")
DEFAULT_QUALITY = {"full": 0.6, "partial": 0.2, "wrong": 0.1, "unrelated": 0.1}
DEFAULT_PER_CLASS = {"train": 10, "val": 4, "test": 6}
PURPOSE = "eval/domain_adaptation"


def _mix(value: Any, domain: str) -> dict[str, float]:
    """A quality mix for ``domain``: one mix for all domains, or {domain: mix}."""
    if value is None:
        mix = dict(DEFAULT_QUALITY)
    elif isinstance(value, dict) and domain in value and isinstance(value[domain], dict):
        mix = dict(value[domain])
    elif isinstance(value, dict) and all(k in QUALITIES for k in value):
        mix = dict(value)
    else:
        raise ValueError(f"caption_quality must map {list(QUALITIES)} to weights, or domain -> such "
                         f"a map (no entry for {domain!r}); got {value!r}")
    bad = [k for k in mix if k not in QUALITIES]
    if bad or any(float(v) < 0 for v in mix.values()) or sum(float(v) for v in mix.values()) <= 0:
        raise ValueError(f"caption_quality for {domain!r}: weights must be >= 0 over {list(QUALITIES)} "
                         f"with a positive sum; got {mix!r}")
    total = sum(float(v) for v in mix.values())
    return {q: float(mix.get(q, 0.0)) / total for q in QUALITIES}


def _without_shape(text: str, shape: str) -> str:
    return re.sub(rf"\b{re.escape(shape)}\b", "object", text)


def caption_for(scene: Scene, quality: str, rng: np.random.Generator,
                classes: tuple[str, ...]) -> tuple[str, tuple[str, ...], Scene]:
    """(caption, tags, scene the text describes) for an image of ``scene``."""
    obj = scene.objects[0]
    if quality == "full":
        return caption(scene), tuple(tags(scene)), scene
    if quality == "partial":
        return (_without_shape(caption(scene), obj.shape),
                tuple(t for t in tags(scene) if t != obj.shape), scene)
    if quality == "wrong":
        others = [s for s in classes if s != obj.shape]
        wrong = replace(scene, objects=(replace(obj, shape=others[int(rng.integers(len(others)))]),))
        return caption(wrong), tuple(tags(wrong)), wrong
    if quality == "unrelated":
        other = sample_scene(rng, n_objects=1, shapes=classes)
        return caption(other), tuple(tags(other)), other
    raise ValueError(f"unknown caption quality {quality!r}; known: {QUALITIES}")


def build(domains=STYLES, classes=SHAPES, per_class: dict[str, int] | None = None,
          caption_quality: Any = None, size: int = 64, seed: int = 0) -> DomainDataset:
    """The embedded dataset: for each domain (style), split and class, ``per_class[split]``
    single-object scenes of that shape in that style, each with a caption of a quality
    drawn from the domain's mix. Deterministic in ``seed``; each domain has its own
    random stream (``eval/domain_adaptation/<domain>``), so adding a domain leaves the
    others unchanged."""
    domains, classes = tuple(domains), tuple(classes)
    bad = [d for d in domains if d not in STYLES] + [c for c in classes if c not in SHAPES]
    if bad:
        raise ValueError(f"unknown domains/classes {bad}; domains are world STYLES {STYLES}, "
                         f"classes world SHAPES {SHAPES}")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError("classes: at least two distinct shapes")
    per_class = {**DEFAULT_PER_CLASS, **(per_class or {})}
    out: dict[str, dict[str, DomainSplit]] = {}
    scenes: dict[str, Scene] = {}
    caption_scenes: dict[str, Scene] = {}
    mixes: dict[str, dict[str, float]] = {}
    for dom in domains:
        mix = mixes[dom] = _mix(caption_quality, dom)
        rng = rng_for(f"{PURPOSE}/{dom}", seed)
        out[dom] = {}
        for split in ("train", "val", "test"):
            n = int(per_class[split])
            if n <= 0:
                continue
            labels = np.repeat(np.arange(len(classes)), n)
            quality = rng.choice(QUALITIES, size=len(labels), p=[mix[q] for q in QUALITIES])
            refs, caps, tag_list, ids = [], [], [], []
            for i, (lab, q) in enumerate(zip(labels.tolist(), quality.tolist())):
                scene = sample_scene(rng, n_objects=1, style=dom, shapes=(classes[lab],))
                text, tg, described = caption_for(scene, q, rng, classes)
                item_id = f"{dom}/{split}/{i:04d}"
                scenes[item_id], caption_scenes[item_id] = scene, described
                refs.append(scene_ref(scene, size))
                caps.append(text)
                tag_list.append(tg)
                ids.append(item_id)
            out[dom][split] = DomainSplit(refs, labels, caps, tag_list, ids, quality=list(quality))
    ds = DomainDataset("synthetic_styles", list(classes), out,
                       {"scenes": scenes, "caption_scenes": caption_scenes, "quality_mix": mixes,
                        "generator_version": GENERATOR_VERSION, "seed": seed, "size": size})
    ds.validate()
    return ds


def load_synthetic(options: dict, ctx=None) -> DomainDataset:
    """The ``synthetic_domain`` loader: :func:`build` from the task's options
    (``per_class_train/val/test`` -> ``per_class``); ``--limit``: data.apply_limit."""
    opts = dict(options)
    per_class = {split: int(opts.pop(f"per_class_{split}")) for split in ("train", "val", "test")
                 if f"per_class_{split}" in opts}
    ds = build(per_class=per_class, **opts)
    if ctx is not None and ctx.limit:
        apply_limit(ds, ctx.limit, ctx.seed)
    return ds
