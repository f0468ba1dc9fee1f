"""Datasets of the metadata_sentiment family: the in-memory structure and the row parsing
shared by every reader (SentiFormer, Feng et al. 2025, arXiv:2502.15322).

One structure, :class:`SentimentDataset`, filled by three readers:

- :func:`.data_files.load_folders` -- FI in its usual layout (You et al., AAAI 2016):
  one folder per emotion under a root (``<root>/amusement/*.jpg`` ...). FI has no
  official split. Metadata come from an optional *sidecar* JSONL (SentiFormer
  generated captions with BLIP, object tags with a detector and scene labels with a
  Places365 classifier): one object per line, ``{"image": "<path relative to
  root>", "caption": ..., "tags": ..., "scene": ..., <extra text fields>}``.
- :func:`.data_files.load_manifest` -- a generic manifest, CSV or JSONL, one row per
  image::

      image        path relative to the image root (required)
      label        class name (or 0-based index into ``classes``)
      distribution label distribution (Twitter_LDL style): a list of K numbers,
                   a {class: value} mapping, or in CSV a JSON list or "a;b;c";
                   votes are fine (rows are normalised). At least one of label /
                   distribution per row; without a label the argmax is used.
      split        optional: train | val | test (all rows or none)
      caption, scene, tags, and any extra text fields named in ``text_fields``

- :func:`.data_hf.load_hf` -- a Hugging Face ``datasets`` source (a local folder, a
  ``save_to_disk`` folder, parquet files, or a hub id); image, label and metadata
  columns are named in the task YAML. Offline (``HF_HUB_OFFLINE=1``) a hub id that is
  not in the local cache fails at once with :class:`~ctxbench.errors.DataNotFound`.

Tags may be written as ``[{"name": "dog", "score": 0.9}, ...]``, ``[["dog", 0.9],
...]``, ``{"dog": 0.9}``, ``["dog", ...]`` (score 1) or, in CSV, ``"dog:0.9;tree:0.5"``.
Tags scoring below ``tag_threshold`` (default 0.4, SentiFormer's detector cut-off)
are dropped; the rest are kept in descending score order. Any metadata field may be
missing (empty or null) for any image.

``polarity=True`` maps the 8 Mikels emotions to binary sentiment (positive:
amusement, awe, contentment, excitement; negative: anger, disgust, fear, sadness),
the binary FI setting of SentiFormer; label distributions are summed accordingly.

Image paths are relative to the dataset root; absolute paths and paths resolving
outside it (``..``, symlinks) raise :class:`~ctxbench.errors.PathEscapeError`
(:func:`ctxbench.io.paths.contained`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ...errors import DatasetFormatError
from ...inputs import ImageRef
from .protocol import FI_EMOTIONS, POLARITY_CLASSES, POSITIVE_EMOTIONS

__all__ = ["FI_EMOTIONS", "POLARITY_CLASSES", "POSITIVE_EMOTIONS", "SentimentDataset", "parse_tags",
           "read_jsonl", "stratified_limit", "to_polarity"]

DEFAULT_TAG_THRESHOLD = 0.4
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
META_FIELDS = ("caption", "scene", "objects")   # built-in metadata; "objects" from tags
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}


@dataclass
class SentimentDataset:
    """Images with a class label (and optionally a label distribution) and metadata.

    ``text[name][i]`` is item i's text for a metadata field (``None`` = missing):
    ``caption``, ``scene`` and any extra field; ``objects[i]`` is the tuple of object
    tags kept after the threshold (``None`` when none). ``splits`` holds the dataset's
    own train/val/test indices when it has them.
    """

    name: str
    classes: tuple[str, ...]
    images: list[ImageRef]
    labels: np.ndarray                       # [N] int64
    distributions: np.ndarray | None = None  # [N, K] float64, rows sum to 1
    text: dict[str, list[str | None]] = field(default_factory=dict)
    objects: list[tuple[str, ...] | None] = field(default_factory=list)
    splits: dict[str, np.ndarray] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def field_names(self) -> tuple[str, ...]:
        """Built-in fields (always present, possibly all missing) and extra text fields."""
        return (*META_FIELDS, *[f for f in self.text if f not in META_FIELDS])

    def field_values(self, name: str) -> list:
        """Per-item values of a metadata field (None = missing)."""
        if name == "objects":
            return self.objects or [None] * len(self)
        if name in self.text:
            return self.text[name]
        if name in META_FIELDS:
            return [None] * len(self)
        raise KeyError(name)

    def subset(self, idx: np.ndarray) -> "SentimentDataset":
        """Items ``idx`` (own splits are re-indexed, items outside dropped)."""
        idx = np.asarray(idx, dtype=np.int64)
        splits = None
        if self.splits is not None:
            where = np.full(len(self), -1)
            where[idx] = np.arange(len(idx))
            splits = {k: np.sort(where[v][where[v] >= 0]) for k, v in self.splits.items()}
        return replace(self, images=[self.images[i] for i in idx], labels=self.labels[idx],
                       distributions=None if self.distributions is None else self.distributions[idx],
                       text={k: [v[i] for i in idx] for k, v in self.text.items()},
                       objects=[self.objects[i] for i in idx], splits=splits)



def parse_tags(value: Any, threshold: float, where: str) -> tuple[str, ...] | None:
    """Object tags above ``threshold`` in descending score order (None when none)."""
    if value is None or value == "" or value == []:
        return None
    pairs: list[tuple[str, float]] = []

    def bad(why: str) -> DatasetFormatError:
        return DatasetFormatError(f"{where}: field 'tags' {why}; write tags as "
                                  "[{\"name\": \"dog\", \"score\": 0.9}, ...], [[\"dog\", 0.9], ...], "
                                  "{\"dog\": 0.9}, [\"dog\", ...] or \"dog:0.9;tree:0.5\"")
    if isinstance(value, str):
        for part in value.replace("|", ";").split(";"):
            part = part.strip()
            if not part:
                continue
            name, _, score = part.rpartition(":") if ":" in part else (part, "", "1")
            try:
                pairs.append((name.strip(), float(score)))
            except ValueError:
                raise bad(f"has a non-numeric score in {part!r}") from None
    elif isinstance(value, dict):
        pairs = [(k, v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, str):
                pairs.append((item, 1.0))
            elif isinstance(item, dict):
                name = item.get("name", item.get("label", item.get("tag")))
                pairs.append((name, item.get("score", 1.0)))
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                pairs.append((item[0], item[1]))
            else:
                raise bad(f"has an entry {item!r} that is not a tag")
    else:
        raise bad(f"is a {type(value).__name__}")
    kept: dict[str, float] = {}
    for name, score in pairs:
        if not isinstance(name, str) or not name.strip():
            raise bad(f"has a tag without a name ({name!r})")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not np.isfinite(score):
            raise bad(f"has a non-numeric score for {name!r}")
        if score >= threshold:
            name = name.strip()
            kept[name] = max(score, kept.get(name, -np.inf))
    if not kept:
        return None
    order = sorted(kept.items(), key=lambda kv: -kv[1])   # stable: ties keep file order
    return tuple(name for name, _ in order)


def _text(value: Any, name: str, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    if not isinstance(value, (str, int, float)):
        raise DatasetFormatError(f"{where}: field '{name}' must be text, got {type(value).__name__}")
    value = str(value).strip()
    return value or None


def _resolve_classes(classes: Iterable[str] | None) -> tuple[str, ...]:
    out = tuple(str(c) for c in (classes or FI_EMOTIONS))
    if len(out) < 2 or len(set(out)) != len(out):
        raise DatasetFormatError(f"classes must list at least two distinct names, got {list(out)}")
    return out


def _label(value: Any, classes: tuple[str, ...], where: str) -> int:
    if isinstance(value, bool):
        value = None
    if isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.strip().isdigit()):
        k = int(value)
        if 0 <= k < len(classes):
            return k
    elif isinstance(value, str):
        lookup = {c.lower(): i for i, c in enumerate(classes)}
        if value.strip().lower() in lookup:
            return lookup[value.strip().lower()]
    raise DatasetFormatError(f"{where}: field 'label' = {value!r} is not one of the classes "
                             f"{list(classes)} (or an index 0..{len(classes) - 1}); set "
                             "dataset.options.classes to this dataset's class names")


def _distribution(value: Any, classes: tuple[str, ...], where: str) -> np.ndarray:
    fix = (f"write a list of {len(classes)} non-negative numbers in the order {list(classes)}, "
           "or a {class: value} mapping")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text[:1] in "[{" else [float(x) for x in text.split(";")]
        except ValueError:
            raise DatasetFormatError(f"{where}: field 'distribution' {value!r} is unreadable; {fix}") from None
    if isinstance(value, dict):
        unknown = [k for k in value if k not in classes]
        if unknown:
            raise DatasetFormatError(f"{where}: field 'distribution' names unknown classes {unknown}; {fix}")
        value = [value.get(c, 0.0) for c in classes]
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{where}: field 'distribution' is not numeric; {fix}") from None
    if arr.shape != (len(classes),) or not np.isfinite(arr).all() or (arr < 0).any() or arr.sum() <= 0:
        raise DatasetFormatError(f"{where}: field 'distribution' = {value!r} is invalid; {fix} "
                                 "(with a positive sum)")
    return arr / arr.sum()


def _split(value: Any, where: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    name = SPLIT_ALIASES.get(str(value).strip().lower())
    if name is None:
        raise DatasetFormatError(f"{where}: field 'split' = {value!r}; use train, val or test")
    return name


def _own_splits(names: list[str | None], source: str) -> dict[str, np.ndarray] | None:
    given = [n is not None for n in names]
    if not any(given):
        return None
    if not all(given):
        first = given.index(False)
        raise DatasetFormatError(f"{source}: item {first + 1} has no split while others do; give "
                                 "every row a split (train/val/test) or none at all")
    arr = np.array(names)
    splits = {k: np.flatnonzero(arr == k) for k in ("train", "val", "test") if (arr == k).any()}
    if "test" not in splits:
        raise DatasetFormatError(f"{source}: the 'split' field never says 'test'; a dataset with its "
                                 "own splits needs a test split (or drop the field for a seeded split)")
    return splits


class _Rows:
    """Accumulates parsed rows into columns."""

    def __init__(self, classes: tuple[str, ...], threshold: float, text_fields: Iterable[str]):
        self.classes, self.threshold = classes, float(threshold)
        self.text_fields = ["caption", "scene", *[f for f in text_fields if f not in ("caption", "scene")]]
        self.images: list[ImageRef] = []
        self.labels: list[int] = []
        self.dists: list[np.ndarray | None] = []
        self.text: dict[str, list[str | None]] = {f: [] for f in self.text_fields}
        self.objects: list[tuple[str, ...] | None] = []
        self.split_names: list[str | None] = []

    def add(self, ref: ImageRef, row: dict[str, Any], where: str) -> None:
        dist = None
        if row.get("distribution") not in (None, ""):
            dist = _distribution(row["distribution"], self.classes, where)
        label_value = row.get("label")
        if label_value in (None, ""):
            if dist is None:
                raise DatasetFormatError(f"{where}: neither 'label' nor 'distribution' is given; "
                                         "every row needs one of them")
            label = int(np.argmax(dist))
        else:
            label = _label(label_value, self.classes, where)
        self.add_parsed(ref, label, dist, row, where, _split(row.get("split"), where))

    def add_parsed(self, ref, label, dist, meta: dict, where: str, split: str | None = None) -> None:
        self.images.append(ref)
        self.labels.append(label)
        self.dists.append(dist)
        for f in self.text_fields:
            self.text[f].append(_text(meta.get(f), f, where))
        tags = meta.get("tags") if meta.get("tags") is not None else meta.get("objects")
        self.objects.append(parse_tags(tags, self.threshold, where))
        self.split_names.append(split)

    def build(self, name: str, source: str, meta: dict) -> SentimentDataset:
        if not self.images:
            raise DatasetFormatError(f"{source}: no images found")
        has = [d is not None for d in self.dists]
        if any(has) and not all(has):
            first = has.index(False)
            raise DatasetFormatError(f"{source}: item {first + 1} has no 'distribution' while others "
                                     "do; give every row a distribution or none")
        dists = np.stack(self.dists) if all(has) else None
        return SentimentDataset(name=name, classes=self.classes, images=self.images,
                                labels=np.asarray(self.labels, dtype=np.int64), distributions=dists,
                                text=self.text, objects=self.objects,
                                splits=_own_splits(self.split_names, source),
                                meta={"source": source, **meta})


def to_polarity(ds: SentimentDataset) -> SentimentDataset:
    """Binary sentiment from the 8 Mikels emotions (SentiFormer's binary FI setting)."""
    missing = [c for c in FI_EMOTIONS if c not in ds.classes]
    extra = [c for c in ds.classes if c not in FI_EMOTIONS]
    if missing or extra:
        raise DatasetFormatError(f"{ds.meta.get('source', ds.name)}: polarity mapping needs the 8 "
                                 f"Mikels emotions as classes; got {list(ds.classes)}")
    pos = np.array([c in POSITIVE_EMOTIONS for c in ds.classes])
    labels = pos[ds.labels].astype(np.int64)
    dists = None
    if ds.distributions is not None:
        dists = np.stack([ds.distributions[:, ~pos].sum(1), ds.distributions[:, pos].sum(1)], axis=1)
        labels = np.argmax(dists, axis=1).astype(np.int64)
    return replace(ds, classes=POLARITY_CLASSES, labels=labels, distributions=dists,
                   meta={**ds.meta, "polarity": True, "emotion_labels": ds.labels.tolist()
                         if len(ds) <= 5000 else "omitted"})


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(f"{path}: line {lineno}: invalid JSON ({exc.msg}); one JSON "
                                         "object per line") from None
            if not isinstance(row, dict):
                raise DatasetFormatError(f"{path}: line {lineno}: expected a JSON object")
            rows.append((lineno, row))
    return rows


def allocate(sizes: np.ndarray, limit: int) -> np.ndarray:
    """Items to keep per group for ``limit`` in all: proportional shares rounded down
    (at least one item per non-empty group), the leftover given one by one to the
    groups furthest below their share (Hamilton's largest-remainder method; ties to
    the first group). The total is ``limit``
    unless there are more groups than ``limit`` (then one item per group)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    quota = limit * sizes / sizes.sum()
    counts = np.minimum(np.maximum(np.floor(quota).astype(np.int64), 1), sizes)
    left = int(limit - counts.sum())
    if left > 0:
        order = sorted(range(len(sizes)), key=lambda g: (-(quota[g] - counts[g]), g))
        for g in order:
            if left == 0:
                break
            if counts[g] < sizes[g]:
                counts[g] += 1
                left -= 1
    return counts


def stratified_limit(ds: SentimentDataset, limit: int | None, seed: int = 0) -> SentimentDataset:
    """``--limit N``: keep at most N items (the test split is drawn from them), every
    class -- and every own split -- in proportion (:func:`allocate`), drawn with
    ``seed``. More classes (x own splits) than N: one item of each, the fewest that
    still scores every class. N at least the dataset's size: the dataset unchanged.
    ``meta["limit"]`` records the request and what was kept."""
    if not limit or len(ds) <= limit:
        return ds
    rng = np.random.default_rng(seed)
    groups = ds.labels.copy()
    if ds.splits is not None:
        part = np.zeros(len(ds), dtype=np.int64)
        for j, idx in enumerate(ds.splits.values()):
            part[idx] = j
        groups = groups * 4 + part
    names = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in names]
    counts = allocate(np.array([len(m) for m in members]), int(limit))
    keep = [rng.choice(idx, size=int(n), replace=False) for idx, n in zip(members, counts)]
    out = ds.subset(np.sort(np.concatenate(keep)))
    out.meta = {**ds.meta, "limited_to": len(out),
                "limit": {"requested": int(limit), "kept": len(out), "of": len(ds),
                          "stratified_by": "class and own split" if ds.splits is not None else "class",
                          "per_class": np.bincount(out.labels, minlength=len(ds.classes)).tolist()}}
    return out
