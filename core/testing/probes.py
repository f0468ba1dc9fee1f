"""Probe inputs and output checks shared by the conformance checks.

A few images (one non-square) and texts of the synthetic world, two contrasting
contexts, and the helpers that check an encoder's output is a finite float
``[N, D]`` tensor and measure differences between outputs.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image


class CheckFailed(AssertionError):
    pass


# ----------------------------------------------------------------------------- probe inputs
def probe_inputs(n: int = 6, size: int = 64) -> tuple[list[Image.Image], list[str], list[str]]:
    """``n`` images (one non-square), ``n`` texts and two contexts from the world."""
    try:
        from .. import synthetic_world as world
        rng = world.rng_for("conformance", 0)
        scenes = [world.sample_scene(rng) for _ in range(n)]
        images = [world.render(s, size) for s in scenes]
        texts = [world.caption(s) for s in scenes]
    except ImportError:   # the world is not there yet: plain colour fields
        images = [Image.new("RGB", (size, size), ((37 * i) % 256, (91 * i) % 256, (151 * i) % 256))
                  for i in range(n)]
        texts = [f"picture number {i} with colour {(37 * i) % 256}" for i in range(n)]
    images[-1] = images[-1].resize((size + size // 4, size - size // 4))
    contexts = ["Title: The Lantern Keeper\nStory: A romance story. Mia waits longingly for "
                "the warm light across the bay.",
                "Title: Cold Trail\nStory: A mystery story. Tom searches for clues in the "
                "dark, hushed forest."]
    return images, texts, contexts


# ----------------------------------------------------------------------------- helpers
def _check_matrix(out: Any, n: int, where: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"{where} returned {type(out).__name__}, expected a torch.Tensor [N, D]")
    if not out.is_floating_point():
        raise CheckFailed(f"{where} returned dtype {out.dtype}, expected a floating dtype")
    if out.ndim != 2 or out.shape[0] != n or out.shape[1] < 1:
        raise CheckFailed(f"{where} returned shape {tuple(out.shape)} for {n} inputs, expected ({n}, D)")
    out = out.detach().to("cpu", torch.float32)
    if not torch.isfinite(out).all():
        raise CheckFailed(f"{where} returned non-finite values")
    return out


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) if a.numel() else 0.0


def _default_atol(backend: Any) -> float:
    dtype = getattr(backend, "dtype", None)
    return 2e-2 if dtype in (torch.bfloat16, torch.float16) else 1e-4
