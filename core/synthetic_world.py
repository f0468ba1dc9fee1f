"""The synthetic world: one family-agnostic generator of scenes, pictures and text.

Every family's embedded mini dataset is built from this module, and the small embedded model is trained on it. A :class:`Scene` is a few
:class:`SceneObject` (shape, colour, size, position) on a background with a texture,
a lighting, a rendering style (the domains of the domain-adaptation family) and
four quality knobs (contrast, noise, blur, off-centre framing: the aesthetics
family). :func:`render` draws it deterministically; :func:`render_clip` animates one
object with a :data:`MOTIONS` verb; :func:`caption`, :func:`tags` and
:func:`describe_object` give the text side from the same attributes.

Seeds. :func:`rng_for` derives a random stream from a *purpose* string and a seed
(``rng_for("eval/context_retrieval", 0)``, ``rng_for("train/toy_clip", 0)``). The
purpose is hashed into the entropy of a ``numpy.random.SeedSequence``, so streams of
different purposes are independent whatever their integer seeds: training data
(purposes starting ``train/``) never replays an evaluation stream (``eval/``).

Determinism. Pixels are a pure function of ``(scene.params_key(), size)``: the
only randomness in drawing (sensor noise) is seeded from that key. Bump
:data:`GENERATOR_VERSION` whenever drawing changes; it is part of every key.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

GENERATOR_VERSION = "1"

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon")
COLOURS = {"red": (220, 40, 40), "orange": (245, 140, 30), "yellow": (240, 220, 50),
           "pink": (240, 120, 180), "brown": (130, 80, 40), "green": (40, 170, 60),
           "blue": (40, 80, 220), "purple": (140, 60, 190), "cyan": (40, 200, 220),
           "navy": (20, 30, 110)}
WARM_COLOURS = ("red", "orange", "yellow", "pink", "brown")
COOL_COLOURS = ("green", "blue", "purple", "cyan", "navy")
#: warmth in [0, 1] (1 = warmest); used to rank objects, e.g. by story genres.
WARMTH = {"red": 1.0, "orange": 0.9, "pink": 0.8, "yellow": 0.7, "brown": 0.6,
          "purple": 0.4, "green": 0.3, "cyan": 0.2, "blue": 0.1, "navy": 0.0}
SIZES = ("small", "medium", "large")
SIZE_RADIUS = {"small": 0.09, "medium": 0.14, "large": 0.20}   # fraction of image side
#: background -> (upper colour, lower colour): a horizon splits scenes that have one.
BACKGROUNDS = {"meadow": ((170, 210, 240), (110, 180, 80)), "ocean": ((180, 220, 245), (30, 90, 160)),
               "desert": ((230, 210, 170), (225, 185, 120)), "night sky": ((15, 20, 50), (30, 35, 70)),
               "kitchen counter": ((200, 195, 185), (150, 140, 130)), "studio": ((225, 225, 225), (205, 205, 205)),
               "forest": ((60, 110, 60), (70, 60, 40)), "snowfield": ((200, 215, 235), (245, 245, 250))}
TEXTURES = ("plain", "striped", "dotted", "checkered")
#: lighting -> per-channel gain applied to the background (objects get its square root).
LIGHTING = {"bright": (1.0, 1.0, 1.0), "dim": (0.6, 0.6, 0.6), "dusk": (0.85, 0.6, 0.45),
            "night": (0.3, 0.35, 0.55)}
STYLES = ("flat", "textured", "line_drawing", "photo")
MOTIONS = ("slide left", "slide right", "rise", "fall", "spin", "grow", "shrink")


@dataclass(frozen=True)
class SceneObject:
    """One object. ``x, y`` in [0, 1] (y grows downwards); ``angle`` (degrees) and
    ``scale`` are only changed by motions (clips)."""
    shape: str
    colour: str
    size: str
    x: float
    y: float
    angle: float = 0.0
    scale: float = 1.0

    def key(self) -> str:
        return f"{self.shape}:{self.colour}:{self.size}:{self.x!r}:{self.y!r}:{self.angle!r}:{self.scale!r}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: str
    texture: str
    lighting: str
    style: str
    contrast: float = 1.0   # 1 = unchanged; <1 flattens around the mean
    noise: float = 0.0      # std of Gaussian noise, as a fraction of full range
    blur: float = 0.0       # Gaussian blur radius in pixels at 64 px (scales with size)
    offcentre: float = 0.0  # 0..1: objects pushed towards the lower-right corner

    def params_key(self) -> str:
        """Canonical string that determines the pixels (with the render size)."""
        objs = ";".join(o.key() for o in self.objects)
        return (f"world/v{GENERATOR_VERSION}|{objs}|{self.background}|{self.texture}|{self.lighting}"
                f"|{self.style}|{float(self.contrast)!r}|{float(self.noise)!r}|{float(self.blur)!r}"
                f"|{float(self.offcentre)!r}")


def rng_for(purpose: str, seed: int) -> np.random.Generator:
    """Independent random stream for ``(purpose, seed)`` (see module docstring)."""
    if not purpose or int(seed) < 0:
        raise ValueError("rng_for needs a non-empty purpose and a seed >= 0")
    digest = hashlib.sha256(f"ctxbench.world\0{purpose}".encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4)]
    return np.random.default_rng(np.random.SeedSequence(words + [int(seed)]))


def _pick(rng: np.random.Generator, choices: Sequence) -> Any:
    return choices[int(rng.integers(len(choices)))]


def _choices(value, default: Sequence) -> Sequence:
    """A constraint: a single value fixes it, a sequence restricts it."""
    if value is None:
        return tuple(default)
    return (value,) if isinstance(value, str) else tuple(value)


def _knob(rng, value, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, (tuple, list)):
        return float(rng.uniform(value[0], value[1]))
    return float(value)


def sample_scene(rng: np.random.Generator, n_objects: int | tuple[int, int] = (1, 3), *,
                 style=None, background=None, texture=None, lighting=None, shapes=None,
                 colours=None, sizes=None, contrast=None, noise=None, blur=None,
                 offcentre=None, distinct: bool = True) -> Scene:
    """Sample a scene. ``n_objects`` is a count or an inclusive range. Categorical
    constraints take a value (fixed) or a sequence (allowed values); quality knobs take
    a float or a ``(lo, hi)`` range. With ``distinct`` objects differ in shape and in
    colour, so "the red one" or "the star" names one object. Positions are kept apart."""
    lo, hi = (n_objects, n_objects) if isinstance(n_objects, int) else n_objects
    n = int(rng.integers(lo, hi + 1))
    shape_pool, colour_pool = list(_choices(shapes, SHAPES)), list(_choices(colours, COLOURS))
    if distinct and (n > len(shape_pool) or n > len(colour_pool)):
        raise ValueError(f"cannot draw {n} distinct objects from {shape_pool} x {colour_pool}")
    objects: list[SceneObject] = []
    for _ in range(n):
        shape, colour = _pick(rng, shape_pool), _pick(rng, colour_pool)
        if distinct:
            shape_pool.remove(shape)
            colour_pool.remove(colour)
        size = _pick(rng, _choices(sizes, SIZES))
        for _try in range(30):   # keep objects apart (best effort)
            x, y = (round(float(v), 3) for v in rng.uniform(0.22, 0.78, size=2))
            if all(math.hypot(x - o.x, y - o.y) > 0.8 * (SIZE_RADIUS[size] + SIZE_RADIUS[o.size])
                   for o in objects):
                break
        objects.append(SceneObject(shape, colour, size, x, y))
    return Scene(tuple(objects), _pick(rng, _choices(background, tuple(BACKGROUNDS))),
                 _pick(rng, _choices(texture, TEXTURES)), _pick(rng, _choices(lighting, tuple(LIGHTING))),
                 _pick(rng, _choices(style, STYLES)), _knob(rng, contrast, 1.0), _knob(rng, noise, 0.0),
                 _knob(rng, blur, 0.0), _knob(rng, offcentre, 0.0))


# ----------------------------------------------------------------------------- drawing
def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices (pixels) of a shape of circumradius r centred at (cx, cy)."""
    if shape in ("circle", "ring"):
        pts = [(math.cos(2 * math.pi * k / 24), math.sin(2 * math.pi * k / 24)) for k in range(24)]
    elif shape == "star":
        pts = [((1.0 if k % 2 == 0 else 0.45) * math.cos(math.pi * k / 5 - math.pi / 2),
                (1.0 if k % 2 == 0 else 0.45) * math.sin(math.pi * k / 5 - math.pi / 2)) for k in range(10)]
    elif shape == "cross":
        a, b = 0.33, 0.95
        pts = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a),
               (-b, a), (-b, -a), (-a, -a)]
    else:
        n, phase = {"square": (4, 45), "triangle": (3, -90), "diamond": (4, 0), "hexagon": (6, 0)}[shape]
        pts = [(math.cos(math.radians(phase + 360 * k / n)), math.sin(math.radians(phase + 360 * k / n)))
               for k in range(n)]
        if shape == "diamond":
            pts = [(0.7 * px, py) for px, py in pts]
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx + r * (px * c - py * s), cy + r * (px * s + py * c)) for px, py in pts]


