"""The synthetic world: determinism, distinctness, seed streams, text side."""

import numpy as np
import pytest

from ctxbench.inputs import pil_key
from ctxbench import synthetic_world as world
from ctxbench.synthetic_world import (GENERATOR_VERSION, MOTIONS, STYLES, Scene, SceneObject, caption,
                                  describe_object, render, render_clip, rng_for, sample_scene,
                                  scene_ref, tags)


def _scenes(n=20, purpose="eval/test_world", seed=0, **kw):
    rng = rng_for(purpose, seed)
    return [sample_scene(rng, (1, 3), **kw) for _ in range(n)]


def test_vocabularies():
    assert len(world.SHAPES) >= 8 and len(world.COLOURS) >= 8 and len(world.BACKGROUNDS) >= 6
    assert set(world.WARM_COLOURS) | set(world.COOL_COLOURS) <= set(world.COLOURS)
    assert not set(world.WARM_COLOURS) & set(world.COOL_COLOURS)
    assert STYLES == ("flat", "textured", "line_drawing", "photo") and len(MOTIONS) >= 6


def test_render_is_deterministic_bytes():
    for scene in _scenes(12, noise=0.05, blur=(0.0, 1.0), contrast=(0.5, 1.5), offcentre=0.3):
        a, b = render(scene), render(scene)
        assert a.mode == "RGB" and a.size == (64, 64)
        assert a.tobytes() == b.tobytes()
    # the same parameters from an independent construction draw the same pixels
    s1 = Scene((SceneObject("star", "red", "large", 0.5, 0.5),), "meadow", "plain", "dim", "photo", noise=0.02)
    s2 = Scene((SceneObject("star", "red", "large", 0.5, 0.5),), "meadow", "plain", "dim", "photo", noise=0.02)
    assert s1.params_key() == s2.params_key() and render(s1).tobytes() == render(s2).tobytes()
    assert GENERATOR_VERSION in s1.params_key()


def test_sampling_is_deterministic_per_purpose_and_seed():
    assert _scenes(5) == _scenes(5)
    assert _scenes(5) != _scenes(5, seed=1)
    assert _scenes(5) != _scenes(5, purpose="train/test_world")
    a = rng_for("eval/context_retrieval", 0).random(8)
    b = rng_for("train/context_retrieval", 0).random(8)
    assert not np.allclose(a, b)
    with pytest.raises(ValueError):
        rng_for("eval/x", -1)


def test_different_scenes_differ():
    scenes = list(dict.fromkeys(_scenes(40)))
    keys = {pil_key(render(s)) for s in scenes}
    assert len(keys) == len(scenes)
    base = Scene((SceneObject("circle", "red", "medium", 0.4, 0.4),), "studio", "plain", "bright", "flat")
    variants = [base] + [Scene(base.objects, base.background, base.texture, base.lighting, st)
                         for st in STYLES if st != "flat"]
    variants += [Scene(base.objects, "studio", "plain", "bright", "flat", contrast=0.5),
                 Scene(base.objects, "studio", "plain", "bright", "flat", noise=0.05),
                 Scene(base.objects, "studio", "plain", "bright", "flat", blur=1.5),
                 Scene(base.objects, "studio", "plain", "bright", "flat", offcentre=0.5),
                 Scene(base.objects, "studio", "striped", "bright", "flat"),
                 Scene(base.objects, "studio", "plain", "night", "flat")]
    assert len({pil_key(render(v)) for v in variants}) == len(variants)
    assert len({v.params_key() for v in variants}) == len(variants)


def test_constraints_are_honoured():
    for s in _scenes(15, style="line_drawing", background=("ocean", "desert"), lighting="dusk",
                     shapes=("star", "ring", "cross"), colours=("red", "blue", "green")):
        assert s.style == "line_drawing" and s.lighting == "dusk" and s.background in ("ocean", "desert")
        assert all(o.shape in ("star", "ring", "cross") and o.colour in ("red", "blue", "green")
                   for o in s.objects)
        assert len({o.shape for o in s.objects}) == len(s.objects)   # distinct by default
    with pytest.raises(TypeError):
        sample_scene(rng_for("eval/x", 0), unknown_constraint=1)


def test_clip_frames_move_and_are_deterministic():
    scene = Scene((SceneObject("square", "blue", "medium", 0.5, 0.5),), "studio", "plain", "bright", "flat")
    for motion in MOTIONS:
        frames = render_clip(scene, motion, n_frames=6)
        assert len(frames) == 6
        assert frames[0].tobytes() != frames[-1].tobytes(), motion
        assert [f.tobytes() for f in frames] == [f.tobytes() for f in render_clip(scene, motion, n_frames=6)]


def test_scene_ref_key_and_pixels():
    scene = _scenes(1)[0]
    ref, ref2 = scene_ref(scene), scene_ref(scene)
    assert ref.key == ref2.key and ref.key != scene_ref(scene, size=32).key
    assert ref.load().tobytes() == render(scene).tobytes()


def test_text_side_mentions_attributes():
    obj = SceneObject("circle", "red", "large", 0.3, 0.3)
    assert describe_object(obj) == "large red circle"
    scene = Scene((obj, SceneObject("star", "blue", "small", 0.7, 0.7)), "meadow", "plain", "dim", "flat")
    text = caption(scene)
    assert text.startswith("a large red circle and a small blue star on a meadow background")
    assert "dim" in text and "flat" in text
    assert {"circle", "star", "red", "blue", "meadow", "dim", "flat"} <= set(tags(scene))
    for s in _scenes(10):
        c = caption(s)
        assert all(describe_object(o) in c for o in s.objects) and s.background in c
