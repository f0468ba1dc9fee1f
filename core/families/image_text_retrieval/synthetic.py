"""Embedded image-text retrieval set, drawn from the synthetic world.

``n_images`` scenes of 1-3 objects in every style, background, texture and
lighting of :mod:`ctxbench.synthetic_world`, each with ``captions_per_image``
captions (at most 3), written the way different annotators would describe one
picture, all derived from the scene's attributes:

1. the world caption, e.g. ``"a large red circle and a small blue star on a dotted
   meadow background, dim light, flat style"`` (:func:`ctxbench.synthetic_world.caption`);
2. the objects sorted, then the background: ``"a large red circle and a small blue
   star on a meadow background"``;
3. the style, the objects in scene order and the lighting: ``"a flat style of a
   large red circle and a small blue star in dim light"``.

Scenes are redrawn until the first caption is unique in the set, so an oracle
that reads every attribute reaches Recall@1 = 1 in both directions with the full
captions; the shorter ones may be shared by two images (as real captions are).
Everything is a pure function of the options: scenes come from
``rng_for("eval/image_text_retrieval", seed)``, a stream disjoint from every
training stream.
"""

from __future__ import annotations

from ...synthetic_world import (GENERATOR_VERSION, LIGHTING_PHRASES, STYLE_PHRASES, Scene, article,
                                caption, describe_object, list_phrase, rng_for, sample_scene,
                                scene_ref)
from .data import ImageTextDataset, limit_images

PURPOSE = "eval/image_text_retrieval"
MAX_CAPTIONS = 3
MAX_TRIES = 1000   # redraws of one scene whose full caption is already taken


def captions_of(scene: Scene) -> list[str]:
    """The three captions of a scene (module docstring), most specific first."""
    described = [describe_object(o) for o in scene.objects]
    in_order = list_phrase([article(d) for d in described])
    return [caption(scene),
            f"{list_phrase([article(d) for d in sorted(described)])} on "
            f"{article(scene.background)} background",
            f"{article(STYLE_PHRASES[scene.style])} of {in_order} in {LIGHTING_PHRASES[scene.lighting]}"]


def build(n_images: int = 200, captions_per_image: int = 3, seed: int = 0,
          size: int = 64) -> ImageTextDataset:
    """The embedded dataset (deterministic in its arguments)."""
    if n_images < 1 or not 1 <= captions_per_image <= MAX_CAPTIONS or size < 8 or seed < 0:
        raise ValueError(f"need n_images >= 1, 1 <= captions_per_image <= {MAX_CAPTIONS}, "
                         f"size >= 8 and seed >= 0; got {n_images}, {captions_per_image}, {size}, {seed}")
    rng = rng_for(PURPOSE, seed)
    scenes: list[Scene] = []
    used: set[str] = set()
    for i in range(n_images):
        for _ in range(MAX_TRIES):
            scene = sample_scene(rng, (1, 3))
            if caption(scene) not in used:
                break
        else:
            raise RuntimeError(f"could not draw a scene with a new caption for image {i}; "
                               "use fewer images")
        used.add(caption(scene))
        scenes.append(scene)
    texts, owners = [], []
    for i, scene in enumerate(scenes):
        for text in captions_of(scene)[:captions_per_image]:
            texts.append(text)
            owners.append(i)
    ids = [f"synth_{seed:02d}_{i:04d}" for i in range(n_images)]
    return ImageTextDataset(
        "synthetic", ids, [scene_ref(s, size) for s in scenes], texts, owners,
        meta={"generator": f"world/v{GENERATOR_VERSION}", "seed": seed, "size": size,
              "source": "ctxbench synthetic world", "scenes": scenes})


def load_from_options(options: dict, ctx) -> ImageTextDataset:
    """The ``synthetic_image_text`` loader: :func:`build` with the task's options, then
    ``--limit`` (the first N images with their captions)."""
    from . import SYNTH_OPTIONS
    from ...protocol_checks import check_dataset_options
    types = {"n_images": ("int", 1, None), "captions_per_image": ("int", 1, MAX_CAPTIONS),
             "seed": ("int", 0, None), "size": ("int", 8, None)}
    ds = build(**check_dataset_options(options, SYNTH_OPTIONS, types,
                                       f"{getattr(ctx, 'task_file', 'task')}: dataset.options"))
    return limit_images(ds, getattr(ctx, "limit", None))
