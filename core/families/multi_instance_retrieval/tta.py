"""Clip embeddings for multi_instance_retrieval, with optional test-time augmentation.

A backend with a video encoder (``capabilities.video``) gets a clip's sampled
frames as a clip; any other is evaluated on the mean of its L2-normalised frame
embeddings (``CachedEncoder.videos``). Test-time augmentation (``tta_hflip``,
``tta_scales``) embeds each clip once per transform (a transformed frame is its
own ImageRef with its own cache key) and averages the L2-normalised clip
embeddings.
"""

from __future__ import annotations

import hashlib

import torch
from torch.nn.functional import normalize

from .protocol import check_tta_scales


def _flip(image):
    from PIL import ImageOps
    return ImageOps.mirror(image)


def _centre_crop(image, scale: float):
    """The central ``scale`` fraction of each side, resized back to the original size."""
    w, h = image.size
    cw, ch = max(1, round(w * scale)), max(1, round(h * scale))
    left, top = (w - cw) // 2, (h - ch) // 2
    from PIL import Image
    return image.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BICUBIC)


def transform_ref(ref, flip: bool, scale: float):
    """A new ImageRef for ``ref`` under (flip, centre-crop scale); its key differs
    per transform, so the cache never mixes them. Identity returns ``ref``."""
    from ...inputs import ImageRef
    if not flip and scale == 1.0:
        return ref
    tag = f"tta:flip={int(flip)}:scale={scale!r}"

    def load():
        image = ref.load()
        if scale != 1.0:
            image = _centre_crop(image, scale)
        return _flip(image) if flip else image

    return ImageRef(lambda: hashlib.sha256(f"{ref.key}\0{tag}".encode()).hexdigest(), load,
                    label=f"{ref.label or ref.key[:12]}[{tag}]")


def tta_transforms(protocol: dict) -> list[tuple[bool, float]]:
    """(hflip, centre-crop scale) pairs to embed each clip under, in a fixed order."""
    scales = check_tta_scales(protocol["tta_scales"])
    flips = (False, True) if protocol["tta_hflip"] else (False,)
    return [(f, s) for s in scales for f in flips]


def clip_embeddings(encoder, clips, n_frames: int, transforms) -> torch.Tensor:
    """[n_clips, D] L2-normalised: per transform the backend's clip embedding (video
    encoder, or mean of normalised frame embeddings), normalised, averaged, normalised."""
    frames = [clip.frames(n_frames) for clip in clips]
    total = None
    for flip, scale in transforms:
        refs = [[transform_ref(r, flip, scale) for r in clip] for clip in frames]
        emb = normalize(encoder.videos(refs).float(), dim=-1)
        total = emb if total is None else total + emb
    return normalize(total, dim=-1)
