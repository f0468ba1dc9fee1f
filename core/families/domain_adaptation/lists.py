"""List-file formats of the domain_adaptation family, and caption files.

- :func:`load_domainnet` - DomainNet image lists ``{domain}_{train,test}.txt``, lines
  ``clipart/aircraft_carrier/clipart_001_000018.jpg 0`` (Peng et al., "Moment
  Matching for Multi-Source Domain Adaptation", ICCV 2019; 345 classes, the class
  name is the second path component). Captions are not part of DomainNet (TRUST
  generates BLIP-2 captions): an optional ``captions`` file adds them (see
  :func:`read_caption_file`).
- :func:`load_geonet_lists` - GeoNet's UniDA lists, lines
  ``usa/train/colobus/5892611695.jpg 13`` (class name = third path component),
  optionally with captions from the metadata JSON (matched by file name).

Every image path of a list goes through ``ctxbench.io.paths.contained``: resolved
(symlinks followed) and refused, with ``file:line``, unless it stays under the root.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ...errors import DataNotFound, DatasetFormatError
from ...inputs import ImageRef
from ...io.paths import contained, option_path
from .data import (DomainDataset, DomainSplit, apply_limit, clean_caption, ctx_seed_limit, norm_key,
                   not_found, split_tags)


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
        abs_paths.append(contained(root, parts[0], where))
        comps = norm_key(parts[0]).split("/")
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
        c, t = (captions or {}).get(norm_key(rel), (None, ()))
        caps.append(c)
        tags.append(t)
    return DomainSplit(refs, labels, caps, tags, list(rels))



def read_caption_file(path: Path, howto: str = "") -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """Captions for list-based datasets, keyed by the image's relative path.

    Accepted forms: a JSON object ``{"clipart/x/y.jpg": "a caption", ...}`` or
    ``{"clipart/x/y.jpg": {"caption": ..., "tags": [...]}}``; or a JSON-lines file of
    ``{"path": ..., "caption": ..., "tags": ...}``; or a GeoNet/TRUST-style metadata
    JSON (``{domain}_{split}`` keys with ``images`` and ``metadata``; fields
    ``caption`` or ``blip2_cap``)."""
    if not path.is_file():
        raise DataNotFound(f"caption file not found at {path}. Produce it (formats: "
                           f"ctxbench.families.domain_adaptation.lists.read_caption_file) or remove the task's "
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
            out[norm_key(str(row["path"]))] = (clean_caption(row.get("caption")),
                                                split_tags(row.get("tags")))
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
                out[norm_key(str(fn))] = (clean_caption(cap), split_tags(meta.get("tags")))
        return out
    for key, value in data.items():
        if isinstance(value, dict):
            out[norm_key(key)] = (clean_caption(value.get("caption")), split_tags(value.get("tags")))
        elif isinstance(value, str) or value is None:
            out[norm_key(key)] = (clean_caption(value), ())
        else:
            raise DatasetFormatError(f"{path}: entry {key!r} must be a caption string or an object "
                                     f"with 'caption' (and optional 'tags')")
    return out



# ----------------------------------------------------------------------------- loaders
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
    root = option_path(options, "root", ctx)
    lists = option_path(options, "lists", ctx) or root
    domains = list(options.get("domains") or default_domains)
    if not root.is_dir():
        raise not_found(f"{what} image root", root, howto)
    files: dict[tuple[str, str], Path] = {}
    for dom in domains:
        for split in ("train", "test"):
            f = lists / f"{dom}_{split}.txt"
            if not f.is_file():
                raise not_found(f"{what} list {f.name}", f, howto)
            files[(dom, split)] = f
    captions = (read_caption_file(option_path(options, "captions", ctx), howto)
                if options.get("captions") else None)
    parsed = {}
    for key, f in files.items():
        parsed[key] = parse_list_file(f, root, class_component)
    classes = _class_table([(files[k], v[2], v[3]) for k, v in parsed.items()])
    seed, limit = ctx_seed_limit(ctx)
    out: dict[str, dict[str, DomainSplit]] = {}
    for (dom, split), (rels, abs_paths, labels, _names) in parsed.items():
        sp = _split_from_paths(abs_paths, rels, labels, captions)
        out.setdefault(dom, {})[split] = sp
    ds = DomainDataset(what, classes, out, {"root": str(root), "captions": bool(captions)})
    apply_limit(ds, limit, seed)
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
