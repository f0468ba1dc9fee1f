"""Reader of Hugging Face ``datasets`` sources (formats: :mod:`.data`), opened through
:func:`ctxbench.io.hf_datasets.open_dataset` (local folder, ``save_to_disk`` folder,
parquet, or a hub id; offline detection there)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable

from ...errors import DatasetFormatError
from ...inputs import ImageRef, sha256_hex
from ...io.hf_datasets import open_dataset
from ...io.paths import within
from .data import DEFAULT_TAG_THRESHOLD, SentimentDataset, _resolve_classes, _Rows, to_polarity

HF_SPLITS = {"train": ("train",), "val": ("validation", "val", "valid", "dev"),
             "test": ("test",)}



def cache_roots() -> list[Path]:
    """The local ``datasets`` and hub caches: image paths of hub data may point there."""
    import datasets
    from huggingface_hub import constants as hub_constants
    return [Path(datasets.config.HF_DATASETS_CACHE).expanduser().resolve(),
            Path(hub_constants.HF_HUB_CACHE).expanduser().resolve()]


def _hf_image_ref(value: Any, where: str, allowed_roots: list[Path]) -> ImageRef:
    """An undecoded ``datasets.Image`` value ({'bytes', 'path'}) as a lazy ImageRef; a
    path is accepted only inside the dataset folder or the caches."""
    from PIL import Image

    if isinstance(value, dict) and value.get("bytes"):
        data = value["bytes"]

        def load():
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                return im.copy()
        return ImageRef(sha256_hex(b"file\0" + data), load, value.get("path") or where)
    if isinstance(value, dict) and value.get("path"):
        return ImageRef.from_path(within(allowed_roots, value["path"], f"{where}: image"))
    raise DatasetFormatError(f"{where}: image column holds {type(value).__name__}, expected a "
                             "datasets.Image value (bytes or path)")


def _choose_splits(dd: dict, splits: dict[str, str] | None, path: str) -> dict[str, str]:
    """ctxbench split -> the source's split name (``{"_all": name}`` for un-split data)."""
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
    return chosen


def load_hf(path: str, image_column: str = "image", label_column: str | None = "label",
            distribution_column: str | None = None, caption_column: str | None = None,
            scene_column: str | None = None, tags_column: str | None = None,
            text_columns: dict[str, str] | None = None, config: str | None = None,
            revision: str | None = None, classes: Iterable[str] | None = None,
            tag_threshold: float = DEFAULT_TAG_THRESHOLD, polarity: bool = False,
            splits: dict[str, str] | None = None, base: Path | None = None) -> SentimentDataset:
    """A Hugging Face ``datasets`` source. The dataset's own train/validation/test
    splits are used (``splits`` maps ctxbench's train/val/test to other names); a
    single split is treated as un-split data. ``classes`` default to the label
    column's ``ClassLabel`` names. A relative local ``path`` is taken against ``base``
    (the task file's folder)."""
    import datasets

    dd, local_root = open_dataset(str(path), config, revision, base=base)
    chosen = _choose_splits(dd, splits, path)
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
    allowed = ([local_root] if local_root else []) + cache_roots()
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
