"""What the embedded model toy_clip is trained on: image-text items from the synthetic world.

Every family's embedded task is a facet of one world (:mod:`ctxbench.synthetic_world`);
a model that has learned the world can show each family's finding. An item is one
picture, or the sampled frames of a clip, with one text. Its *kind*
(:data:`TEXT_MIX`) says which facet it teaches:

- ``caption``, ``objects``, ``object``, ``tags``, ``setting``, ``quality``: scenes of
  1-3 objects described by world captions, L1-form object lists, single objects, tag
  lists, light/style/colour-temperature phrases and picture-quality words for scenes
  whose quality knobs are degraded (context_retrieval, image_text_retrieval,
  aesthetics);
- ``shape``: a single object named by its shape only ("a drawing of a star"), in any
  style (domain_adaptation's classes);
- ``mood``: a scene drawn by the mood rule of the sentiment world (warm colours in
  bright light for positive emotions, cool colours in dim light for negative ones, a
  signature shape per emotion; :mod:`ctxbench.families.metadata_sentiment.synthetic`)
  with its mood phrase ("a calm, peaceful moment"), alone or after the scene's
  caption, as the sentiment captions are written. The emotion *names* never appear:
  the model learns what a mood looks like and how it is described, not the word
  "contentment", so zero-shot prompts built from class names stay weak while probes
  on its features and the captions carry the signal (metadata_sentiment);
- ``clip``: a motion clip (:func:`ctxbench.synthetic_world.clip_scenes`) seen through
  :data:`CLIP_FRAMES` uniformly sampled frames, with its kitchen narration
  ("rise the star with the circle"; multi_instance_retrieval). The clip's embedding
  is the mean of its normalised frame embeddings, as the family embeds clips for a
  backend without a video encoder; an order-free mean cannot tell "slide left" from
  "slide right" (the same frames in reverse), so those pairs stay confusable.

*Shape twins.* Colour, size and background already tell most scenes of a batch
apart, so a contrastive model can ignore shape (the first toy_clip did: its image
features did not separate shapes linearly). With probability :data:`TWIN_P` a picture
item is followed by its twin: the same scene with one object's shape changed and the
text of the same form drawn again, so only shape separates the pair.

*Styles.* Line drawings are never drawn in training (:data:`STYLE_WEIGHTS`), as
sketches are rare in web image-text data: the model meets that style first at
evaluation, a genuine style gap for domain_adaptation to measure and for its
caption-guided adaptation to close.

All randomness comes from the generator passed in (``rng_for("train/toy_clip", seed)``
in training), so no evaluation stream (``eval/...``) is replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import synthetic_world as world

#: bump when what an item contains changes (recorded in the model card)
DATA_VERSION = "2"
#: share of each kind of training item
TEXT_MIX = {"caption": 0.12, "objects": 0.18, "object": 0.10, "tags": 0.05, "setting": 0.05,
            "quality": 0.10, "shape": 0.12, "mood": 0.12, "clip": 0.16}
#: probability that a picture item (not mood, not clip) is followed by its shape twin
TWIN_P = 0.5
#: training styles and their weights (line drawings rarest, see the module docstring)
STYLE_WEIGHTS = {"flat": 0.4, "textured": 0.3, "line_drawing": 0.0, "photo": 0.3}
#: probability that a training scene has degraded quality knobs, and the knob ranges
#: (those of the aesthetics family's embedded data)
DEGRADE_P = 0.3
KNOB_RANGES = {"contrast": (0.3, 1.0), "noise": (0.0, 0.15), "blur": (0.0, 2.5), "offcentre": (0.0, 0.8)}
#: frames per clip item and the clip length they are sampled from (the embedded
#: multi_instance_retrieval task's n_frames and clip_length)
CLIP_FRAMES, CLIP_LENGTH = 4, 16
#: mood items: the look of the other polarity and the signature shape, as probabilities
MOOD_POLARITY_RELIABILITY, MOOD_SHAPE_RELIABILITY = 0.95, 0.8
SHAPE_FORMS = ("a {}", "a picture of a {}", "a drawing of a {}", "{}", "an image of a {}")
MOOD_FORMS = ("{mood}", "{caption}; {mood}")


@dataclass(frozen=True)
class TrainItem:
    """One training pair: ``scenes`` is one picture, or the sampled frames of a clip."""

    scenes: tuple[world.Scene, ...]
    text: str
    kind: str
    label: str | None = None   # the emotion of a mood item, the motion of a clip item


def _style(rng: np.random.Generator) -> str:
    styles = list(STYLE_WEIGHTS)
    p = np.array([STYLE_WEIGHTS[s] for s in styles])
    return styles[int(rng.choice(len(styles), p=p / p.sum()))]


def sample_training_scene(rng: np.random.Generator, n_objects=(1, 3)) -> world.Scene:
    """A scene of ``n_objects`` objects in a :data:`STYLE_WEIGHTS` style; with
    probability :data:`DEGRADE_P` each quality knob is independently degraded
    (probability 1/2) within its range."""
    scene = world.sample_scene(rng, n_objects, style=_style(rng))
    if rng.random() < DEGRADE_P:
        knobs = {}
        for knob, (lo, hi) in KNOB_RANGES.items():
            if rng.random() < 0.5:
                knobs[knob] = round(float(rng.uniform(lo, hi)), 3)
        if knobs:
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


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def describe(scene: world.Scene, kind: str, rng: np.random.Generator) -> str:
    """A text of ``kind`` for a picture ``scene`` (kinds other than mood and clip)."""
    if kind == "caption":
        return world.caption(scene)
    if kind == "objects":
        return f"{objects_phrase(scene, sort=bool(rng.random() < 0.7))} on {world.article(scene.background)} background"
    if kind == "object":
        obj = scene.objects[int(rng.integers(len(scene.objects)))]
        return _pick(rng, (world.article(world.describe_object(obj)), f"the {obj.colour} {obj.shape}",
                           world.article(obj.shape), world.article(f"{obj.colour} {obj.shape}"),
                           f"{world.article(obj.colour)} object"))
    if kind == "shape":
        return _pick(rng, SHAPE_FORMS).format(scene.objects[0].shape)
    if kind == "tags":
        return ", ".join(world.tags(scene))
    if kind == "setting":
        temp = colour_temperature(scene)
        forms = [f"{objects_phrase(scene)} in {world.LIGHTING_PHRASES[scene.lighting]}",
                 f"a scene in {world.LIGHTING_PHRASES[scene.lighting]}, {world.STYLE_PHRASES[scene.style]}",
                 f"{world.article(world.STYLE_PHRASES[scene.style])} of {objects_phrase(scene)}"]
        if temp:
            forms.append(f"{temp} objects in {world.LIGHTING_PHRASES[scene.lighting]}")
        return _pick(rng, forms)
    if kind == "quality":
        words = quality_words(scene)
        quality = ", ".join(words) if words else "sharp, clean, well-framed"
        return f"{world.article(quality)} picture of {objects_phrase(scene)}"
    raise ValueError(f"unknown picture text kind {kind!r}")


def shape_twin(scene: world.Scene, rng: np.random.Generator) -> world.Scene:
    """``scene`` with one object's shape replaced by a shape the scene does not have."""
    index = int(rng.integers(len(scene.objects)))
    free = [s for s in world.SHAPES if s not in {o.shape for o in scene.objects}]
    objects = list(scene.objects)
    objects[index] = replace(objects[index], shape=_pick(rng, free))
    return replace(scene, objects=tuple(objects))


