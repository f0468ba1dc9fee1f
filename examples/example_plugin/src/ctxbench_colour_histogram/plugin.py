"""`colour-histogram`: a tiny, training-free backend that embeds images and texts in
one space of colour names.

- image: the fraction of pixels nearest (in RGB) to each named colour;
- text: the counts of colour names it mentions, plus a small hashed bag of its
  other words (so texts without colour words still differ);
- a context on the text side (psi(q, C)) adds half the context's own text vector.

Every vector is L2-normalised. It is a toy, but a complete plugin: a factory with
declared arguments (``ARGS``: the CLI checks names and types, ``ctxbench list
backends --details colour-histogram`` shows them), capabilities, a fingerprint
that changes with every argument that changes the numbers (the conformance kit's
``fingerprint_covers_args`` checks it), and a hook that registers it.

``palette`` (optional) is a JSON file ``{"name": [r, g, b], ...}`` replacing the
built-in colour names; its content is hashed into the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ctxbench.backend import BackendArg, BackendSpec, Capabilities
from ctxbench.hooks import hookimpl

from . import __version__

COLOURS = {"red": (220, 40, 40), "orange": (245, 140, 30), "yellow": (240, 220, 50),
           "green": (60, 170, 70), "blue": (40, 90, 210), "purple": (140, 60, 170),
           "pink": (240, 130, 180), "brown": (130, 80, 40), "black": (20, 20, 20),
           "white": (240, 240, 240), "grey": (128, 128, 128)}
_WORD = re.compile(r"[a-z]+")
ARGS = (
    BackendArg("resolution", int, 32, "images are resized to resolution x resolution"),
    BackendArg("hash_dims", int, 16, "dimensions of the hashed bag of non-colour words"),
    BackendArg("word_weight", float, 0.25, "weight of a non-colour word"),
    BackendArg("palette", str, None, "JSON file {name: [r, g, b]} replacing the colour names"),
)


def read_palette(path: str | None) -> tuple[dict, str]:
    """(colour name -> RGB, identity for the fingerprint) of ``path`` or the built-in set."""
    if path is None:
        return COLOURS, "builtin"
    raw = Path(path).read_bytes()
    colours = {str(k).lower(): tuple(v) for k, v in json.loads(raw).items()}
    if not colours or any(len(v) != 3 for v in colours.values()):
        raise ValueError(f"palette {path}: expected a JSON object of name -> [r, g, b]")
    return colours, "sha256:" + hashlib.sha256(raw).hexdigest()[:16]


class ColourHistogram:
    def __init__(self, resolution: int = 32, hash_dims: int = 16, word_weight: float = 0.25,
                 palette: str | None = None, device: str = "cpu"):
        if resolution < 4 or hash_dims < 1 or word_weight < 0:
            raise ValueError("resolution >= 4, hash_dims >= 1 and word_weight >= 0 are required")
        self.resolution, self.hash_dims, self.word_weight = int(resolution), int(hash_dims), float(word_weight)
        colours, self.palette_id = read_palette(palette)
        self.names = list(colours)
        self.protos = np.array([colours[n] for n in self.names], dtype=np.float32)   # [K, 3]
        self.dim = len(self.names) + self.hash_dims
        self.capabilities = Capabilities(text_context=True, normalized=True, context_method="prompt")

    def fingerprint(self) -> str:
        return (f"colour-histogram:v{__version__}:res={self.resolution}:hash={self.hash_dims}"
                f":w={self.word_weight:g}:palette={self.palette_id}")

    @staticmethod
    def _normalise(x: np.ndarray) -> torch.Tensor:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return torch.from_numpy(x / np.where(norms > 0, norms, 1.0)).float()

    def encode_images(self, images: Sequence[Image.Image], contexts: Sequence[str | None]) -> torch.Tensor:
        size = (self.resolution, self.resolution)
        pixels = np.stack([np.asarray(im.convert("RGB").resize(size), dtype=np.float32)
                           for im in images]).reshape(len(images), -1, 3)            # [N, P, 3]
        dist = ((pixels[:, :, None, :] - self.protos[None, None]) ** 2).sum(-1)          # [N, P, K]
        nearest = dist.argmin(-1)                                                    # [N, P]
        hist = (nearest[:, :, None] == np.arange(len(self.names))).mean(1)               # [N, K]
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        out[:, :len(self.names)] = hist
        return self._normalise(out)

    def _text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                if word in self.names:
                    out[row, self.names.index(word)] += 1.0
                else:
                    out[row, len(self.names) + zlib.crc32(word.encode()) % self.hash_dims] += self.word_weight
        return out

    def encode_texts(self, texts: Sequence[str], contexts: Sequence[str | None]) -> torch.Tensor:
        vectors = self._text_vectors(texts)
        ctx = self._text_vectors([c or "" for c in contexts])
        return self._normalise(vectors + 0.5 * ctx)


def make_backend(device: str = "cpu", **args) -> ColourHistogram:
    return ColourHistogram(device=device, **args)


@hookimpl
def ctxbench_backends():
    return [BackendSpec(
        name="colour-histogram",
        factory=make_backend,
        description="example plugin: colour-name histograms (args: resolution=32, hash_dims=16, "
                    "word_weight=0.25, palette=<file.json>)",
        default_batch_size=64,
        args=ARGS,
    )]
