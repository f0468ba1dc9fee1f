"""Readers of image files on disk: FI-style class folders with a sidecar JSONL, and
CSV/JSONL manifests (formats: :mod:`.data`). Every path written in a dataset file goes
through :func:`ctxbench.io.paths.contained` (resolve, then refuse anything outside the
root, symlinks included)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable

from ...errors import DataNotFound, DatasetFormatError
from ...inputs import ImageRef
from ...io.paths import contained, expand_user
from .data import DEFAULT_TAG_THRESHOLD, IMAGE_EXTENSIONS, SentimentDataset, _resolve_classes, _Rows, \
    read_jsonl, to_polarity


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


def read_sidecar(path: Path, root: Path) -> dict[Path, tuple[str, dict]]:
    """Sidecar metadata: resolved image path -> (where, row)."""
    out: dict[Path, tuple[str, dict]] = {}
    for lineno, row in read_jsonl(path):
        where = f"{path}: line {lineno}"
        image = contained(root, row.get("image"), f"{where}: field 'image'")
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
    root = expand_user(root)
    classes = _resolve_classes(classes)
    meta_path = expand_user(metadata) if metadata else None
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
            path = contained(root, str(path.relative_to(root)), str(path))
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
        return _read_csv_rows(path, suffix)
    raise DatasetFormatError(f"{path}: unknown manifest type '{suffix}'; use .csv, .tsv or .jsonl")


def _read_csv_rows(path: Path, suffix: str) -> list[tuple[str, dict]]:
    """Rows of a CSV/TSV manifest; a byte that is not UTF-8 is reported with its line."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DatasetFormatError(f"{path}: line {line}: not UTF-8 text (byte {exc.start}); "
                                 "save the manifest as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
    if not reader.fieldnames or "image" not in reader.fieldnames:
        raise DatasetFormatError(f"{path}: line 1: the header must have an 'image' column "
                                 f"(found {reader.fieldnames})")
    return [(f"{path}: line {reader.line_num}", {k: (v if v != "" else None)
                                                for k, v in row.items() if k is not None})
            for row in reader]


def load_manifest(path: str | Path, root: str | Path | None = None,
                  classes: Iterable[str] | None = None, tag_threshold: float = DEFAULT_TAG_THRESHOLD,
                  text_fields: Iterable[str] = (), polarity: bool = False, name: str | None = None,
                  instructions: str = "") -> SentimentDataset:
    """A CSV/JSONL manifest (see module docstring); ``root`` defaults to its folder."""
    path = expand_user(path)
    if not path.is_file():
        raise DataNotFound(f"manifest {path} not found. " + (instructions or
                           "Write a CSV/JSONL manifest as documented in ctxbench.families.metadata_sentiment.data."))
    root = expand_user(root) if root else path.parent
    classes = _resolve_classes(classes)
    rows = _Rows(classes, tag_threshold, text_fields)
    seen: dict[Path, str] = {}
    for where, row in read_manifest_rows(path):
        image = contained(root, row.get("image"), f"{where}: field 'image'")
        if image in seen:
            raise DatasetFormatError(f"{where}: image {row['image']!r} is listed twice (first at "
                                     f"{seen[image]})")
        seen[image] = where
        rows.add(ImageRef.from_path(image), row, where)
    ds = rows.build(name or path.stem, str(path), {"tag_threshold": float(tag_threshold),
                                                   "image_root": str(root)})
    return to_polarity(ds) if polarity else ds
