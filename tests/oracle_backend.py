"""A test-only backend that knows the synthetic world's generator (not a test file).

``OracleBackend(dataset)`` for a dataset from ``ctxbench.families.context_retrieval.synthetic.build``:
it recognises images by their pixels (``pil_key`` of the rendered image -> Scene) and
contexts by their text (``Story.context_text()`` -> story attributes). The vocabulary
is every query text ``query_text`` can produce for any (image, story, level) of the
dataset, plus two extra coordinates: ``unk`` (queries outside the vocabulary) and
``pad``.

- a text embeds as the one-hot of its text (its context is ignored);
- an image with a context embeds as the indicator of its 4 query texts under that
  story; without a context, as the indicator of every text it could produce under any
  story at any level;
- ``pad`` = sqrt(M - count) with M the largest count, so every image vector has norm
  sqrt(M): after normalisation all compatible images score exactly 1/sqrt(M) against
  a query and all others 0 (exact ties).

Hence: with image context, Recall@1 = 1 at every level; without, the expected Recall@1
under uniform random tie-breaking equals ``dataset.meta["no_context_ceiling"]``.
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import torch
from PIL import Image

from ctxbench.backend import Capabilities
from ctxbench.families.context_retrieval.data import LEVELS, ContextRetrievalDataset
from ctxbench.inputs import pil_key
from ctxbench.families.context_retrieval.synthetic import query_text


class OracleBackend:
    capabilities = Capabilities(image_context=True, text_context=True, normalized=True,
                                context_method="oracle")

    def __init__(self, dataset: ContextRetrievalDataset):
        self.scenes = dataset.meta["scenes"]
        self.attrs = dataset.meta["story_attrs"]
        self.scene_of_pixels = {pil_key(im.ref.load()): self.scenes[im.id] for im in dataset.images}
        self.attrs_of_context = {story.context_text(): self.attrs[sid]
                                 for sid, story in dataset.stories.items()}
        self.any_story: dict[str, set[str]] = {}   # pixel key -> texts under any story
        for key, scene in self.scene_of_pixels.items():
            self.any_story[key] = {query_text(scene, a, lv) for a in self.attrs.values() for lv in LEVELS}
        vocab = sorted(set().union(*self.any_story.values()))
        self.index = {text: i for i, text in enumerate(vocab)}
        self.unk, self.pad = len(vocab), len(vocab) + 1
        self.dim = len(vocab) + 2
        self.m = max(len(v) for v in self.any_story.values())
        self._fp = "oracle-cr:" + hashlib.sha256("\n".join(vocab).encode()).hexdigest()[:16]

    def fingerprint(self) -> str:
        return self._fp

    def _indicator(self, texts: set[str]) -> torch.Tensor:
        vec = torch.zeros(self.dim, dtype=torch.float64)
        for text in texts:
            vec[self.index[text]] = 1.0
        vec[self.pad] = math.sqrt(self.m - len(texts))
        return vec / math.sqrt(self.m)

    def encode_images(self, images: Sequence[Image.Image], contexts: Sequence[str | None]) -> torch.Tensor:
        rows = []
        for image, context in zip(images, contexts, strict=True):
            key = pil_key(image.convert("RGB"))
            if key not in self.scene_of_pixels:
                raise KeyError("OracleBackend: image is not one of the dataset's rendered images")
            if context is None:
                texts = self.any_story[key]
            else:
                if context not in self.attrs_of_context:
                    raise KeyError(f"OracleBackend: unknown context {context[:60]!r}")
                scene, attrs = self.scene_of_pixels[key], self.attrs_of_context[context]
                texts = {query_text(scene, attrs, lv) for lv in LEVELS}
            rows.append(self._indicator(texts))
        return torch.stack(rows).to(torch.float32) if rows else torch.zeros(0, self.dim)

    def encode_texts(self, texts: Sequence[str], contexts: Sequence[str | None]) -> torch.Tensor:
        out = torch.zeros(len(texts), self.dim, dtype=torch.float32)
        for row, (text, _context) in enumerate(zip(texts, contexts, strict=True)):
            out[row, self.index.get(text, self.unk)] = 1.0
        return out
