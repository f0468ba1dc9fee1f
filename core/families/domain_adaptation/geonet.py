"""GeoNet's metadata JSON (Kalluri et al., "GeoNet: Benchmarking Unsupervised
Adaptation across Geographies", CVPR 2023; ViLab-UCSD/GeoNet ``loader/json_loader.py``).

The JSON holds ``categories`` [{category_id, category_name}] and, per
``{usa|asia}_{train|test}``: ``images`` [{id, filename}], ``annotations``
[{image_id, category, class_name}], ``metadata`` [{image_id, caption, tags, ...}];
they are joined on the image id. Every ``filename`` goes through
``ctxbench.io.paths.contained`` (resolved, symlinks followed, kept under the root).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ...errors import DatasetFormatError
from ...inputs import ImageRef
from ...io.paths import contained, option_path
from .data import (DomainDataset, DomainSplit, apply_limit, clean_caption, ctx_seed_limit, not_found,
                   require_field, split_tags)

GEONET_HOWTO = (
    "Get GeoNet (Kalluri et al., CVPR 2023) from https://tarun005.github.io/GeoNet/ : the "
    "README of github.com/ViLab-UCSD/GeoNet links the images and the metadata JSON of "
    "GeoImNet and GeoPlaces. Unpack the images under the root so that the JSON's "
    "'filename' entries resolve against it, and point 'metadata' at the JSON file.")


def _join_text_fields(meta: dict, fields: list[str]) -> str | None:
    """The caption of a GeoNet image: its ``fields`` joined with ", " (tags as a list)."""
    parts = []
    for f in fields:
        value = ", ".join(split_tags(meta.get(f))) if f == "tags" else clean_caption(meta.get(f))
        if value:
            parts.append(value)
    return ", ".join(parts) or None


def _read_json(meta_path) -> dict:
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{meta_path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{meta_path}: top level must be an object")
    return data


def _categories(data: dict, name: str) -> dict[int, str]:
    """category_id -> category_name of the ``categories`` list."""
    id_to_class: dict[int, str] = {}
    for i, cat in enumerate(data.get("categories") or []):
        where = f"{name}: categories[{i}]"
        cid = require_field(cat, "category_id", where)
        try:
            id_to_class[int(cid)] = str(require_field(cat, "category_name", where))
        except (TypeError, ValueError):
            raise DatasetFormatError(f"{where}.category_id: {cid!r} is not an integer") from None
    return id_to_class


def _annotations(block: dict, key: str, name: str, id_to_class: dict[int, str]) -> dict[Any, int]:
    """image id -> category of one section; class names found there fill ``id_to_class``."""
    ann = {}
    for i, a in enumerate(require_field(block, "annotations", f"{name}: {key}")):
        where = f"{name}: {key}.annotations[{i}]"
        cat = require_field(a, "category", where)
        try:
            cat = int(cat)
        except (TypeError, ValueError):
            raise DatasetFormatError(f"{where}.category: {cat!r} is not an integer") from None
        if cat not in id_to_class and "class_name" in a:
            id_to_class[cat] = str(a["class_name"])
        ann[require_field(a, "image_id", where)] = cat
    return ann


def _section(data: dict, key: str, name: str, root, text_fields: list[str],
             id_to_class: dict[int, str]) -> DomainSplit:
    """One ``{domain}_{split}`` section: images joined with annotations and metadata."""
    if key not in data:
        present = [k for k in data if k not in ("info", "categories")]
        raise DatasetFormatError(f"{name}: no '{key}' section (present: {', '.join(present)}); "
                                 f"check the 'domains' option")
    block = data[key]
    images = require_field(block, "images", f"{name}: {key}")
    ann = _annotations(block, key, name, id_to_class)
    meta = {}
    for i, m in enumerate(block.get("metadata") or []):
        meta[require_field(m, "image_id", f"{name}: {key}.metadata[{i}]")] = m
    refs, labels, caps, tags, ids = [], [], [], [], []
    for i, im in enumerate(images):
        where = f"{name}: {key}.images[{i}]"
        iid = require_field(im, "id", where)
        fn = require_field(im, "filename", where)
        if iid not in ann:
            raise DatasetFormatError(f"{where}: image id {iid!r} has no entry in {key}.annotations")
        refs.append(ImageRef.from_path(contained(root, str(fn), f"{where}.filename")))
        labels.append(ann[iid])
        m = meta.get(iid, {})
        caps.append(_join_text_fields(m, text_fields))
        tags.append(split_tags(m.get("tags")))
        ids.append(str(iid))
    return DomainSplit(refs, np.asarray(labels, dtype=np.int64), caps, tags, ids)


def load_geonet(options: dict, ctx=None) -> DomainDataset:
    """GeoNet metadata JSON. Options: root (image folder), metadata (JSON path),
    domains (default usa, asia), text_fields (metadata fields joined into the caption,
    default ['caption']; TRUST joins caption, description and tags), name."""
    for req in ("root", "metadata"):
        if req not in options:
            raise DatasetFormatError(f"geonet loader: option '{req}' is required")
    root = option_path(options, "root", ctx)
    meta_path = option_path(options, "metadata", ctx)
    if not meta_path.is_file():
        raise not_found("GeoNet metadata JSON", meta_path, GEONET_HOWTO)
    if not root.is_dir():
        raise not_found("GeoNet image root", root, GEONET_HOWTO)
    domains = list(options.get("domains") or ("usa", "asia"))
    text_fields = list(options.get("text_fields") or ["caption"])
    data = _read_json(meta_path)
    name = str(meta_path)
    id_to_class = _categories(data, name)
    seed, limit = ctx_seed_limit(ctx)
    out: dict[str, dict[str, DomainSplit]] = {}
    for dom in domains:
        for split in ("train", "test"):
            sp = _section(data, f"{dom}_{split}", name, root, text_fields, id_to_class)
            out.setdefault(dom, {})[split] = sp
    if not id_to_class:
        raise DatasetFormatError(f"{name}: no 'categories' and no class_name in annotations")
    k = max(id_to_class) + 1
    classes = [id_to_class.get(i, f"class_{i}") for i in range(k)]
    ds = DomainDataset(options.get("name", "geonet"), classes, out, {"root": str(root)})
    apply_limit(ds, limit, seed)
    ds.validate()
    return ds
