"""Datasets of the metadata_sentiment family (SPEC §2; SentiFormer, seeds/001_*).

One in-memory structure, :class:`SentimentDataset`, filled by three readers:

- :func:`load_folders` — FI in its usual layout (You et al., AAAI 2016): one folder
  per emotion under a root (``<root>/amusement/*.jpg`` ...). FI has no official
  split. Metadata come from an optional *sidecar* JSONL (SentiFormer generated
  captions with BLIP, object tags with a detector and scene labels with a
  Places365 classifier): one object per line, ``{"image": "<path relative to
  root>", "caption": ..., "tags": ..., "scene": ..., <extra text fields>}``.
- :func:`load_manifest` — a generic manifest, CSV or JSONL, one row per image::

      image        path relative to the image root (required)
      label        class name (or 0-based index into ``classes``)
      distribution label distribution (Twitter_LDL style): a list of K numbers,
                   a {class: value} mapping, or in CSV a JSON list or "a;b;c";
                   votes are fine (rows are normalised). At least one of label /
                   distribution per row; without a label the argmax is used.
      split        optional: train | val | test (all rows or none)
      caption, scene, tags, and any extra text fields named in ``text_fields``

- :func:`load_hf` — a Hugging Face ``datasets`` source (a local folder, a
  ``save_to_disk`` folder, or a hub id); image, label and metadata columns are named
  in the task YAML. With ``HF_HUB_OFFLINE=1`` a hub id that is not in the local
  cache fails at once with :class:`~ctxbench.errors.DataNotFound`.

Tags may be written as ``[{"name": "dog", "score": 0.9}, ...]``, ``[["dog", 0.9],
...]``, ``{"dog": 0.9}``, ``["dog", ...]`` (score 1) or, in CSV, ``"dog:0.9;tree:0.5"``.
Tags scoring below ``tag_threshold`` (default 0.4, SentiFormer's detector cut-off)
are dropped; the rest are kept in descending score order. Any metadata field may be
missing (empty or null) for any image.

``polarity=True`` maps the 8 Mikels emotions to binary sentiment (positive:
amusement, awe, contentment, excitement; negative: anger, disgust, fear, sadness),
the binary FI setting of SentiFormer; label distributions are summed accordingly.

Image paths are relative to the dataset root; absolute paths and paths resolving
outside it (``..``, symlinks) raise :class:`~ctxbench.errors.PathEscapeError`.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ...errors import DataNotFound, DatasetFormatError, PathEscapeError
from ...inputs import ImageRef, sha256_hex

FI_EMOTIONS: tuple[str, ...] = ("amusement", "anger", "awe", "contentment", "disgust",
                                "excitement", "fear", "sadness")
POSITIVE_EMOTIONS: tuple[str, ...] = ("amusement", "awe", "contentment", "excitement")
POLARITY_CLASSES: tuple[str, ...] = ("negative", "positive")
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


# ----------------------------------------------------------------------------- helpers
def safe_path(root: Path, rel: str, where: str) -> Path:
    """``root / rel`` resolved, refusing absolute paths and escapes from ``root``."""
    if not isinstance(rel, str) or not rel.strip():
        raise DatasetFormatError(f"{where}: image path must be a non-empty string, got {rel!r}")
    if os.path.isabs(rel) or rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        raise PathEscapeError(f"{where}: absolute path {rel!r} refused; write paths relative to "
                              f"the dataset root {root}")
    root = root.resolve()
    resolved = (root / rel).resolve()
    if not resolved.is_relative_to(root):
        raise PathEscapeError(f"{where}: path {rel!r} resolves to {resolved}, outside the dataset "
                              f"root {root}; keep every image inside the root")
    return resolved


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


# ----------------------------------------------------------------------------- readers
FI_INSTRUCTIONS = (
    "FI (You, Luo, Jin & Yang, 'Building a Large Scale Dataset for Image Emotion Recognition', "
    "AAAI 2016; 23,308 Flickr/Instagram images) is distributed by its authors for research use. "
    "Request it from the authors, unpack it so that {root}/<emotion>/<image> holds the 8 folders "
    "amusement, anger, awe, contentment, disgust, excitement, fear, sadness, or set "
    "CTXBENCH_DATA to the folder holding 'fi/'. For the metadata fusion protocol also place "
    "a sidecar JSONL (one line per image: {\"image\": \"amusement/x.jpg\", \"caption\": ..., "
    "\"tags\": [[\"dog\", 0.93], ...], \"scene\": ...}) at {metadata}: SentiFormer's processed "
    "metadata (BLIP captions, detector tags, Places365 scenes) are linked from the SentiFormer "
    "code README (https://drive.google.com/drive/folders/1d5Qwr7pur6t50p5KgJFk7aLArlFmrdHI), or "
    "generate your own with any captioner/detector/scene classifier.")


def _instructions(text: str, root: Path, metadata: Path | None) -> str:
    return text.replace("{root}", str(root)).replace("{metadata}", str(metadata or root / "metadata.jsonl"))


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


def read_sidecar(path: Path, root: Path) -> dict[Path, tuple[str, dict]]:
    """Sidecar metadata: resolved image path -> (where, row)."""
    out: dict[Path, tuple[str, dict]] = {}
    for lineno, row in read_jsonl(path):
        where = f"{path}: line {lineno}"
        image = safe_path(root, row.get("image"), f"{where}: field 'image'")
        if image in out:
            raise DatasetFormatError(f"{where}: image {row['image']!r} already has metadata at "
                                     f"{out[image][0]}; keep one line per image")
        out[image] = (where, row)
    return out


def load_folders(root: str | Path, classes: Iterable[str] | None = None,
                 metadata: str | Path | None = None, tag_threshold: float = DEFAULT_TAG_THRESHOLD,
                 text_fields: Iterable[str] = (), polarity: bool = False, name: str = "fi",
                 instructions: str = FI_INSTRUCTIONS, layout: str = "folders") -> SentimentDataset:
    """Images by class under ``root``: ``layout="folders"`` (FI: ``<root>/<class>/*``) or
    ``layout="prefix"`` (one flat folder, the class is the file name up to the first
    ``_``, e.g. ``amusement_0012.jpg``). Optional sidecar metadata (module docstring)."""
    root = Path(root).expanduser()
    classes = _resolve_classes(classes)
    meta_path = Path(metadata).expanduser() if metadata else None
    if layout not in ("folders", "prefix"):
        raise DatasetFormatError(f"dataset.options.layout = {layout!r}; use 'folders' or 'prefix'")
    if not root.is_dir():
        raise DataNotFound(f"{name}: folder {root} not found. " + _instructions(instructions, root, meta_path))
    if meta_path and not meta_path.is_file():
        raise DataNotFound(f"{name}: metadata sidecar {meta_path} not found. " +
                           _instructions(instructions, root, meta_path))
    sidecar = read_sidecar(meta_path, root) if meta_path else {}

    def images_in(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())

    if layout == "folders":
        by_class = []
        for cls in classes:
            folder = root / cls
            if not folder.is_dir():
                raise DatasetFormatError(f"{root}: class folder '{cls}' is missing; expected one folder "
                                         f"per class: {list(classes)}")
            by_class.append(images_in(folder))
    else:
        lookup = {c.lower(): k for k, c in enumerate(classes)}
        by_class = [[] for _ in classes]
        for path in images_in(root):
            prefix = path.name.split("_", 1)[0].lower()
            if prefix not in lookup:
                raise DatasetFormatError(f"{path}: file name does not start with a class name and '_' "
                                         f"(classes: {list(classes)}); rename it or use layout: folders")
            by_class[lookup[prefix]].append(path)
    rows = _Rows(classes, tag_threshold, text_fields)
    used = 0
    for k, files in enumerate(by_class):
        if not files:
            raise DatasetFormatError(f"{root}: no images of class '{classes[k]}' "
                                     f"({', '.join(IMAGE_EXTENSIONS)})")
        for path in files:
            path = safe_path(root, str(path.relative_to(root)), str(path))
            where, row = sidecar.get(path, (str(path), {}))
            used += path in sidecar
            rows.add_parsed(ImageRef.from_path(path), k, None, row, where)
    ds = rows.build(name, str(root), {"metadata_file": str(meta_path) if meta_path else None,
                                      "metadata_matched": used,
                                      "metadata_unmatched": len(sidecar) - used,
                                      "tag_threshold": float(tag_threshold)})
    return to_polarity(ds) if polarity else ds


def read_manifest_rows(path: Path) -> list[tuple[str, dict]]:
    """(where, row) for every row of a CSV or JSONL manifest."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return [(f"{path}: line {n}", row) for n, row in read_jsonl(path)]
    if suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            if not reader.fieldnames or "image" not in reader.fieldnames:
                raise DatasetFormatError(f"{path}: line 1: the header must have an 'image' column "
                                         f"(found {reader.fieldnames})")
            return [(f"{path}: line {reader.line_num}", {k: (v if v != "" else None)
                                                        for k, v in row.items() if k is not None})
                    for row in reader]
    raise DatasetFormatError(f"{path}: unknown manifest type '{suffix}'; use .csv, .tsv or .jsonl")


def load_manifest(path: str | Path, root: str | Path | None = None,
                  classes: Iterable[str] | None = None, tag_threshold: float = DEFAULT_TAG_THRESHOLD,
                  text_fields: Iterable[str] = (), polarity: bool = False, name: str | None = None,
                  instructions: str = "") -> SentimentDataset:
    """A CSV/JSONL manifest (see module docstring); ``root`` defaults to its folder."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataNotFound(f"manifest {path} not found. " + (instructions or
                           "Write a CSV/JSONL manifest as documented in ctxbench.families.metadata_sentiment.data."))
    root = Path(root).expanduser() if root else path.parent
    classes = _resolve_classes(classes)
    rows = _Rows(classes, tag_threshold, text_fields)
    seen: dict[Path, str] = {}
    for where, row in read_manifest_rows(path):
        image = safe_path(root, row.get("image"), f"{where}: field 'image'")
        if image in seen:
            raise DatasetFormatError(f"{where}: image {row['image']!r} is listed twice (first at "
                                     f"{seen[image]})")
        seen[image] = where
        rows.add(ImageRef.from_path(image), row, where)
    ds = rows.build(name or path.stem, str(path), {"tag_threshold": float(tag_threshold),
                                                   "image_root": str(root)})
    return to_polarity(ds) if polarity else ds


# ----------------------------------------------------------------------------- Hugging Face
HF_SPLITS = {"train": ("train",), "val": ("validation", "val", "valid", "dev"),
             "test": ("test",)}


def _hub_cache_dir() -> Path:
    try:
        from huggingface_hub import constants as hub_constants
        return Path(hub_constants.HF_HUB_CACHE).expanduser().resolve()
    except Exception:  # pragma: no cover - huggingface_hub always ships with datasets
        return Path("~/.cache/huggingface/hub").expanduser().resolve()


def _hub_cached(repo_id: str) -> bool:
    """Whether a hub dataset id has anything in the local caches (hub and datasets)."""
    hub_cache = _hub_cache_dir()
    try:
        import datasets.config as ds_config
        ds_cache = Path(ds_config.HF_DATASETS_CACHE)
    except Exception:  # pragma: no cover
        ds_cache = Path("~/.cache/huggingface/datasets").expanduser()
    candidates = [hub_cache / ("datasets--" + repo_id.replace("/", "--")),
                  ds_cache / repo_id.replace("/", "___"),
                  ds_cache / repo_id.replace("/", "___").lower()]
    return any(c.is_dir() and any(c.iterdir()) for c in candidates)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on") or \
        os.environ.get("HF_DATASETS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hf_open(path: str, config: str | None, revision: str | None):
    """Open a local folder, a save_to_disk folder or a hub id as a DatasetDict-like mapping."""
    import datasets

    local = Path(path).expanduser()
    if local.exists():
        if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
            obj = datasets.load_from_disk(str(local))
        else:
            obj = datasets.load_dataset(str(local), config)
        return (obj if isinstance(obj, datasets.DatasetDict) else {"all": obj}), local.resolve()
    looks_like_id = path.count("/") <= 1 and not path.startswith((".", "~", "/"))
    if not looks_like_id:
        raise DataNotFound(f"Hugging Face dataset folder {local} not found; put the dataset there "
                           "or name a hub id (owner/name)")
    how = (f"Download it once with network access: `python -c \"import datasets; "
           f"datasets.load_dataset('{path}'{', ' + repr(config) if config else ''})\"` (fills the "
           "cache), or save it to a folder and point dataset.options.path at that folder.")
    if _offline() and not _hub_cached(path):
        raise DataNotFound(f"Hugging Face dataset '{path}' is not in the local cache and "
                           f"HF_HUB_OFFLINE=1 forbids downloading it. {how}")
    try:
        obj = datasets.load_dataset(path, config, revision=revision)
    except (FileNotFoundError, ConnectionError, OSError) as exc:
        raise DataNotFound(f"Hugging Face dataset '{path}' could not be loaded ({exc}). {how}") from None
    except Exception as exc:
        if type(exc).__name__ in ("DatasetNotFoundError", "OfflineModeIsEnabled", "HfHubHTTPError",
                                  "LocalEntryNotFoundError"):
            raise DataNotFound(f"Hugging Face dataset '{path}' could not be loaded ({exc}). {how}") from None
        raise
    cache_root = None
    return (obj if isinstance(obj, datasets.DatasetDict) else {"all": obj}), cache_root


def _hf_image_ref(value: Any, where: str, allowed_roots: list[Path]) -> ImageRef:
    """An undecoded ``datasets.Image`` value ({'bytes', 'path'}) as a lazy ImageRef."""
    import io

    from PIL import Image

    if isinstance(value, dict) and value.get("bytes"):
        data = value["bytes"]

        def load():
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                return im.copy()
        return ImageRef(sha256_hex(b"file\0" + data), load, value.get("path") or where)
    if isinstance(value, dict) and value.get("path"):
        p = Path(value["path"]).resolve()
        if not any(p.is_relative_to(r) for r in allowed_roots):
            raise PathEscapeError(f"{where}: image path {value['path']!r} is outside the dataset "
                                  f"folder(s) {[str(r) for r in allowed_roots]}")
        return ImageRef.from_path(p)
    raise DatasetFormatError(f"{where}: image column holds {type(value).__name__}, expected a "
                             "datasets.Image value (bytes or path)")


def load_hf(path: str, image_column: str = "image", label_column: str | None = "label",
            distribution_column: str | None = None, caption_column: str | None = None,
            scene_column: str | None = None, tags_column: str | None = None,
            text_columns: dict[str, str] | None = None, config: str | None = None,
            revision: str | None = None, classes: Iterable[str] | None = None,
            tag_threshold: float = DEFAULT_TAG_THRESHOLD, polarity: bool = False,
            splits: dict[str, str] | None = None) -> SentimentDataset:
    """A Hugging Face ``datasets`` source. The dataset's own train/validation/test
    splits are used (``splits`` maps ctxbench's train/val/test to other names); a
    single split is treated as un-split data. ``classes`` default to the label
    column's ``ClassLabel`` names."""
    import datasets

    dd, local_root = _hf_open(str(path), config, revision)
    if splits:
        bad = [k for k in splits if k not in HF_SPLITS]
        if bad:
            raise DatasetFormatError(f"dataset.options.splits: keys {bad}; use train, val and test")
        chosen = {ours: theirs for ours, theirs in splits.items() if theirs is not None}
    elif len(dd) == 1:
        chosen = {"_all": next(iter(dd))}        # one split: un-split data
    else:
        chosen = {ours: next((t for t in theirs if t in dd), None) for ours, theirs in HF_SPLITS.items()}
        chosen = {k: v for k, v in chosen.items() if v is not None}
    unknown = [t for t in chosen.values() if t not in dd]
    if unknown:
        raise DatasetFormatError(f"{path}: splits {unknown} not found; available: {list(dd)}")
    if "_all" not in chosen and "test" not in chosen:
        raise DatasetFormatError(f"{path}: cannot find a test split among {list(dd)}; set "
                                 "dataset.options.splits, e.g. {train: train, test: test}")
    first = dd[next(iter(chosen.values()))]
    for col in [image_column, label_column, distribution_column, caption_column, scene_column,
                tags_column, *(text_columns or {}).values()]:
        if col is not None and col not in first.column_names:
            raise DatasetFormatError(f"{path}: column '{col}' not found (columns: {first.column_names}); "
                                     "fix the *_column options in the task YAML")
    if label_column is None and distribution_column is None:
        raise DatasetFormatError(f"{path}: set label_column or distribution_column")
    feature = first.features.get(label_column) if label_column else None
    if classes is None and isinstance(feature, datasets.ClassLabel):
        classes = feature.names
    classes = _resolve_classes(classes)
    allowed = [r for r in (local_root, Path(datasets.config.HF_DATASETS_CACHE).resolve(),
                           _hub_cache_dir()) if r]
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    rename = {"caption": caption_column, "scene": scene_column, "tags": tags_column,
              **(text_columns or {})}
    rows = _Rows(classes, tag_threshold, [k for k in (text_columns or {})])
    for ours, theirs in chosen.items():
        part = dd[theirs].cast_column(image_column, datasets.Image(decode=False))
        columns = part.to_dict() if len(part) else {c: [] for c in part.column_names}
        for i in range(len(part)):
            where = f"{path}[{theirs}] row {i}"
            row = {k: columns[v][i] for k, v in rename.items() if v}
            if label_column:
                value = columns[label_column][i]
                # ClassLabel ints -> names, so a 'classes' option in another order still maps right
                row["label"] = names[value] if names is not None and isinstance(value, int) \
                    and 0 <= value < len(names) else value
            if distribution_column:
                row["distribution"] = columns[distribution_column][i]
            if ours != "_all":
                row["split"] = ours
            rows.add(_hf_image_ref(columns[image_column][i], where, allowed), row, where)
    ds = rows.build(str(path).rstrip("/").split("/")[-1], str(path),
                    {"hf_splits": chosen, "tag_threshold": float(tag_threshold)})
    return to_polarity(ds) if polarity else ds


def stratified_limit(ds: SentimentDataset, limit: int | None, seed: int = 0) -> SentimentDataset:
    """``--limit N``: keep about N items, every class (and own split) in proportion."""
    if not limit or len(ds) <= limit:
        return ds
    rng = np.random.default_rng(seed)
    keep = []
    groups = ds.labels.copy()
    if ds.splits is not None:
        part = np.zeros(len(ds), dtype=np.int64)
        for j, idx in enumerate(ds.splits.values()):
            part[idx] = j
        groups = groups * 4 + part
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        n = max(1, round(limit * len(idx) / len(ds)))
        keep.append(rng.choice(idx, size=min(n, len(idx)), replace=False))
    out = ds.subset(np.sort(np.concatenate(keep)))
    out.meta = {**ds.meta, "limited_to": len(out)}
    return out
