"""`random`: a seeded chance baseline.

Each input gets a fixed pseudo-random unit vector derived from (seed, content,
context), so it is deterministic, cache-consistent, and any retrieval metric
sits at chance (Recall@1 ~ 1/pool).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Sequence

from ctxbench.backend import BackendArg, BackendSpec, Capabilities
from ctxbench.hooks import hookimpl

if TYPE_CHECKING:  # numpy, torch and PIL load on first encode: `ctxbench list` imports this
    import torch
    from PIL import Image

PLUGIN_VERSION = "2"
ARGS = (BackendArg("dim", int, 64, "embedding dimension"),
        BackendArg("seed", int, 0, "seed of the pseudo-random vectors"))


class RandomBackend:
    def __init__(self, dim: int = 64, seed: int = 0, device: str = "cpu"):
        self.dim, self.seed = int(dim), int(seed)
        self.capabilities = Capabilities(image_context=True, text_context=True,
                                         normalized=True, context_method="hash")

    def fingerprint(self) -> str:
        return f"random:v{PLUGIN_VERSION}:dim={self.dim}:seed={self.seed}"

    def _vectors(self, keys: list[str]) -> torch.Tensor:
        """Unit vectors: per key ``dim`` standard normals by Box-Muller from the
        SHAKE-256 stream of (seed, key), normalised; vectorised over the keys."""
        import numpy as np
        import torch

        stream = b"".join(hashlib.shake_256(f"{self.seed}\0{key}".encode()).digest(8 * self.dim)
                          for key in keys)
        bits = np.frombuffer(stream, dtype="<u4").reshape(len(keys), 2, self.dim).astype(np.float64)
        u1 = (bits[:, 0] + 1.0) / 2.0 ** 32          # (0, 1]: log is finite
        u2 = bits[:, 1] / 2.0 ** 32
        v = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return torch.from_numpy(v.astype(np.float32))

    def encode_images(self, images: Sequence[Image.Image], contexts: Sequence[str | None]) -> torch.Tensor:
        from ctxbench.inputs import context_key, pil_key
        return self._vectors([f"i{pil_key(im)}{context_key(c)}" for im, c in zip(images, contexts)])

    def encode_texts(self, texts: Sequence[str], contexts: Sequence[str | None]) -> torch.Tensor:
        from ctxbench.inputs import context_key, text_key
        return self._vectors([f"t{text_key(t)}{context_key(c)}" for t, c in zip(texts, contexts)])


@hookimpl
def ctxbench_backends():
    return [BackendSpec(
        name="random",
        factory=lambda device="cpu", **args: RandomBackend(device=device, **args),
        description="seeded chance baseline (args: dim=64, seed=0)",
        default_batch_size=256,
        args=ARGS,
        embedded_default=True,
    )]
