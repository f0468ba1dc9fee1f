"""Test plugin (not a test file): a backend whose ``fingerprint()`` forgets an argument.

``stale_template`` embeds texts as ``template.format(text)``, so changing
``template`` changes every text embedding - but its fingerprint names only ``dim``.
The runner's cache key must still keep the two apart (it folds in the canonical
args), and the conformance kit's ``fingerprint_covers_args`` must flag it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ctxbench.backend import BackendArg, BackendSpec, Capabilities
from ctxbench.hooks import hookimpl
from ctxbench.inputs import pil_key

ARGS = (BackendArg("dim", int, 16, "embedding dimension"),
        BackendArg("template", str, "a photo of {}", "prompt the text is embedded in",
                   variant="a drawing of {}"))


class StaleTemplate:
    capabilities = Capabilities(normalized=True)

    def __init__(self, dim: int = 16, template: str = "a photo of {}", device: str = "cpu"):
        self.dim, self.template = int(dim), template

    def fingerprint(self) -> str:
        return f"stale-template:v1:dim={self.dim}"   # the bug: template is missing

    def _vectors(self, keys):
        out = np.empty((len(keys), self.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            out[i] = v / np.linalg.norm(v)
        return torch.from_numpy(out)

    def encode_images(self, images, contexts):
        return self._vectors([pil_key(im) for im in images])

    def encode_texts(self, texts, contexts):
        return self._vectors([self.template.format(t) for t in texts])


@hookimpl
def ctxbench_backends():
    return [BackendSpec("stale_template", lambda device="cpu", **a: StaleTemplate(device=device, **a),
                        "test backend whose fingerprint ignores template", args=ARGS)]
