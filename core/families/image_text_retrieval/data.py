"""Data structure and the ``image_text_folder`` loader of the image_text_retrieval family.

A dataset is a folder of images (the *images root*) and one captions file that
pairs image paths with captions. An image may have several captions; every
caption belongs to exactly one image. Three captions formats, chosen by the
file's suffix (or the ``format`` option):

* **CSV** (``.csv``; ``format: csv``): a header line, then one caption per row::

      image,caption
      beach/001.jpg,a dog running on the beach
      beach/001.jpg,a brown dog near the sea

  The column names are ``image`` and ``caption`` unless the options
  ``image_column`` / ``caption_column`` say otherwise; other columns are ignored.
  Quote a caption that holds a comma (``"a dog, running"``), as any CSV writer does.
* **JSONL** (``.jsonl``; ``format: jsonl``): one JSON object per line,
  ``{"image": "beach/001.jpg", "caption": "a dog running on the beach"}``; the
  caption may be a list of captions. The same two options rename the fields.
* **COCO captions JSON** (``.json``; ``format: coco``)::

      {"images": [{"id": 1, "file_name": "beach/001.jpg"}, ...],
       "annotations": [{"image_id": 1, "caption": "a dog running on the beach"}, ...]}

  An image listed in ``images`` without any annotation is kept in the pool (a
  distractor for text -> image) and is not an image -> text query.

Rules, each checked with an error that names the file and the line, row or JSON
field, and says what to do: image paths are relative to the images root, never
absolute, and must resolve inside it (``..`` and symlinks that lead out are
refused, :func:`ctxbench.io.paths.contained`); every image file must exist;
captions are non-empty strings. Two paths that resolve to the same file are the
same image. Images keep the order of their first appearance (COCO: the order of
``images``), captions the order of the file. Images are read lazily and keyed by
the hash of their bytes (:meth:`ctxbench.inputs.ImageRef.from_path`), so an image
is encoded once whatever the number of its captions, and never again on a rerun.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import DataNotFound, DatasetFormatError
from ...inputs import ImageRef
from ...io.paths import contained, option_path

__all__ = ["ImageTextDataset", "load_captions", "load_from_options", "limit_images", "FORMATS"]

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "coco"}
FORMAT_HELP = "see the formats in docs/own_data.md (ctxbench.families.image_text_retrieval.data)"
MAX_LISTED = 5   # missing files named in one error


@dataclass
class ImageTextDataset:
    """``images[i]`` is image ``image_ids[i]``; caption ``captions[j]`` belongs to
    image ``caption_image[j]``."""

    name: str
    image_ids: list[str]
    images: list[ImageRef]
    captions: list[str]
    caption_image: list[int]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if len(self.image_ids) != len(self.images) or len(self.captions) != len(self.caption_image):
            raise ValueError(f"{self.name}: {len(self.image_ids)} image ids for {len(self.images)} "
                             f"images, {len(self.captions)} captions for "
                             f"{len(self.caption_image)} owners")
        if any(not 0 <= i < len(self.images) for i in self.caption_image):
            raise ValueError(f"{self.name}: a caption belongs to no image of the pool")

    def __len__(self) -> int:
        """The number of images (what ``--limit`` counts)."""
        return len(self.images)

    def images_with_captions(self) -> list[int]:
        """Indices of the images that own at least one caption (the i2t queries), in order."""
        return sorted(set(self.caption_image))


def limit_images(ds: ImageTextDataset, limit: int | None) -> ImageTextDataset:
    """``--limit N``: the first N images with all their captions (an image's captions
    stay together, as the cluster bootstrap needs). ``ds`` itself when nothing is cut."""
    if not limit or len(ds.images) <= limit:
        return ds
    n = max(int(limit), 1)
    keep = [j for j, i in enumerate(ds.caption_image) if i < n]
    return ImageTextDataset(ds.name, ds.image_ids[:n], ds.images[:n], [ds.captions[j] for j in keep],
                            [ds.caption_image[j] for j in keep], {**ds.meta, "limited_to": n})


# ----------------------------------------------------------------------------- reading rows
def _text(path: Path) -> str:
    """The file as text (UTF-8, a leading byte-order mark dropped); a byte that is not
    UTF-8 is reported with its line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DatasetFormatError(f"{path}: line {line}: not UTF-8 text (byte {exc.start}); "
                                 "save the captions file as UTF-8") from None


def _caption_list(value: Any, where: str, field_name: str, allow_list: bool) -> list[str]:
    """The non-empty caption(s) in ``value``, stripped."""
    items = value if allow_list and isinstance(value, list) else [value]
    if allow_list and isinstance(value, list) and not value:
        raise DatasetFormatError(f"{where}: field '{field_name}' is an empty list; give at least "
                                 "one caption or remove the line")
    out = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            want = "a non-empty string" + (" or a list of them" if allow_list else "")
            raise DatasetFormatError(f"{where}: field '{field_name}': expected {want}, got "
                                     f"{item!r:.60}; write the caption text or remove the "
                                     f"{'line' if allow_list else 'row'}")
        out.append(item.strip())
    return out


