"""Embedded mini dataset of the context_retrieval family, drawn from the synthetic world.

Each group is a "movie": ``images_per_group`` scenes of 2-3 objects and
``stories_per_group`` stories of different genres, each with a protagonist whose
name is unique in the dataset. Queries are a pure function of (scene, story, level),
see :func:`query_text`:

- L1 (objects): the objects (sorted) and the background - the same for every story,
  unique in the pool.
- L2 (visual focus): the genre picks the object in focus (romance: warmest colour,
  suspense: darkest, comedy: largest, horror: smallest, adventure: highest, tragedy:
  lowest, mystery: coolest, fantasy: brightest); the query names its colour and
  shape with a genre phrase. Scenes are drawn so that the stories of a group focus
  different objects of every image.
- L3 (situation/intent): protagonist + genre intent + the focused object's shape.
- L4 (atmosphere/effect): genre mood + protagonist + the image's lighting.

The assignment pi gives each image one story of its group (at least two stories
used per group, at most ``len(LIGHTING)`` images per story). Scenes are resampled
until every assigned query is unique in the pool at its level, so an oracle that
knows the scene attributes and the context reaches Recall@1 = 1 at every level. An
oracle that sees the image but not the context cannot tell apart the images that
could produce the query under *some* story: ``meta["no_context_ceiling"]`` is its
expected Recall@1 with uniform random tie-breaking (L1 = 1; L3, L4 well below).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import LEVELS, ContextRetrievalDataset, CRGroup, CRImage, Story, limit_groups
from ...synthetic_world import (COLOURS, GENERATOR_VERSION, LIGHTING, SIZES, WARMTH, Scene, article,
                    describe_object, list_phrase, rng_for, sample_scene, scene_ref)

STYLES_USED = ("flat", "textured", "photo")


def _lum(colour: str) -> float:
    r, g, b = COLOURS[colour]
    return 0.299 * r + 0.587 * g + 0.114 * b


# genre -> (focus rule key: the object with the smallest key is in focus; ties -> first)
FOCUS_RULES = {
    "romance": lambda o: -WARMTH[o.colour],
    "suspense": lambda o: _lum(o.colour),
    "comedy": lambda o: -SIZES.index(o.size),
    "horror": lambda o: SIZES.index(o.size),
    "adventure": lambda o: o.y,
    "tragedy": lambda o: -o.y,
    "mystery": lambda o: WARMTH[o.colour],
    "fantasy": lambda o: -_lum(o.colour),
}
GENRES = tuple(FOCUS_RULES)
FOCUS_PHRASES = {"romance": "glows warmly at the heart of the frame",
                 "suspense": "lurks half-hidden in the shadows",
                 "comedy": "hogs the frame like a clown",
                 "horror": "waits, small and ominous, in the corner of the eye",
                 "adventure": "stands high above everything, like a summit",
                 "tragedy": "sinks low, heavy with loss",
                 "mystery": "sits coldly apart, hiding a clue",
                 "fantasy": "shines as if enchanted"}
INTENTS = {"romance": "waits longingly for", "suspense": "secretly watches",
           "comedy": "clumsily tries to balance", "horror": "flees in panic from",
           "adventure": "sets out to reach", "tragedy": "mourns beside",
           "mystery": "searches for clues around", "fantasy": "casts a spell on"}
MOODS = {"romance": ("tender, wistful", "longing"), "suspense": ("tense, uneasy", "dread"),
         "comedy": ("light, playful", "mischief"), "horror": ("eerie, menacing", "terror"),
         "adventure": ("bold, restless", "excitement"), "tragedy": ("heavy, mournful", "grief"),
         "mystery": ("hushed, puzzling", "curiosity"), "fantasy": ("dreamlike, enchanted", "wonder")}
LIGHT_MOODS = {"bright": "bright daylight", "dim": "dim gloom", "dusk": "fading dusk",
               "night": "darkness of night"}
SYNOPSES = {"romance": "{name} falls for someone warm and bright and waits for every sign of them.",
            "suspense": "{name} suspects that something in the shadows is watching.",
            "comedy": "{name} keeps getting tangled up with the biggest thing around.",
            "horror": "{name} is haunted by something small that will not go away.",
            "adventure": "{name} wants to climb to the highest point and see beyond it.",
            "tragedy": "{name} has lost everything and keeps looking down.",
            "mystery": "{name} follows a cold trail of clues nobody else notices.",
            "fantasy": "{name} discovers that the brightest things hold magic."}
TITLES = {"romance": "Waiting for {name}", "suspense": "{name} Is Watched", "comedy": "{name}'s Big Mess",
          "horror": "Do Not Look, {name}", "adventure": "{name} and the Summit",
          "tragedy": "The Last Days of {name}", "mystery": "The {name} Files", "fantasy": "{name} and the Light"}
FIRST_NAMES = ("Mara", "Theo", "Ines", "Kofi", "Lena", "Ravi", "Yuki", "Omar", "Sofia", "Bram",
               "Nadia", "Elio", "Hana", "Jonas", "Priya", "Milo", "Zara", "Felix", "Aiko", "Luca",
               "Greta", "Tariq", "Vera", "Anton", "Leila", "Hugo", "Mina", "Oskar", "Rosa", "Emil",
               "Talia", "Ivo", "Noor", "Pablo", "Sanne", "Kai", "Lotte", "Rafael", "Ayla", "Nils")
LAST_NAMES = ("Quill", "Marsh", "Vale", "Stone", "Reyes", "Okafor", "Lind", "Sato", "Moreau", "Kern")


def focus_object(scene: Scene, genre: str):
    """The object of ``scene`` that a story of ``genre`` focuses on."""
    rule = FOCUS_RULES[genre]
    return min(scene.objects, key=rule)   # min is stable: ties go to the first object


def query_text(scene: Scene, story_attrs: dict, level: str) -> str:
    """The query for an (image, story, level); ``story_attrs`` has ``genre`` and
    ``protagonist``. A pure function: the test oracle calls it for any pair."""
    genre, name = story_attrs["genre"], story_attrs["protagonist"]
    if level == "L1":
        objs = sorted(describe_object(o) for o in scene.objects)
        return f"{list_phrase([article(o) for o in objs])} on {article(scene.background)} background"
    focus = focus_object(scene, genre)
    if level == "L2":
        return f"the {focus.colour} {focus.shape} {FOCUS_PHRASES[genre]}"
    if level == "L3":
        return f"{name} {INTENTS[genre]} the {focus.shape}"
    if level == "L4":
        adjectives, noun = MOODS[genre]
        return f"a {adjectives} atmosphere: {name}'s {noun} in the {LIGHT_MOODS[scene.lighting]}"
    raise ValueError(f"unknown level {level!r}; expected one of {LEVELS}")


def _names(n: int, rng: np.random.Generator, full_names: bool = False) -> list[str]:
    """``n`` distinct protagonist names: first names while they suffice (unless
    ``full_names``), else "First Last"."""
    pool = list(FIRST_NAMES) if n <= len(FIRST_NAMES) and not full_names else \
        [f"{f} {l}" for l in LAST_NAMES for f in FIRST_NAMES]
    if n > len(pool):
        raise ValueError(f"at most {len(pool)} stories are supported, asked for {n}")
    return [pool[i] for i in rng.permutation(len(pool))[:n]]


def _assignment(rng, n_images: int, story_ids: list[str]) -> list[str]:
    cap = len(LIGHTING)
    if n_images > cap * len(story_ids):
        raise ValueError(f"{n_images} images per group need more than {len(story_ids)} stories "
                         f"(at most {cap} images per story)")
    need_two = len(story_ids) >= 2 and n_images >= 2
    while True:
        pick = [story_ids[int(i)] for i in rng.integers(len(story_ids), size=n_images)]
        if max(pick.count(s) for s in story_ids) <= cap and (len(set(pick)) >= 2 or not need_two):
            return pick


EVAL_PURPOSE = "eval/context_retrieval"


def build(n_groups: int = 8, images_per_group: int = 5, stories_per_group: int = 2,
          seed: int = 0, size: int = 64, purpose: str = EVAL_PURPOSE,
          full_names: bool = False) -> ContextRetrievalDataset:
    """Build the dataset (deterministic in its arguments); see the module docstring.
    ``purpose`` names the random stream (:func:`ctxbench.synthetic_world.rng_for`):
    evaluation uses :data:`EVAL_PURPOSE`; training code passes its own purpose, so no
    evaluation movie is ever drawn in training whatever the integer seeds.
    ``full_names`` draws "First Last" protagonists even when first names suffice (more
    than 40 stories always use them)."""
    if stories_per_group > len(GENRES):
        raise ValueError(f"stories_per_group must be <= {len(GENRES)} (one genre per story)")
    rng = rng_for(purpose, seed)
    names = _names(n_groups * stories_per_group, rng, full_names)
    stories: dict[str, Story] = {}
    story_attrs: dict[str, dict] = {}
    images: list[CRImage] = []
    groups: list[CRGroup] = []
    assignment: dict[str, str] = {}
    queries: dict[tuple[str, str, str], str] = {}
    scenes: dict[str, Scene] = {}
    used: dict[str, set[str]] = {level: set() for level in LEVELS}
    for g in range(n_groups):
        gid = f"g{g:02d}"
        genres = [GENRES[int(i)] for i in rng.permutation(len(GENRES))[:stories_per_group]]
        sids = [f"{gid}_s{k}" for k in range(stories_per_group)]
        for k, (sid, genre) in enumerate(zip(sids, genres)):
            name = names[g * stories_per_group + k]
            stories[sid] = Story(sid, TITLES[genre].format(name=name),
                                 f"A {genre} story. " + SYNOPSES[genre].format(name=name))
            story_attrs[sid] = {"genre": genre, "protagonist": name}
        pick = _assignment(rng, images_per_group, sids)
        lights_left = {sid: list(LIGHTING) for sid in sids}
        iids = []
        for j, sid in enumerate(pick):
            iid = f"{gid}_i{j}"
            for attempt in range(2000):
                scene = sample_scene(rng, (2, 3), lighting=lights_left[sid], style=STYLES_USED)
                foci = [focus_object(scene, story_attrs[s]["genre"]) for s in sids]
                if len(scene.objects) >= len(sids) and len(set(foci)) < len(sids):
                    continue   # stories of the group must focus different objects
                texts = {lv: query_text(scene, story_attrs[sid], lv) for lv in LEVELS}
                if all(texts[lv] not in used[lv] for lv in LEVELS):
                    break
            else:
                raise RuntimeError(f"could not draw a unique scene for {iid}; use fewer images")
            lights_left[sid].remove(scene.lighting)
            for lv in LEVELS:
                used[lv].add(texts[lv])
            scenes[iid] = scene
            assignment[iid] = sid
            for s in sids:
                for lv in LEVELS:
                    queries[(iid, s, lv)] = query_text(scene, story_attrs[s], lv)
            images.append(CRImage(iid, gid, scene_ref(scene, size)))
            iids.append(iid)
        groups.append(CRGroup(gid, tuple(iids), tuple(sids)))

    for lv in LEVELS:   # the guarantee the family's oracle tests rely on
        assigned = [queries[(i.id, assignment[i.id], lv)] for i in images]
        assert len(set(assigned)) == len(assigned), f"duplicate {lv} query under pi"
    meta: dict[str, Any] = {"generator_version": GENERATOR_VERSION, "seed": seed, "size": size,
                            "source": "ctxbench synthetic world", "scenes": scenes,
                            "story_attrs": story_attrs}
    dataset = ContextRetrievalDataset("synthetic", images, stories, groups, assignment, queries, meta)
    meta["no_context_ceiling"] = no_context_ceiling(dataset)
    return dataset


def no_context_ceiling(dataset: ContextRetrievalDataset) -> dict[str, float]:
    """Per level, the mean over evaluation queries of 1/k, k = number of pool images
    that could produce the query under *any* story of the dataset: the expected
    Recall@1 of an oracle that sees the image but not the context."""
    scenes, attrs = dataset.meta["scenes"], dataset.meta["story_attrs"]
    out = {}
    for lv in LEVELS:
        producible = [{query_text(scenes[im.id], a, lv) for a in attrs.values()} for im in dataset.images]
        evals = dataset.evaluation_queries(lv)
        out[lv] = float(np.mean([1.0 / sum(q in p for p in producible) for _, q in evals]))
    return out


def load_from_options(options: dict, ctx) -> ContextRetrievalDataset:
    """The ``synthetic_context_retrieval`` loader: :func:`build` with the task's options,
    then ``--limit`` (whole groups)."""
    return limit_groups(build(**options), getattr(ctx, "limit", None))
