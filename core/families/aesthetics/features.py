"""Embeddings, (image, tag) pairs and train / validation / test splits of a quality task.

Splits: the dataset's official test list when it has one (AVA ``generic_test.jpgl``;
Sugiura & Yamauchi drew 1,350 test images themselves) else a seeded split stratified
by the first tag (``test_fraction``); the validation split (``val_fraction`` of the
rest, stratified the same way) is the only one used for selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn.functional import normalize

from ...errors import CtxbenchError
from .data import AestheticsDataset


@dataclass
class Features:
    """L2-normalised embeddings: images [N, D]; tag texts [T, D] with row 0 = no tag."""

    image: torch.Tensor
    tag: torch.Tensor
    tag_row: np.ndarray            # tag id -> row of ``tag`` (0 for unknown / none)
    tag_text: dict[int, str]


def tag_texts(tag_names: dict[int, str], protocol: dict[str, Any]) -> dict[int, str]:
    """The text encoded for each tag id (``tag_template``), 0 -> ``no_tag_text``."""
    out = {0: str(protocol["no_tag_text"])}
    out.update({int(k): str(protocol["tag_template"]).format(tag=v) for k, v in tag_names.items()})
    return out


def encode(enc, ds: AestheticsDataset, protocol: dict[str, Any]) -> Features:
    """Image and tag-text embeddings of ``ds`` through the cached encoder ``enc``."""
    texts = tag_texts(ds.tag_names, protocol)
    ids = sorted(texts)
    row = np.zeros(max(ids) + 1, dtype=np.int64)
    row[ids] = np.arange(len(ids))
    return Features(normalize(enc.images(ds.refs), dim=-1),
                    normalize(enc.texts([texts[i] for i in ids]), dim=-1), row, texts)


def image_tag_pairs(tags: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image index, tag id) for each tag of each image in ``idx``; an image without
    tags gives one pair with tag 0."""
    t = tags[idx]
    has = t > 0
    none = ~has.any(axis=1)
    rows, slots = np.nonzero(has | np.stack([none, np.zeros_like(none)], axis=1))
    return idx[rows], t[rows, slots]


# ----------------------------------------------------------------------------- splits
def split_by_label(idx: np.ndarray, labels: np.ndarray, fraction: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (rest, part) with ``round(fraction * n)`` of each label in ``part``
    (at least one when a label has >= 3 items)."""
    part = []
    for lab in np.unique(labels):
        members = idx[labels == lab]
        members = members[rng.permutation(len(members))]
        k = int(round(fraction * len(members)))
        part.append(members[:max(k, 1) if len(members) >= 3 else k])
    part = np.sort(np.concatenate(part)) if part else np.zeros(0, np.int64)
    return np.setdiff1d(idx, part), part


def make_splits(ds: AestheticsDataset, protocol: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """train / val / test image indices (module docstring)."""
    rng = np.random.default_rng([seed, 0xAE5])
    labels = ds.tags[:, 0]
    everything = np.arange(len(ds))
    if (ds.split == "").all():
        pool, test = split_by_label(everything, labels, float(protocol["test_fraction"]), rng)
    else:
        test = np.flatnonzero(ds.split == "test")
        pool = np.flatnonzero((ds.split == "trainval") | (ds.split == ""))
    train, val = split_by_label(pool, labels[pool], float(protocol["val_fraction"]), rng)
    for name, part in (("train", train), ("validation", val), ("test", test)):
        if len(part) < 3:
            raise CtxbenchError(f"{ds.name}: the {name} split has {len(part)} images; the "
                                f"aesthetics protocols need at least 3 (more data or other "
                                f"val_fraction / test_fraction)")
    return {"train": train, "val": val, "test": test}
