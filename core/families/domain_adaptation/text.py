"""The text side of the domain_adaptation family: class prompts, temperature scaling
and the certainty of caption pseudo-labels.

- :func:`class_prompt_embeddings`: e_k, the L2-normalised mean of the prompt-template
  embeddings of class k (CLIP's prompt ensembling, Radford et al., "Learning
  Transferable Visual Models From Natural Language Supervision", ICML 2021).
- :func:`fit_temperature`: temperature scaling (Guo, Pleiss, Sun & Weinberger, "On
  Calibration of Modern Neural Networks", ICML 2017): the tau minimising the NLL of
  softmax(cos / tau) over a log grid, fitted on *source* items only.
- :func:`certainty`: c_j in [0, 1] of each pseudo-label: ``entropy`` 1 - H(p_j)/log K,
  ``margin`` p_(1) - p_(2), ``clip`` TRUST's normalised CLIP similarity (Litrico et
  al., AAAI 2026, official code models.py ``ClipBERT.forward``: the diagonal of the
  softmax over a batch of captions of the image-caption logits 100 cos(x_j, u_i) / 3,
  in fixed random batches of ``clip_batch``; meaningful only for a backend whose
  image and text spaces are aligned), or ``none`` (c_j = 1).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

TAU_GRID = np.logspace(-3, 2, 61)
CALIBRATION_MAX_ITEMS = 20_000


def class_prompt_embeddings(encoder, classes: list[str], templates: list[str]) -> torch.Tensor:
    """[K, D]: per class, the normalised mean of its normalised template embeddings."""
    names = [c.replace("_", " ") for c in classes]
    texts = [t.format(n) for n in names for t in templates]
    emb = F.normalize(encoder.texts(texts), dim=-1).view(len(names), len(templates), -1)
    return F.normalize(emb.mean(1), dim=-1)


def fit_temperature(cos: torch.Tensor, labels: np.ndarray, seed: int = 0) -> float:
    """Temperature scaling (Guo et al. 2017): tau minimising the NLL of
    softmax(cos / tau) for the true labels, over ``TAU_GRID`` (source items only;
    at most ``CALIBRATION_MAX_ITEMS``, a seeded subsample above that)."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) > CALIBRATION_MAX_ITEMS:
        keep = torch.from_numpy(np.random.default_rng(seed).choice(len(labels), CALIBRATION_MAX_ITEMS,
                                                                   replace=False))
        cos, labels = cos[keep], labels[keep]
    nll = [float(F.cross_entropy(cos.double() / tau, labels)) for tau in TAU_GRID]
    return float(TAU_GRID[int(np.argmin(nll))])


def certainty(probs: torch.Tensor, kind: str, *, image: torch.Tensor | None = None,
              text: torch.Tensor | None = None, clip_batch: int = 32, seed: int = 0) -> torch.Tensor:
    """Certainty in [0, 1] of each pseudo-label (see the module docstring)."""
    n, k = probs.shape
    if kind == "none":
        return torch.ones(n)
    if kind == "entropy":
        h = -(probs * probs.clamp_min(1e-12).log()).sum(1)
        return (1 - h / math.log(k)).clamp(0, 1)
    if kind == "margin":
        top = probs.topk(min(2, k), dim=1).values
        return (top[:, 0] - top[:, 1]).clamp(0, 1) if k > 1 else torch.ones(n)
    if kind == "clip":
        if image is None or text is None:
            raise ValueError("certainty 'clip' needs image and caption embeddings")
        if image.shape[1] != text.shape[1]:
            raise ValueError(f"certainty 'clip' needs a shared image-text space, but images have "
                             f"{image.shape[1]} dims and captions {text.shape[1]}; use 'entropy'")
        order = torch.from_numpy(np.random.default_rng(seed).permutation(n))
        out = torch.empty(n)
        # TRUST: softmax over the captions of the batch of 100 * cos / 3
        for start in range(0, n, clip_batch):
            idx = order[start:start + clip_batch]
            logits = (100.0 / 3.0) * image[idx] @ text[idx].T
            out[idx] = torch.softmax(logits, dim=1).diagonal()
        return out
    raise ValueError(f"unknown certainty {kind!r}")
