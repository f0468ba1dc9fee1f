"""Embedded mini dataset of the metadata_sentiment family, drawn from the synthetic world.

Eight classes, FI's Mikels emotions. The *mood is drawn in the picture*: positive
emotions (amusement, awe, contentment, excitement) get warm-coloured objects under
mostly bright light, negative ones (anger, disgust, fear, sadness) cool-coloured
objects under dim, dusk or night light (``polarity_reliability`` of the scenes
follow this rule, the rest swap to the other polarity's look). Within a polarity the
picture says little: each emotion has a *signature shape* that is its scene's first
object with probability ``shape_reliability``.

Metadata fields, of deliberately different reliability (the situation SentiFormer's
adaptive relevance learning is for):

- ``caption`` (informative): the world's caption of the scene plus a mood clause
  that names the true emotion's mood with probability ``caption_reliability`` and a
  uniformly drawn emotion's mood otherwise; missing for a ``missing_rate`` share of
  images;
- ``tags`` (partially informative): the detector-style object tags of the scene's
  shapes (scores 0.5-1.0), one emotion-associated object (the true emotion's with
  probability ``tag_reliability``, else a random emotion's; score 0.45-0.95) and one
  decoy object of a random emotion scored below the 0.4 threshold (0.05-0.35), which
  the default threshold removes;
- ``scene`` (pure noise): the scene's background name, drawn independently of the
  emotion.

Items are drawn from ``rng_for("eval/metadata_sentiment", seed)``, so no training
stream of the embedded model replays them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .data import (DEFAULT_TAG_THRESHOLD, FI_EMOTIONS, POSITIVE_EMOTIONS,
                                  SentimentDataset, parse_tags, to_polarity)
from ... import synthetic_world as world

PURPOSE = "eval/metadata_sentiment"
SIGNATURE_SHAPE = {"amusement": "star", "anger": "triangle", "awe": "hexagon",
                   "contentment": "circle", "disgust": "ring", "excitement": "cross",
                   "fear": "diamond", "sadness": "square"}
MOOD = {"amusement": "a funny, playful moment", "anger": "a furious, hostile moment",
        "awe": "a majestic, breathtaking sight", "contentment": "a calm, peaceful moment",
        "disgust": "a gross, repulsive sight", "excitement": "a thrilling, energetic moment",
        "fear": "a scary, threatening moment", "sadness": "a gloomy, sorrowful moment"}
MOOD_OBJECT = {"amusement": "balloon", "anger": "fist", "awe": "mountain", "contentment": "teacup",
               "disgust": "garbage", "excitement": "fireworks", "fear": "spider",
               "sadness": "tombstone"}
POSITIVE_LOOK = {"colours": world.WARM_COLOURS, "lighting": ("bright", "bright", "bright", "dusk")}
NEGATIVE_LOOK = {"colours": world.COOL_COLOURS, "lighting": ("dim", "night", "dusk")}


def mood_scene(rng: np.random.Generator, emotion: str, look: dict, shape_reliability: float,
               style: str | None = None) -> world.Scene:
    """A scene of ``emotion`` with ``look`` (module docstring); ``style`` fixes the
    rendering style (None: any, as in the embedded dataset)."""
    lighting = look["lighting"][int(rng.integers(len(look["lighting"])))]
    scene = world.sample_scene(rng, (1, 3), colours=look["colours"], lighting=lighting, style=style)
    if rng.random() < shape_reliability:   # the signature shape becomes the first object
        first = scene.objects[0]
        others = tuple(o for o in scene.objects[1:] if o.shape != SIGNATURE_SHAPE[emotion])
        objs = (world.SceneObject(SIGNATURE_SHAPE[emotion], first.colour, first.size, first.x, first.y),
                *others)
        scene = replace(scene, objects=objs)
    return scene


def build(n_per_class: int = 50, seed: int = 0, size: int = 64, caption_reliability: float = 0.8,
          tag_reliability: float = 0.5, polarity_reliability: float = 0.9,
          shape_reliability: float = 0.5, missing_rate: float = 0.1,
          tag_threshold: float = DEFAULT_TAG_THRESHOLD, polarity: bool = False) -> SentimentDataset:
    """The embedded dataset (``8 * n_per_class`` images; no own splits)."""
    for name, p in (("caption_reliability", caption_reliability), ("tag_reliability", tag_reliability),
                    ("polarity_reliability", polarity_reliability),
                    ("shape_reliability", shape_reliability), ("missing_rate", missing_rate)):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"dataset.options.{name} must be in [0, 1], got {p}")
    if int(n_per_class) < 3:
        raise ValueError("dataset.options.n_per_class must be at least 3 (train/val/test per class)")
    rng = world.rng_for(PURPOSE, int(seed))
    emotions = FI_EMOTIONS
    images, labels, captions, scenes, objects, scene_list = [], [], [], [], [], []
    for k in np.repeat(np.arange(len(emotions)), int(n_per_class)):
        emotion = emotions[k]
        positive = emotion in POSITIVE_EMOTIONS
        if rng.random() >= polarity_reliability:
            positive = not positive
        scene = mood_scene(rng, emotion, POSITIVE_LOOK if positive else NEGATIVE_LOOK, shape_reliability)
        images.append(world.scene_ref(scene, size))
        scene_list.append(scene)
        labels.append(int(k))
        mood = emotion if rng.random() < caption_reliability else emotions[int(rng.integers(8))]
        captions.append(None if rng.random() < missing_rate
                        else f"{world.caption(scene)}; {MOOD[mood]}")
        tag_mood = emotion if rng.random() < tag_reliability else emotions[int(rng.integers(8))]
        decoy = emotions[int(rng.integers(8))]
        raw = [[o.shape, round(float(rng.uniform(0.5, 1.0)), 3)] for o in scene.objects]
        raw.append([MOOD_OBJECT[tag_mood], round(float(rng.uniform(0.45, 0.95)), 3)])
        raw.append([MOOD_OBJECT[decoy], round(float(rng.uniform(0.05, 0.35)), 3)])
        objects.append(parse_tags(raw, float(tag_threshold), f"synthetic item {len(labels) - 1}"))
        scenes.append(scene.background)
    ds = SentimentDataset(
        name="metadata_sentiment_synthetic", classes=emotions, images=images,
        labels=np.asarray(labels, dtype=np.int64), text={"caption": captions, "scene": scenes},
        objects=objects, splits=None,
        meta={"source": "synthetic world", "generator_version": world.GENERATOR_VERSION,
              "seed": int(seed), "n_per_class": int(n_per_class), "size": int(size),
              "reliability": {"caption": caption_reliability, "tags": tag_reliability,
                              "scene": 0.0, "image_polarity": polarity_reliability,
                              "image_signature_shape": shape_reliability},
              "missing_rate": missing_rate, "tag_threshold": float(tag_threshold),
              "scenes": tuple(scene_list)})   # the generator's scenes (for oracle tests)
    return to_polarity(ds) if polarity else ds