def read_csv(path: Path, image_column: str = "image",
             caption_column: str = "caption") -> list[tuple[str, str, list[str]]]:
    """(where, image path, [caption]) for every row of a CSV captions file."""
    reader = csv.DictReader(io.StringIO(_text(path), newline=""))
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise DatasetFormatError(f"{path}: line 1: unreadable CSV header ({exc})") from None
    if not header:
        raise DatasetFormatError(f"{path}: empty file; write a header line "
                                 f"'{image_column},{caption_column}' and one row per caption")
    missing = [c for c in (image_column, caption_column) if c not in header]
    if missing:
        raise DatasetFormatError(
            f"{path}: line 1: the header has no column {missing[0]!r} (found: "
            f"{', '.join(repr(h) for h in header)}); rename the column or set the dataset option "
            f"{'image_column' if missing[0] == image_column else 'caption_column'} to its name")
    rows = []
    try:
        for row in reader:
            where = f"{path}: line {reader.line_num}"
            if None in row:
                raise DatasetFormatError(f"{where}: more fields than the header's "
                                         f"{len(header)}; quote a caption that holds a comma")
            image = row.get(image_column)
            if image is None:
                raise DatasetFormatError(f"{where}: fewer fields than the header's {len(header)} "
                                         f"(no {image_column!r}); give an image and a caption")
            rows.append((where, image, _caption_list(row.get(caption_column), where, caption_column,
                                                     allow_list=False)))
    except csv.Error as exc:
        raise DatasetFormatError(f"{path}: line {reader.line_num}: unreadable CSV ({exc})") from None
    return rows


def read_jsonl(path: Path, image_column: str = "image",
               caption_column: str = "caption") -> list[tuple[str, str, list[str]]]:
    """(where, image path, [captions]) for every non-blank line of a JSONL captions file."""
    rows = []
    for lineno, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}: line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(f"{where}: invalid JSON ({exc.msg}, column {exc.colno}); write "
                                     f"one JSON object per line, e.g. {{\"{image_column}\": "
                                     f"\"a.jpg\", \"{caption_column}\": \"a caption\"}}") from None
        if not isinstance(row, dict):
            raise DatasetFormatError(f"{where}: expected a JSON object, got "
                                     f"{type(row).__name__}; write {{\"{image_column}\": ..., "
                                     f"\"{caption_column}\": ...}}")
        for key in (image_column, caption_column):
            if key not in row:
                option = "image_column" if key == image_column else "caption_column"
                raise DatasetFormatError(f"{where}: no field {key!r} (found: "
                                         f"{', '.join(repr(k) for k in row) or 'none'}); add it or "
                                         f"set the dataset option {option} to the field's name")
        rows.append((where, row[image_column], _caption_list(row[caption_column], where,
                                                             caption_column, allow_list=True)))
    return rows