@lru_cache(maxsize=16)
def _grids(size: int) -> dict[str, np.ndarray]:
    """Per-size masks in [0, 1] (cached): horizon, textures, vertical gradient, stripes."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) * (64.0 / size)
    return {"horizon": (yy >= 38).astype(np.float32)[..., None],
            "striped": ((yy // 4) % 2 == 0).astype(np.float32)[..., None],
            "dotted": (((xx % 8) - 4) ** 2 + ((yy % 8) - 4) ** 2 < 3).astype(np.float32)[..., None],
            "checkered": (((xx // 8) + (yy // 8)) % 2 == 0).astype(np.float32)[..., None],
            "gradient": (1.15 - 0.35 * yy / 64.0)[..., None],
            "diagonal": (((xx + yy) // 3) % 2 == 0).astype(np.float32)[..., None]}


def _object_mask(size: int, points, outline: bool) -> np.ndarray:
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if outline:
        draw.polygon(points, outline=255, width=max(1, size // 32))
    else:
        draw.polygon(points, fill=255)
    return np.asarray(mask, dtype=np.float32)[..., None] / 255.0


def render(scene: Scene, size: int = 64) -> Image.Image:
    """Draw ``scene`` as a ``size`` x ``size`` RGB image (deterministic)."""
    g = _grids(size)
    top, bottom = (np.array(c, np.float32) for c in BACKGROUNDS[scene.background])
    has_horizon = scene.background not in ("studio", "night sky")
    canvas = top + (bottom - top) * (g["horizon"] if has_horizon else 0.5)
    canvas = np.broadcast_to(canvas, (size, size, 3)).astype(np.float32)
    if scene.style == "line_drawing":            # paper-white, tinted by the background
        canvas = 0.8 * 245.0 + 0.2 * canvas
    if scene.texture != "plain":
        canvas = canvas * (1.0 - 0.18 * g[scene.texture])
    if scene.style == "photo":
        canvas = canvas * g["gradient"]
    gain = np.array(LIGHTING[scene.lighting], np.float32)
    canvas = canvas * gain
    obj_gain = np.sqrt(gain)
    for obj in scene.objects:
        x = obj.x + scene.offcentre * (0.85 - obj.x)
        y = obj.y + scene.offcentre * (0.85 - obj.y)
        r = SIZE_RADIUS[obj.size] * obj.scale * size
        points = _polygon(obj.shape, x * size, y * size, r, obj.angle)
        colour = np.array(COLOURS[obj.colour], np.float32) * obj_gain
        alpha = _object_mask(size, points, outline=scene.style == "line_drawing")
        if obj.shape == "ring":                  # punch the hole
            hole = _polygon("circle", x * size, y * size, 0.55 * r, 0.0)
            alpha = alpha * (1.0 - _object_mask(size, hole, outline=False))
        if scene.style == "textured":
            fill = colour * (1.0 - 0.35 * g["diagonal"])
        elif scene.style == "photo":
            fill = colour * g["gradient"]
        else:
            fill = colour
        canvas = canvas * (1.0 - alpha) + fill * alpha
    if scene.contrast != 1.0:
        mean = canvas.mean(axis=(0, 1), keepdims=True)
        canvas = mean + scene.contrast * (canvas - mean)
    sigma = 255.0 * scene.noise + (4.0 if scene.style == "photo" else 0.0)
    if sigma > 0:
        seed = hashlib.sha256(f"noise\0{scene.params_key()}@{size}".encode()).digest()
        noise_rng = np.random.default_rng(int.from_bytes(seed[:8], "little"))
        canvas = canvas + noise_rng.normal(0.0, sigma, size=canvas.shape).astype(np.float32)
    image = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), "RGB")
    if scene.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(scene.blur * size / 64.0))
    return image


def clip_scenes(scene: Scene, motion: str, n_frames: int = 8, index: int = 0) -> list[Scene]:
    """The scenes of a clip: ``motion`` applied to object ``index`` over ``n_frames``.
    Slides/rises/falls move 0.35 of the frame (path kept inside it); spin turns 135
    degrees (no symmetry of a shape maps the first frame onto the last; "spin" is
    invisible on circles and rings); grow/shrink scale 0.6 <-> 1.4."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; known: {', '.join(MOTIONS)}")
    obj = scene.objects[index]
    out = []
    for t in np.linspace(0.0, 1.0, n_frames):
        t = float(t)
        cx, cy = min(max(obj.x, 0.275), 0.725), min(max(obj.y, 0.275), 0.725)
        d = 0.35 * (t - 0.5)
        new = {"slide left": dict(x=round(cx - d, 4)), "slide right": dict(x=round(cx + d, 4)),
               "rise": dict(y=round(cy - d, 4)), "fall": dict(y=round(cy + d, 4)),
               "spin": dict(angle=round(135.0 * t, 3)), "grow": dict(scale=round(0.6 + 0.8 * t, 4)),
               "shrink": dict(scale=round(1.4 - 0.8 * t, 4))}[motion]
        objects = list(scene.objects)
        objects[index] = replace(obj, **new)
        out.append(replace(scene, objects=tuple(objects)))
    return out