def mood_item(rng: np.random.Generator) -> TrainItem:
    """A scene drawn by the sentiment world's mood rule, with an emotion text."""
    from .families.metadata_sentiment.synthetic import (MOOD, NEGATIVE_LOOK, POSITIVE_LOOK, FI_EMOTIONS,
                                                        POSITIVE_EMOTIONS, mood_scene)
    emotion = _pick(rng, FI_EMOTIONS)
    positive = (emotion in POSITIVE_EMOTIONS) == bool(rng.random() < MOOD_POLARITY_RELIABILITY)
    scene = mood_scene(rng, emotion, POSITIVE_LOOK if positive else NEGATIVE_LOOK, MOOD_SHAPE_RELIABILITY,
                       style=_style(rng))
    text = _pick(rng, MOOD_FORMS).format(emotion=emotion, mood=MOOD[emotion], caption=world.caption(scene))
    return TrainItem((scene,), text, "mood", emotion)


def clip_item(rng: np.random.Generator) -> TrainItem:
    """A motion clip of 1-2 objects (a kitchen counter half of the time), its sampled
    frames and its narration."""
    from .families.multi_instance_retrieval.clips import sample_frame_indices
    from .families.multi_instance_retrieval.synthetic import ROTATION_INVARIANT, narration
    kitchen = rng.random() < 0.5
    scene = world.sample_scene(rng, (1, 2), style="flat" if kitchen else _style(rng),
                               background="kitchen counter" if kitchen else None)
    motions = [m for m in world.MOTIONS if not (m == "spin" and scene.objects[0].shape in ROTATION_INVARIANT)]
    motion = _pick(rng, motions)
    frames = world.clip_scenes(scene, motion, CLIP_LENGTH)
    picked = tuple(frames[i - 1] for i in sample_frame_indices(1, CLIP_LENGTH, CLIP_FRAMES))
    return TrainItem(picked, narration(motion, tuple(o.shape for o in scene.objects)), "clip", motion)


def _kind(rng: np.random.Generator) -> str:
    kinds = list(TEXT_MIX)
    p = np.array([TEXT_MIX[k] for k in kinds])
    return kinds[int(rng.choice(len(kinds), p=p / p.sum()))]


def sample_batch(rng: np.random.Generator, batch_size: int) -> list[TrainItem]:
    """``batch_size`` items, kinds from :data:`TEXT_MIX`, picture items followed by a
    shape twin with probability :data:`TWIN_P` (room permitting)."""
    items: list[TrainItem] = []
    while len(items) < batch_size:
        kind = _kind(rng)
        if kind == "mood":
            items.append(mood_item(rng))
            continue
        if kind == "clip":
            items.append(clip_item(rng))
            continue
        scene = sample_training_scene(rng, 1 if kind == "shape" else (1, 3))
        text_seed = int(rng.integers(2**31))
        items.append(TrainItem((scene,), describe(scene, kind, np.random.default_rng(text_seed)), kind))
        if len(items) < batch_size and rng.random() < TWIN_P:
            twin = shape_twin(scene, rng)
            items.append(TrainItem((twin,), describe(twin, kind, np.random.default_rng(text_seed)), kind))
    return items
