"""Data structures and loaders of the domain_adaptation family (SPEC §4; TRUST, seeds/003_*).

A :class:`DomainDataset` holds, for every domain, its splits (``train``, ``test``,
optionally ``val``) as :class:`DomainSplit`: image refs, integer labels into one shared
class list, and the text carried with each image (caption, tags) that text-guided
adaptation pseudo-labels from.

Loaders (official formats; every path is checked to stay under the dataset root,
``PathEscapeError`` names the file and line; malformed lines raise
``DatasetFormatError`` with ``file:line``; a missing dataset raises ``DataNotFound``
with instructions):

- :func:`load_domainnet` - DomainNet image lists ``{domain}_{train,test}.txt``, lines
  ``clipart/aircraft_carrier/clipart_001_000018.jpg 0`` (Peng et al., ICCV 2019;
  345 classes, the class name is the second path component). Captions are not part
  of DomainNet (TRUST generates BLIP-2 captions): an optional ``captions`` file adds
  them (see :func:`read_caption_file`).
- :func:`load_geonet` - GeoNet's metadata JSON (Kalluri et al., CVPR 2023;
  ViLab-UCSD/GeoNet ``loader/json_loader.py``): ``categories`` [{category_id,
  category_name}] and per ``{usa|asia}_{train|test}``: ``images`` [{id, filename}],
  ``annotations`` [{image_id, category, class_name}], ``metadata`` [{image_id,
  caption, tags, ...}]; joined on the image id.
- :func:`load_geonet_lists` - GeoNet's UniDA lists, lines
  ``usa/train/colobus/5892611695.jpg 13`` (class name = third path component),
  optionally with captions from the metadata JSON (matched by file name).
- :func:`load_hf_domains` - a Hugging Face ``datasets`` folder written by
  ``save_to_disk`` (read offline with ``load_from_disk``).
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ...errors import DataNotFound, DatasetFormatError, PathEscapeError
from ...inputs import ImageRef, sha256_hex

SPLITS = ("train", "val", "test")
NULL_STRINGS = {"", "NULL", "null", "None", "none", "nan"}


@dataclass
class DomainSplit:
    """One split of one domain. ``captions[i]`` / ``tags[i]`` may be None / empty."""

    refs: list[ImageRef]
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
def _resolve(path: str | os.PathLike, ctx) -> Path:
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute() and ctx is not None and getattr(ctx, "task_file", None) is not None:
        p = Path(ctx.task_file).parent / p
    return p


def safe_join(root: Path, rel: str, where: str) -> Path:
    """``root / rel`` if it stays under ``root`` (lexically), else PathEscapeError."""
    if not rel or os.path.isabs(rel) or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
        raise PathEscapeError(f"{where}: path {rel!r} must be relative to the dataset root {root}")
    norm = os.path.normpath(rel.replace("\\", "/"))
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise PathEscapeError(f"{where}: path {rel!r} escapes the dataset root {root}; "
                              f"list paths must stay inside it")
    return root / norm


def _split_tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip() not in NULL_STRINGS)
    text = str(value).strip()
    if text in NULL_STRINGS:
        return ()
    parts = text.split(",") if "," in text else text.split()
    return tuple(p.strip() for p in parts if p.strip())


def _clean_caption(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text in NULL_STRINGS else text


def _limit(split: DomainSplit, limit: int | None, seed: int, tag: str) -> DomainSplit:
    """Seeded subsample to at most ``limit`` items (``--limit`` smoke runs)."""
    if limit is None or len(split) <= limit:
        return split
    digest = sha256_hex(f"limit\0{tag}\0{seed}".encode())
    rng = np.random.default_rng(int(digest[:16], 16))
    return split.subset(np.sort(rng.choice(len(split), size=int(limit), replace=False)))


def _missing(what: str, path: Path, how: str) -> DataNotFound:
    return DataNotFound(f"{what} not found at {path}.\n{how}\n"
                        f"(Set CTXBENCH_DATA to the folder holding your datasets; the embedded "
                        f"task domain_adaptation_synthetic runs without any download.)")


def parse_list_file(path: Path, root: Path, class_component: int
                    ) -> tuple[list[str], list[Path], np.ndarray, list[str]]:
    """Read an image list (``relative/path.jpg label`` per line; blank lines skipped).

    Returns (relative paths, absolute paths, labels, class names taken from the path
    component ``class_component``). Errors name ``file:line``."""
    rels: list[str] = []
    abs_paths: list[Path] = []
    labels: list[int] = []
    names: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{path}: not UTF-8 text ({exc})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        where = f"{path}:{lineno}"
        if len(parts) != 2 or not re.fullmatch(r"\d+", parts[1]):
            raise DatasetFormatError(f"{where}: expected '<relative/image/path> <integer label>', "
                                     f"got {line[:80]!r}")
        abs_paths.append(safe_join(root, parts[0], where))
        comps = _norm_key(parts[0]).split("/")
        if len(comps) <= class_component:
            raise DatasetFormatError(f"{where}: path {parts[0]!r} has no class folder at component "
                                     f"{class_component} (expected e.g. domain/class/file.jpg)")
        rels.append(parts[0])
        labels.append(int(parts[1]))
        names.append(comps[class_component])
    return rels, abs_paths, np.asarray(labels, dtype=np.int64), names


def _class_table(per_file: list[tuple[Path, np.ndarray, list[str]]]) -> list[str]:
    """label -> class name, consistent over every list file."""
    mapping: dict[int, tuple[str, Path]] = {}
    for path, labels, names in per_file:
        for lab, name in zip(labels.tolist(), names):
            seen = mapping.get(lab)
            if seen is None:
                mapping[lab] = (name, path)
            elif seen[0] != name:
                raise DatasetFormatError(f"{path}: label {lab} is class {name!r} here but {seen[0]!r} in "
                                         f"{seen[1]}; every file must use one label numbering")
    if not mapping:
        return []
    k = max(mapping) + 1
    return [mapping[i][0] if i in mapping else f"class_{i}" for i in range(k)]


def _split_from_paths(abs_paths: list[Path], rels: list[str], labels: np.ndarray,
                      captions: dict[str, tuple[str | None, tuple[str, ...]]] | None) -> DomainSplit:
    refs = [ImageRef.from_path(p) for p in abs_paths]
    caps: list[str | None] = []
    tags: list[tuple[str, ...]] = []
    for rel in rels:
        c, t = (captions or {}).get(_norm_key(rel), (None, ()))
        caps.append(c)
        tags.append(t)
    return DomainSplit(refs, labels, caps, tags, list(rels))


def _norm_key(rel: str) -> str:
    return os.path.normpath(rel.replace("\\", "/"))


# ----------------------------------------------------------------------------- captions
def read_caption_file(path: Path, howto: str = "") -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """Captions for list-based datasets, keyed by the image's relative path.

    Accepted forms: a JSON object ``{"clipart/x/y.jpg": "a caption", ...}`` or
    ``{"clipart/x/y.jpg": {"caption": ..., "tags": [...]}}``; or a JSON-lines file of
    ``{"path": ..., "caption": ..., "tags": ...}``; or a GeoNet/TRUST-style metadata
    JSON (``{domain}_{split}`` keys with ``images`` and ``metadata``; fields
    ``caption`` or ``blip2_cap``)."""
    if not path.is_file():
        raise DataNotFound(f"caption file not found at {path}. Produce it (formats: "
                           f"ctxbench.families.domain_adaptation.data.read_caption_file) or remove the task's "
                           f"'captions' option (then only zero_shot and source_only run). {howto}")
    text = path.read_text(encoding="utf-8")
    out: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    if path.suffix == ".jsonl":
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or "path" not in row:
                raise DatasetFormatError(f"{path}:{lineno}: expected an object with 'path' and 'caption'")
            out[_norm_key(str(row["path"]))] = (_clean_caption(row.get("caption")),
                                                _split_tags(row.get("tags")))
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path}: top level must be a JSON object")
    split_keys = [k for k, v in data.items() if isinstance(v, dict) and "images" in v]
    if split_keys:
        for key in split_keys:
            block = data[key]
            files = {im.get("id"): im.get("filename") for im in block.get("images", [])
                     if isinstance(im, dict)}
            for i, meta in enumerate(block.get("metadata", [])):
                if not isinstance(meta, dict) or "image_id" not in meta:
                    raise DatasetFormatError(f"{path}: {key}.metadata[{i}]: missing 'image_id'")
                fn = files.get(meta["image_id"])
                if fn is None:
                    continue
                cap = meta.get("caption", meta.get("blip2_cap"))
                out[_norm_key(str(fn))] = (_clean_caption(cap), _split_tags(meta.get("tags")))
        return out
    for key, value in data.items():
        if isinstance(value, dict):
            out[_norm_key(key)] = (_clean_caption(value.get("caption")), _split_tags(value.get("tags")))
        elif isinstance(value, str) or value is None:
            out[_norm_key(key)] = (_clean_caption(value), ())
        else:
            raise DatasetFormatError(f"{path}: entry {key!r} must be a caption string or an object "
                                     f"with 'caption' (and optional 'tags')")
    return out


# ----------------------------------------------------------------------------- list loaders
DOMAINNET_HOWTO = (
    "Get DomainNet (Peng et al., ICCV 2019) from https://ai.bu.edu/M3SDA/ : for each domain "
    "(clipart, painting, real, sketch) download the image zip and the {domain}_train.txt / "
    "{domain}_test.txt lists, unzip the images into the root (root/clipart/aircraft_carrier/...) "
    "and put the lists in the root (or in the folder named by the 'lists' option). Captions "
    "(needed by the 'adapt' protocol; TRUST uses BLIP-2 captions) go in a JSON file named by "
    "the 'captions' option: {\"clipart/aircraft_carrier/clipart_001_000018.jpg\": \"a caption\", ...}.")

GEONET_LISTS_HOWTO = (
    "Get GeoNet (Kalluri et al., CVPR 2023) from https://tarun005.github.io/GeoNet/ (images: "
    "links in github.com/ViLab-UCSD/GeoNet README) and the UniDA lists geoData/uniDA/"
    "{usa,asia}_{train,test}.txt from that repository; unpack so that root/usa/train/<class>/... exist.")


def _load_lists(options: dict, ctx, *, default_domains: tuple[str, ...], class_component: int,
                howto: str, what: str) -> DomainDataset:
    if "root" not in options:
        raise DatasetFormatError(f"{what} loader: option 'root' (dataset folder) is required")
    root = _resolve(options["root"], ctx)
    lists = _resolve(options["lists"], ctx) if options.get("lists") else root
    domains = list(options.get("domains") or default_domains)
    if not root.is_dir():
        raise _missing(f"{what} image root", root, howto)
    files: dict[tuple[str, str], Path] = {}
    for dom in domains:
        for split in ("train", "test"):
            f = lists / f"{dom}_{split}.txt"
            if not f.is_file():
                raise _missing(f"{what} list {f.name}", f, howto)
            files[(dom, split)] = f
    captions = (read_caption_file(_resolve(options["captions"], ctx), howto)
                if options.get("captions") else None)
    parsed = {}
    for key, f in files.items():
        parsed[key] = parse_list_file(f, root, class_component)
    classes = _class_table([(files[k], v[2], v[3]) for k, v in parsed.items()])
    seed = getattr(ctx, "seed", 0) if ctx is not None else 0
    limit = getattr(ctx, "limit", None) if ctx is not None else None
    out: dict[str, dict[str, DomainSplit]] = {}
    for (dom, split), (rels, abs_paths, labels, _names) in parsed.items():
        sp = _split_from_paths(abs_paths, rels, labels, captions)
        out.setdefault(dom, {})[split] = _limit(sp, limit, seed, f"{dom}/{split}")
    ds = DomainDataset(what, classes, out, {"root": str(root), "captions": bool(captions)})
    ds.validate()
    return ds


def load_domainnet(options: dict, ctx=None) -> DomainDataset:
    """DomainNet lists (see module docstring). Options: root, lists, domains, captions."""
    ds = _load_lists(options, ctx, default_domains=("clipart", "painting", "real", "sketch"),
                     class_component=1, howto=DOMAINNET_HOWTO, what="DomainNet")
    ds.name = options.get("name", "domainnet")
    return ds


def load_geonet_lists(options: dict, ctx=None) -> DomainDataset:
    """GeoNet UniDA lists (``usa/train/colobus/5892611695.jpg 13``). Options: root,
    lists, domains, captions (GeoNet metadata JSON or a caption file)."""
    ds = _load_lists(options, ctx, default_domains=("usa", "asia"), class_component=2,
                     howto=GEONET_LISTS_HOWTO, what="GeoNet lists")
    ds.name = options.get("name", "geonet_unida")
    return ds


# ----------------------------------------------------------------------------- GeoNet JSON
GEONET_HOWTO = (
    "Get GeoNet (Kalluri et al., CVPR 2023) from https://tarun005.github.io/GeoNet/ : the "
    "README of github.com/ViLab-UCSD/GeoNet links the images and the metadata JSON of "
    "GeoImNet and GeoPlaces. Unpack the images under the root so that the JSON's "
    "'filename' entries resolve against it, and point 'metadata' at the JSON file.")


def _join_text_fields(meta: dict, fields: list[str]) -> str | None:
    """The caption of a GeoNet image: its ``fields`` joined with ", " (tags as a list)."""
    parts = []
    for f in fields:
        value = ", ".join(_split_tags(meta.get(f))) if f == "tags" else _clean_caption(meta.get(f))
        if value:
            parts.append(value)
    return ", ".join(parts) or None


def _field(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise DatasetFormatError(f"{where}: missing field '{key}'")
    return obj[key]


def load_geonet(options: dict, ctx=None) -> DomainDataset:
    """GeoNet metadata JSON. Options: root (image folder), metadata (JSON path),
    domains (default usa, asia), text_fields (metadata fields joined into the caption,
    default ['caption']; TRUST joins caption, description and tags), name."""
    for req in ("root", "metadata"):
        if req not in options:
            raise DatasetFormatError(f"geonet loader: option '{req}' is required")
    root = _resolve(options["root"], ctx)
    meta_path = _resolve(options["metadata"], ctx)
    if not meta_path.is_file():
        raise _missing("GeoNet metadata JSON", meta_path, GEONET_HOWTO)
    if not root.is_dir():
        raise _missing("GeoNet image root", root, GEONET_HOWTO)
    domains = list(options.get("domains") or ("usa", "asia"))
    text_fields = list(options.get("text_fields") or ["caption"])
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{meta_path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{meta_path}: top level must be an object")
    name = str(meta_path)
    id_to_class: dict[int, str] = {}
    for i, cat in enumerate(data.get("categories") or []):
        where = f"{name}: categories[{i}]"
        cid = _field(cat, "category_id", where)
        try:
            id_to_class[int(cid)] = str(_field(cat, "category_name", where))
        except (TypeError, ValueError):
            raise DatasetFormatError(f"{where}.category_id: {cid!r} is not an integer") from None
    seed = getattr(ctx, "seed", 0) if ctx is not None else 0
    limit = getattr(ctx, "limit", None) if ctx is not None else None
    out: dict[str, dict[str, DomainSplit]] = {}
    for dom in domains:
        for split in ("train", "test"):
            key = f"{dom}_{split}"
            if key not in data:
                present = [k for k in data if k not in ("info", "categories")]
                raise DatasetFormatError(f"{name}: no '{key}' section (present: {', '.join(present)}); "
                                         f"check the 'domains' option")
            block = data[key]
            images = _field(block, "images", f"{name}: {key}")
            annotations = _field(block, "annotations", f"{name}: {key}")
            metadata = block.get("metadata") or []
            ann = {}
            for i, a in enumerate(annotations):
                where = f"{name}: {key}.annotations[{i}]"
                cat = _field(a, "category", where)
                try:
                    cat = int(cat)
                except (TypeError, ValueError):
                    raise DatasetFormatError(f"{where}.category: {cat!r} is not an integer") from None
                if cat not in id_to_class and "class_name" in a:
                    id_to_class[cat] = str(a["class_name"])
                ann[_field(a, "image_id", where)] = cat
            meta = {}
            for i, m in enumerate(metadata):
                meta[_field(m, "image_id", f"{name}: {key}.metadata[{i}]")] = m
            refs, labels, caps, tags, ids = [], [], [], [], []
            for i, im in enumerate(images):
                where = f"{name}: {key}.images[{i}]"
                iid = _field(im, "id", where)
                fn = _field(im, "filename", where)
                if iid not in ann:
                    raise DatasetFormatError(f"{where}: image id {iid!r} has no entry in {key}.annotations")
                refs.append(ImageRef.from_path(safe_join(root, str(fn), f"{where}.filename")))
                labels.append(ann[iid])
                m = meta.get(iid, {})
                caps.append(_join_text_fields(m, text_fields))
                tags.append(_split_tags(m.get("tags")))
                ids.append(str(iid))
            sp = DomainSplit(refs, np.asarray(labels, dtype=np.int64), caps, tags, ids)
            out.setdefault(dom, {})[split] = _limit(sp, limit, seed, f"{dom}/{split}")
    if not id_to_class:
        raise DatasetFormatError(f"{name}: no 'categories' and no class_name in annotations")
    k = max(id_to_class) + 1
    classes = [id_to_class.get(i, f"class_{i}") for i in range(k)]
    ds = DomainDataset(options.get("name", "geonet"), classes, out, {"root": str(root)})
    ds.validate()
    return ds


# ----------------------------------------------------------------------------- HF datasets
HF_HOWTO = ("Write the dataset with datasets' save_to_disk (a DatasetDict with splits named "
            "'{domain}_{split}', or splits 'train'/'test' with a domain column) and point 'path' at it.")


def load_hf_domains(options: dict, ctx=None) -> DomainDataset:
    """A ``datasets`` folder (``save_to_disk``). Options: path, image_column (image),
    label_column (label), domain_column (domain, used when split names are plain
    train/test), caption_column (caption), tags_column (tags), domains (keep only
    these), class_names (list; default the label feature's names)."""
    if "path" not in options:
        raise DatasetFormatError("hf_domains loader: option 'path' is required")
    path = _resolve(options["path"], ctx)
    if not path.exists():
        raise _missing("datasets folder", path, HF_HOWTO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets  # lazy: heavy import

    try:
        obj = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise DatasetFormatError(f"{path}: not a save_to_disk folder ({exc})") from None
    img_col = options.get("image_column", "image")
    lab_col = options.get("label_column", "label")
    dom_col = options.get("domain_column", "domain")
    cap_col = options.get("caption_column", "caption")
    tag_col = options.get("tags_column", "tags")
    keep = set(options.get("domains") or [])
    parts = obj.items() if isinstance(obj, datasets.DatasetDict) else [("train", obj)]
    seed = getattr(ctx, "seed", 0) if ctx is not None else 0
    limit = getattr(ctx, "limit", None) if ctx is not None else None
    out: dict[str, dict[str, DomainSplit]] = {}
    class_names = options.get("class_names")
    for key, table in parts:
        where = f"{path}: split {key!r}"
        for col in (img_col, lab_col):
            if col not in table.column_names:
                raise DatasetFormatError(f"{where}: no column {col!r} "
                                         f"(columns: {', '.join(table.column_names)})")
        feat = table.features[lab_col]
        if class_names is None and hasattr(feat, "names"):
            class_names = list(feat.names)
        m = re.fullmatch(r"(.+)_(train|val|validation|test)", key)
        if m:
            doms = [m.group(1)] * len(table)
            split = "val" if m.group(2) == "validation" else m.group(2)
        elif key in ("train", "val", "validation", "test"):
            if dom_col not in table.column_names:
                raise DatasetFormatError(f"{where}: split names carry no domain, and there is no "
                                         f"{dom_col!r} column; name splits '{{domain}}_{{split}}'")
            doms = [str(d) for d in table[dom_col]]
            split = "val" if key == "validation" else key
        else:
            raise DatasetFormatError(f"{where}: split name must be '{{domain}}_{{train|val|test}}' or "
                                     f"train/val/test")
        raw = table.cast_column(img_col, datasets.Image(decode=False))
        labels = np.asarray(table[lab_col], dtype=np.int64)
        cols = table.column_names
        caps = [_clean_caption(c) for c in table[cap_col]] if cap_col in cols else [None] * len(table)
        tags = [_split_tags(t) for t in table[tag_col]] if tag_col in cols else [()] * len(table)
        refs = [_hf_ref(raw, img_col, i, f"{path}[{key}][{i}]") for i in range(len(table))]
        doms_arr = np.asarray(doms)
        for dom in dict.fromkeys(doms):
            if keep and dom not in keep:
                continue
            idx = np.flatnonzero(doms_arr == dom)
            sp = DomainSplit([refs[i] for i in idx], labels[idx], [caps[i] for i in idx],
                             [tags[i] for i in idx], [f"{key}/{i}" for i in idx])
            out.setdefault(dom, {})[split] = _limit(sp, limit, seed, f"{dom}/{split}")
    if class_names is None:
        k = max((int(s.labels.max()) + 1 for d in out.values() for s in d.values() if len(s)), default=0)
        class_names = [f"class_{i}" for i in range(k)]
    ds = DomainDataset(options.get("name", path.name), list(class_names), out, {"path": str(path)})
    ds.validate()
    return ds


def _hf_ref(table, col: str, i: int, label: str) -> ImageRef:
    from PIL import Image

    def cell() -> dict:
        value = table[i][col]
        if not isinstance(value, dict) or (value.get("bytes") is None and value.get("path") is None):
            raise DatasetFormatError(f"{label}: image cell is empty")
        return value

    def key() -> str:
        value = cell()
        data = value["bytes"] if value.get("bytes") is not None else Path(value["path"]).read_bytes()
        return sha256_hex(b"file\0" + data)

    def load():
        value = cell()
        src = io.BytesIO(value["bytes"]) if value.get("bytes") is not None else value["path"]
        with Image.open(src) as im:
            im.load()
            return im.copy()

    return ImageRef(key, load, label)
