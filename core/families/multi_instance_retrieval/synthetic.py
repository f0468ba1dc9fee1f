"""Embedded mini version of EPIC-KITCHENS-100 multi-instance retrieval.

"Kitchen clips" drawn from the synthetic world (:mod:`ctxbench.synthetic_world`): a
scene of one or two objects on the ``kitchen counter`` background, the first
object animated by a motion (:data:`world.MOTIONS`). As in EPIC:

- the *verb* of a clip is its motion (verb class = index in :data:`MOTIONS`);
- its *nouns* are the objects drawn, named by shape (noun classes = indices in
  :data:`SHAPES`; the set plays the role of ``all_noun_classes``);
- its narration is built from the verb and the nouns only, e.g. ``"rise the star
  with the circle"`` (the moving object first, the others in alphabetical order),
  so two clips with the same narration have the same verb and noun set;
- the captions are the distinct narrations, each attributed to the first clip
  that carries it (its narration_id), as the official ``create_sentence_df``;
- the relevancy is the official formula, computed by the same function as for
  the real data (:func:`ctxbench.families.multi_instance_retrieval.data.relevancy_from_classes`).

Every clip has its own narration among the captions, so every query of both
directions has an item with R == 1 (no NaN). A clip is ``clip_length`` frames
(``world.clip_scenes``); the evaluator samples ``n_frames`` of them uniformly
with the same rule as for real clips. "spin" is never given to a circle or a ring
(rotation-invariant shapes would make the verb invisible). Clips draw their
randomness from ``rng_for("eval/multi_instance_retrieval", seed)``, disjoint
from every training stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import SYNTH_OPTIONS
from .annotations import relevancy_from_classes
from .clips import sample_frame_indices
from .data import MIRDataset, limit_indices
from ...inputs import ImageRef
from ...synthetic_world import GENERATOR_VERSION, MOTIONS, SHAPES, Scene, clip_scenes, list_phrase, rng_for, \
    sample_scene, scene_ref

KITCHEN_VERSION = "1"
PURPOSE = "eval/multi_instance_retrieval"
#: the "utensils" of the mini kitchen: fewer shapes than the world has, so that
#: narrations repeat across clips (several clips per caption, as in EPIC)
KITCHEN_SHAPES = ("circle", "square", "triangle", "star", "cross")
ROTATION_INVARIANT = ("circle", "ring")


def narration(verb: str, nouns: tuple[str, ...]) -> str:
    """The caption of a clip: verb, the moving object, then the others (sorted)."""
    text = f"{verb} the {nouns[0]}"
    others = sorted(nouns[1:])
    if others:
        text += " with " + list_phrase([f"the {n}" for n in others])
    return text


@dataclass(frozen=True)
class KitchenClip:
    """One synthetic clip: ``clip_length`` scenes of ``motion`` applied to object 0."""

    scene: Scene
    motion: str
    clip_length: int
    size: int

    def frames(self, n: int) -> list[ImageRef]:
        scenes = clip_scenes(self.scene, self.motion, self.clip_length)
        return [scene_ref(scenes[i - 1], self.size) for i in sample_frame_indices(1, self.clip_length, n)]

    @property
    def verb(self) -> str:
        return self.motion

    @property
    def nouns(self) -> tuple[str, ...]:
        return tuple(o.shape for o in self.scene.objects)


def build(n_clips: int = 96, seed: int = 0, clip_length: int = 16, size: int = 64,
          max_objects: int = 2) -> MIRDataset:
    """The embedded dataset (deterministic in its arguments)."""
    if n_clips < 2 or clip_length < 2 or not 1 <= max_objects <= len(KITCHEN_SHAPES):
        raise ValueError("need n_clips >= 2, clip_length >= 2 and 1 <= max_objects <= "
                         f"{len(KITCHEN_SHAPES)}")
    rng = rng_for(PURPOSE, seed)
    clips: list[KitchenClip] = []
    for _ in range(n_clips):
        scene = sample_scene(rng, (1, max_objects), background="kitchen counter", style="flat",
                             texture="plain", lighting="bright", shapes=KITCHEN_SHAPES)
        motions = [m for m in MOTIONS
                   if not (m == "spin" and scene.objects[0].shape in ROTATION_INVARIANT)]
        motion = motions[int(rng.integers(len(motions)))]
        clips.append(KitchenClip(scene, motion, clip_length, size))
    vis_ids = [f"K{seed:02d}_{i:04d}" for i in range(n_clips)]
    texts = [narration(c.verb, c.nouns) for c in clips]
    first: dict[str, int] = {}
    for i, t in enumerate(texts):
        first.setdefault(t, i)
    caption_rows = list(first.values())
    verbs = [MOTIONS.index(c.verb) for c in clips]
    nouns = [[SHAPES.index(n) for n in c.nouns] for c in clips]
    relevancy = relevancy_from_classes(verbs, nouns, [verbs[i] for i in caption_rows],
                                       [nouns[i] for i in caption_rows])
    return MIRDataset(
        name="synthetic_kitchen", vis_ids=vis_ids, txt_ids=[vis_ids[i] for i in caption_rows],
        captions=[texts[i] for i in caption_rows], relevancy=relevancy, clips=clips,
        meta={"generator": f"world/v{GENERATOR_VERSION}+kitchen/v{KITCHEN_VERSION}",
              "verbs": [c.verb for c in clips], "nouns": [list(c.nouns) for c in clips],
              "clip_length": clip_length, "seed": seed})


def load_from_options(options: dict, ctx) -> MIRDataset:
    """The ``synthetic_kitchen_mir`` loader: :func:`build`, then ``--limit`` as for the
    real set (:func:`ctxbench.families.multi_instance_retrieval.data.limit_indices`)."""
    from ...protocol_checks import check_dataset_options
    types = {"n_clips": ("int", 2, None), "seed": ("int", 0, None), "clip_length": ("int", 2, None),
             "size": ("int", 8, None), "max_objects": ("int", 1, len(KITCHEN_SHAPES))}
    ds = build(**check_dataset_options(options, SYNTH_OPTIONS, types,
                                       f"{getattr(ctx, 'task_file', 'task')}: dataset.options"))
    cut = limit_indices(ds.relevancy, getattr(ctx, "limit", None))
    return ds if cut is None else ds.subset(*cut)
