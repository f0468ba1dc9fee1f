"""Data structures of the domain_adaptation family and the helpers its loaders share.

A :class:`DomainDataset` holds, for every domain, its splits (``train``, ``test``,
optionally ``val``) as :class:`DomainSplit`: image refs, integer labels into one shared
class list, and the text carried with each image (caption, tags) that text-guided
adaptation pseudo-labels from.

The loaders, one module per official format (every path goes through
``ctxbench.io.paths``: option paths against the task file, paths inside dataset
files resolved - symlinks included - and kept under the dataset root,
``PathEscapeError`` naming the file and line; malformed lines raise
``DatasetFormatError`` with ``file:line``; a missing dataset raises ``DataNotFound``
with instructions):

- lists.py: DomainNet image lists (Peng et al., "Moment Matching for Multi-Source
  Domain Adaptation", ICCV 2019) and GeoNet's UniDA lists, with caption files;
- geonet.py: GeoNet's metadata JSON (Kalluri et al., "GeoNet: Benchmarking
  Unsupervised Adaptation across Geographies", CVPR 2023);
- hf_folder.py: a Hugging Face ``datasets`` folder written by ``save_to_disk``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ...errors import DataNotFound, DatasetFormatError
from ...inputs import sha256_hex

SPLITS = ("train", "val", "test")
NULL_STRINGS = {"", "NULL", "null", "None", "none", "nan"}


@dataclass
class DomainSplit:
    """One split of one domain. ``captions[i]`` / ``tags[i]`` may be None / empty."""

    refs: list
    labels: np.ndarray
    captions: list[str | None]
    tags: list[tuple[str, ...]]
    ids: list[str]
    quality: list[str] | None = None   # synthetic data only: how each caption was made

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.refs)
        for name in ("labels", "captions", "tags", "ids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"DomainSplit: {name} has {len(getattr(self, name))} entries, refs {n}")

    def __len__(self) -> int:
        return len(self.refs)

    def subset(self, idx: Iterable[int]) -> "DomainSplit":
        idx = [int(i) for i in idx]
        return DomainSplit([self.refs[i] for i in idx], self.labels[idx],
                           [self.captions[i] for i in idx], [self.tags[i] for i in idx],
                           [self.ids[i] for i in idx],
                           None if self.quality is None else [self.quality[i] for i in idx])

    def texts(self) -> list[str | None]:
        """The text pseudo-labelled for each image: its caption, else its tags joined
        (``"tags: a, b"``), else None."""
        out: list[str | None] = []
        for cap, tags in zip(self.captions, self.tags):
            if cap:
                out.append(cap)
            elif tags:
                out.append("tags: " + ", ".join(tags))
            else:
                out.append(None)
        return out


@dataclass
class DomainDataset:
    name: str
    classes: list[str]
    domains: dict[str, dict[str, DomainSplit]]
    meta: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        k = len(self.classes)
        for dom, splits in self.domains.items():
            for split_name, split in splits.items():
                if split_name not in SPLITS:
                    raise DatasetFormatError(f"{self.name}: domain {dom!r} has split {split_name!r}; "
                                             f"allowed: {', '.join(SPLITS)}")
                if len(split) and (split.labels.min() < 0 or split.labels.max() >= k):
                    raise DatasetFormatError(f"{self.name}: {dom}/{split_name} has labels outside "
                                             f"0..{k - 1} ({k} classes)")


# ----------------------------------------------------------------------------- helpers
def split_tags(value: Any) -> tuple[str, ...]:
    """Tags from a list or a comma- (else space-) separated string; null strings dropped."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip() not in NULL_STRINGS)
    text = str(value).strip()
    if text in NULL_STRINGS:
        return ()
    parts = text.split(",") if "," in text else text.split()
    return tuple(p.strip() for p in parts if p.strip())


def clean_caption(value: Any) -> str | None:
    """A caption string, or None for a missing / null one (``NULL``, ``nan``, ...)."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text in NULL_STRINGS else text


def norm_key(rel: str) -> str:
    """The key a relative image path is matched under (caption files, class folders)."""
    return os.path.normpath(rel.replace("\\", "/"))


def limit_split(split: DomainSplit, limit: int | None, seed: int, tag: str) -> DomainSplit:
    """A seeded, class-stratified subsample of at most ``limit`` items, never fewer
    than one item per class present (so every class keeps a test item and the
    per-class figures stay defined); unchanged when the split is not larger."""
    if limit is None or len(split) <= limit:
        return split
    digest = sha256_hex(f"limit\0{tag}\0{seed}".encode())
    rng = np.random.default_rng(int(digest[:16], 16))
    classes, counts = np.unique(split.labels, return_counts=True)
    n = max(int(limit), len(classes))
    # largest-remainder allocation proportional to class sizes, at least 1 per class
    quota = np.maximum(1, np.floor(counts * n / len(split)).astype(int))
    order = np.argsort(-(counts * n / len(split) - np.floor(counts * n / len(split))), kind="stable")
    for j in order:
        if quota.sum() >= n:
            break
        if quota[j] < counts[j]:
            quota[j] += 1
    keep = [rng.choice(np.flatnonzero(split.labels == c), size=int(q), replace=False)
            for c, q in zip(classes, np.minimum(quota, counts))]
    return split.subset(np.sort(np.concatenate(keep)))


def apply_limit(ds: "DomainDataset", limit: int | None, seed: int) -> "DomainDataset":
    """``--limit N``: at most N evaluation items, the test items of all domains together
    (shared over domains in proportion to their size, class-stratified, at least one
    item per class per domain); train and val splits are capped at N each. N at least
    the set's size is a no-op. What was kept is recorded in ``ds.meta['limit']``."""
    if limit is None:
        return ds
    tests = {d: len(s["test"]) for d, s in ds.domains.items() if "test" in s}
    total = sum(tests.values())
    caps = {d: n if total <= limit else max(1, int(limit * n // max(total, 1))) for d, n in tests.items()}
    kept = {}
    for dom, splits in ds.domains.items():
        for name in list(splits):
            cap = caps.get(dom, limit) if name == "test" else limit
            splits[name] = limit_split(splits[name], cap, seed, f"{dom}/{name}")
            kept[f"{dom}/{name}"] = len(splits[name])
    ds.meta["limit"] = {"requested": int(limit), "test_items_before": int(total),
                        "test_items_kept": int(sum(len(s["test"]) for s in ds.domains.values() if "test" in s)),
                        "kept": kept, "rule": "test items shared over domains, class-stratified, "
                        ">= 1 per class; train/val capped at the limit each"}
    return ds


def ctx_seed_limit(ctx) -> tuple[int, int | None]:
    """(seed, limit) of a LoadContext, (0, None) without one."""
    if ctx is None:
        return 0, None
    return getattr(ctx, "seed", 0), getattr(ctx, "limit", None)


def not_found(what: str, path: Path, how: str) -> DataNotFound:
    return DataNotFound(f"{what} not found at {path}.\n{how}\n"
                        f"(Set CTXBENCH_DATA to the folder holding your datasets; the embedded "
                        f"task domain_adaptation_synthetic runs without any download.)")


def require_field(obj: Any, key: str, where: str) -> Any:
    """``obj[key]`` of a JSON object, DatasetFormatError naming ``where`` otherwise."""
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise DatasetFormatError(f"{where}: missing field '{key}'")
    return obj[key]