def read_coco(path: Path) -> tuple[list[tuple[str, str]], list[tuple[str, int, str]]]:
    """COCO captions: ([(where, file_name)] per image, [(where, image index, caption)])."""
    try:
        doc = json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg}); "
                                 f"{FORMAT_HELP}") from None
    if not isinstance(doc, dict):
        raise DatasetFormatError(f"{path}: expected a JSON object with 'images' and "
                                 f"'annotations' (COCO captions format), got {type(doc).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(doc.get(key), list):
            raise DatasetFormatError(f"{path}: field '{key}': " + ("missing" if key not in doc else
                                     f"expected a list, got {type(doc[key]).__name__}") +
                                     "; the COCO captions format is {\"images\": [{\"id\", "
                                     "\"file_name\"}], \"annotations\": [{\"image_id\", \"caption\"}]}")
    def at(field_path: str) -> str:
        return f"{path}: field '{field_path}'"

    images, index = [], {}
    for n, entry in enumerate(doc["images"]):
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise DatasetFormatError(f"{at(f'images[{n}]')}: expected an object with 'id' and "
                                     f"'file_name', got {entry!r:.80}")
        key = _coco_id(entry["id"], at(f"images[{n}].id"))
        if key in index:
            raise DatasetFormatError(f"{at(f'images[{n}].id')}: duplicate image id {entry['id']!r} "
                                     f"(first at images[{index[key]}]); image ids must be unique")
        index[key] = n
        images.append((at(f"images[{n}].file_name"), entry["file_name"]))
    captions = []
    for n, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            raise DatasetFormatError(f"{at(f'annotations[{n}]')}: expected an object with "
                                     f"'image_id' and 'caption', got {ann!r:.80}")
        key = _coco_id(ann["image_id"], at(f"annotations[{n}].image_id"))
        if key not in index:
            raise DatasetFormatError(f"{at(f'annotations[{n}].image_id')}: {ann['image_id']!r} is "
                                     "not the id of an entry of 'images'; add the image or fix the id")
        where = f"{path}: annotations[{n}]"
        for text in _caption_list(ann["caption"], where, "caption", allow_list=False):
            captions.append((where, index[key], text))
    return images, captions


def _coco_id(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise DatasetFormatError(f"{where}: expected an integer or a non-empty string id, got "
                                 f"{value!r:.60}")
    return f"{type(value).__name__}:{value}"


# ----------------------------------------------------------------------------- the loader
class _Pool:
    """Images met so far, by resolved path; missing files collected for one error."""

    def __init__(self, root: Path):
        self.root = root
        self.index: dict[Path, int] = {}
        self.ids: list[str] = []
        self.refs: list[ImageRef] = []
        self.missing: list[str] = []

    def add(self, rel: Any, where: str) -> int:
        if not isinstance(rel, str) or not rel.strip():
            raise DatasetFormatError(f"{where}: expected an image path (a non-empty string, "
                                     f"relative to {self.root}), got {rel!r:.60}")
        file = contained(self.root, rel.strip(), where)
        if file not in self.index:
            if not file.is_file():
                self.missing.append(f"{where}: {rel.strip()!r}")   # where = file: line: field
            self.index[file] = len(self.refs)
            self.ids.append(rel.strip())
            self.refs.append(ImageRef.from_path(file))
        return self.index[file]

    def check(self, captions_file: Path) -> None:
        """One error for every missing file, starting with the first one's row."""
        if self.missing:
            first, rest = self.missing[0], self.missing[1:]
            more = ""
            if rest:
                more = f" (and {len(rest)} more: " + "; ".join(rest[:MAX_LISTED - 1]) + \
                    (", ..." if len(rest) > MAX_LISTED - 1 else "") + ")"
            raise DatasetFormatError(f"{first}: image file not found under {self.root}{more}; "
                                     f"put the files there, fix their paths in "
                                     f"{captions_file.name}, or point the dataset option 'images' "
                                     "at their folder")


def load_captions(captions: str | Path, images: str | Path | None = None, fmt: str = "auto",
                  image_column: str = "image", caption_column: str = "caption",
                  name: str | None = None) -> ImageTextDataset:
    """Read a captions file (module docstring) whose image paths are relative to
    ``images`` (default: the captions file's folder)."""
    path = Path(captions)
    if not path.is_file():
        raise DataNotFound(f"captions file {path} not found. Write a CSV, JSONL or COCO captions "
                           f"JSON file that pairs image paths with captions ({FORMAT_HELP}) and "
                           "point the dataset option 'captions' at it")
    root = Path(images) if images is not None else path.parent
    if not root.is_dir():
        raise DataNotFound(f"images folder {root} (for {path}) is not a directory; point the "
                           "dataset option 'images' at the folder the image paths are relative to")
    root = root.resolve()
    if fmt == "auto":
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise DatasetFormatError(f"{path}: unknown captions file type {path.suffix!r}; use "
                                     ".csv, .jsonl or .json (COCO captions), or set the dataset "
                                     "option format: csv | jsonl | coco")
    elif fmt not in FORMATS.values():
        raise DatasetFormatError(f"dataset option format = {fmt!r}; use auto, csv, jsonl or coco")
    pool = _Pool(root)
    texts: list[str] = []
    owners: list[int] = []
    if fmt == "coco":
        image_rows, caption_rows = read_coco(path)
        order = [pool.add(rel, where) for where, rel in image_rows]
        for _where, n, text in caption_rows:
            texts.append(text)
            owners.append(order[n])
    else:
        reader = read_csv if fmt == "csv" else read_jsonl
        for where, rel, caps in reader(path, image_column, caption_column):
            i = pool.add(rel, f"{where}: field '{image_column}'")
            texts += caps
            owners += [i] * len(caps)
    pool.check(path)
    if not texts:
        raise DatasetFormatError(f"{path}: no captions; add at least one "
                                 + ("annotation" if fmt == "coco" else "row") + f" ({FORMAT_HELP})")
    meta = {"captions_file": str(path), "images_root": str(root), "format": fmt,
            "images_without_captions": len(pool.refs) - len(set(owners))}
    return ImageTextDataset(name or path.stem, pool.ids, pool.refs, texts, owners, meta)


def load_from_options(options: dict, ctx) -> ImageTextDataset:
    """The ``image_text_folder`` loader: ``captions`` and ``images`` are task-relative
    (:func:`ctxbench.io.paths.option_path`; ``${CTXBENCH_DATA}`` is expanded by the task
    file), then ``--limit`` (the first N images with their captions)."""
    if options.get("captions") is None:
        raise ValueError("dataset option 'captions' is required (the CSV, JSONL or COCO JSON "
                         "file that pairs images with captions)")
    for key in ("image_column", "caption_column", "format"):
        if key in options and (not isinstance(options[key], str) or not options[key].strip()):
            raise DatasetFormatError(f"dataset option {key} = {options[key]!r}; expected a name")
    ds = load_captions(option_path(options, "captions", ctx), option_path(options, "images", ctx),
                       fmt=options.get("format", "auto"),
                       image_column=options.get("image_column", "image"),
                       caption_column=options.get("caption_column", "caption"),
                       name=getattr(ctx, "task_name", None))
    return limit_images(ds, getattr(ctx, "limit", None))
