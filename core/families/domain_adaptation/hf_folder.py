"""A Hugging Face ``datasets`` folder (``save_to_disk``) as a domain_adaptation dataset.

Opened through ``ctxbench.io.hf_datasets.open_local`` (nothing is fetched). Splits are
named ``{domain}_{train|val|test}``, or ``train``/``val``/``test`` with a domain
column. An image cell holds bytes, or a path: a path a table recorded must lie in
the dataset folder (``ctxbench.io.paths.within`` for absolute paths, ``contained``
for relative ones, symlinks followed in both).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from ...errors import DatasetFormatError
from ...inputs import ImageRef, sha256_hex
from ...io.hf_datasets import open_local
from ...io.paths import contained, option_path, within
from .data import DomainDataset, DomainSplit, apply_limit, clean_caption, ctx_seed_limit, not_found, split_tags

HF_HOWTO = ("Write the dataset with datasets' save_to_disk (a DatasetDict with splits named "
            "'{domain}_{split}', or splits 'train'/'test' with a domain column) and point 'path' at it.")
PLAIN_SPLITS = ("train", "val", "validation", "test")


def _domains_and_split(key: str, table, dom_col: str, where: str) -> tuple[list[str], str]:
    """(domain of each row, split name) of the datasets split ``key``."""
    m = re.fullmatch(r"(.+)_(train|val|validation|test)", key)
    if m:
        return [m.group(1)] * len(table), "val" if m.group(2) == "validation" else m.group(2)
    if key in PLAIN_SPLITS:
        if dom_col not in table.column_names:
            raise DatasetFormatError(f"{where}: split names carry no domain, and there is no "
                                     f"{dom_col!r} column; name splits '{{domain}}_{{split}}'")
        return [str(d) for d in table[dom_col]], "val" if key == "validation" else key
    raise DatasetFormatError(f"{where}: split name must be '{{domain}}_{{train|val|test}}' or "
                             f"train/val/test")


def load_hf_domains(options: dict, ctx=None) -> DomainDataset:
    """A ``datasets`` folder (``save_to_disk``). Options: path, image_column (image),
    label_column (label), domain_column (domain, used when split names are plain
    train/test), caption_column (caption), tags_column (tags), domains (keep only
    these), class_names (list; default the label feature's names)."""
    import datasets  # lazy: heavy import (only for the Image feature)

    if "path" not in options:
        raise DatasetFormatError("hf_domains loader: option 'path' is required")
    path = option_path(options, "path", ctx)
    if not path.exists():
        raise not_found("datasets folder", path, HF_HOWTO)
    parts = open_local(path)
    if list(parts) == ["all"]:     # a single table: read as the train split, as before
        parts = {"train": parts["all"]}
    cols = {name: options.get(f"{name}_column", name) for name in ("image", "label", "domain", "caption", "tags")}
    keep = set(options.get("domains") or [])
    seed, limit = ctx_seed_limit(ctx)
    out: dict[str, dict[str, DomainSplit]] = {}
    class_names = options.get("class_names")
    for key, table in parts.items():
        where = f"{path}: split {key!r}"
        for col in (cols["image"], cols["label"]):
            if col not in table.column_names:
                raise DatasetFormatError(f"{where}: no column {col!r} "
                                         f"(columns: {', '.join(table.column_names)})")
        feat = table.features[cols["label"]]
        if class_names is None and hasattr(feat, "names"):
            class_names = list(feat.names)
        doms, split = _domains_and_split(key, table, cols["domain"], where)
        raw = table.cast_column(cols["image"], datasets.Image(decode=False))
        labels = np.asarray(table[cols["label"]], dtype=np.int64)
        names = table.column_names
        caps = ([clean_caption(c) for c in table[cols["caption"]]] if cols["caption"] in names
                else [None] * len(table))
        tags = [split_tags(t) for t in table[cols["tags"]]] if cols["tags"] in names else [()] * len(table)
        refs = [_hf_ref(raw, cols["image"], i, f"{path}[{key}][{i}]", path) for i in range(len(table))]
        doms_arr = np.asarray(doms)
        for dom in dict.fromkeys(doms):
            if keep and dom not in keep:
                continue
            idx = np.flatnonzero(doms_arr == dom)
            sp = DomainSplit([refs[i] for i in idx], labels[idx], [caps[i] for i in idx],
                             [tags[i] for i in idx], [f"{key}/{i}" for i in idx])
            out.setdefault(dom, {})[split] = sp
    if class_names is None:
        k = max((int(s.labels.max()) + 1 for d in out.values() for s in d.values() if len(s)), default=0)
        class_names = [f"class_{i}" for i in range(k)]
    ds = DomainDataset(options.get("name", path.name), list(class_names), out, {"path": str(path)})
    apply_limit(ds, limit, seed)
    ds.validate()
    return ds


def _image_file(recorded: str, root: Path, label: str) -> Path:
    """The file an image cell's ``path`` names, kept inside the dataset folder."""
    if Path(recorded).is_absolute():
        return within([root], recorded, f"{label}: image path")
    return contained(root, recorded, f"{label}: image path")


def _hf_ref(table, col: str, i: int, label: str, root: Path) -> ImageRef:
    from PIL import Image

    def cell() -> dict:
        value = table[i][col]
        if not isinstance(value, dict) or (value.get("bytes") is None and value.get("path") is None):
            raise DatasetFormatError(f"{label}: image cell is empty")
        return value

    def key() -> str:
        value = cell()
        data = (value["bytes"] if value.get("bytes") is not None
                else _image_file(value["path"], root, label).read_bytes())
        return sha256_hex(b"file\0" + data)

    def load():
        value = cell()
        src = (io.BytesIO(value["bytes"]) if value.get("bytes") is not None
               else _image_file(value["path"], root, label))
        with Image.open(src) as im:
            im.load()
            return im.copy()

    return ImageRef(key, load, label)