def render_clip(scene: Scene, motion: str, n_frames: int = 8, size: int = 64,
                index: int = 0) -> list[Image.Image]:
    """Frames of ``motion`` applied to object ``index`` (see :func:`clip_scenes`)."""
    return [render(s, size) for s in clip_scenes(scene, motion, n_frames, index)]


def scene_ref(scene: Scene, size: int = 64):
    """A lazily rendered :class:`ctxbench.inputs.ImageRef` keyed by the scene parameters."""
    from .inputs import ImageRef
    return ImageRef.procedural(scene.params_key() + f"@{size}", lambda: render(scene, size),
                               label=f"synth:{caption(scene)}")


# ----------------------------------------------------------------------------- text side
LIGHTING_PHRASES = {"bright": "bright light", "dim": "dim light", "dusk": "dusk light",
                    "night": "night-time light"}
STYLE_PHRASES = {"flat": "flat style", "textured": "textured style", "line_drawing": "line drawing",
                 "photo": "photographic style"}


def article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def describe_object(obj: SceneObject) -> str:
    """E.g. ``"large red circle"``."""
    return f"{obj.size} {obj.colour} {obj.shape}"


def list_phrase(items: Sequence[str]) -> str:
    """``["a", "b", "c"] -> "a, b and c"``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def caption(scene: Scene) -> str:
    """E.g. ``"a large red circle and a small blue star on a meadow background, dim
    light, flat style"`` (objects in scene order)."""
    objs = list_phrase([article(describe_object(o)) for o in scene.objects]) or "nothing"
    texture = "" if scene.texture == "plain" else f" {scene.texture}"
    return (f"{objs} on a{texture} {scene.background} background, "
            f"{LIGHTING_PHRASES[scene.lighting]}, {STYLE_PHRASES[scene.style]}")


def tags(scene: Scene) -> list[str]:
    """Attribute words (deduplicated, in order): shapes, colours, sizes, background,
    texture, lighting, style."""
    words = [o.shape for o in scene.objects] + [o.colour for o in scene.objects] + \
            [o.size for o in scene.objects] + [scene.background, scene.texture, scene.lighting, scene.style]
    return list(dict.fromkeys(words))
