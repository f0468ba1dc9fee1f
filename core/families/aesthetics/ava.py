"""The AVA loader (loader ``ava``) and its text formats.

AVA (Murray, Marchesotti & Perronnin, "AVA: A large-scale database for aesthetic
visual analysis", CVPR 2012) as distributed in the ``AVA_dataset`` folder:

- ``AVA.txt``: one image per line, 15 whitespace-separated integers: index, image
  id, the vote counts c_1..c_10 for scores 1..10, semantic tag 1, semantic tag 2
  (0 = none), challenge id.
- ``tags.txt``: 66 lines ``<id> <name>`` (names may contain spaces).
- ``challenges.txt``: lines ``<id> <name>``.
- ``aesthetics_image_lists/generic_test.jpgl`` (and ``generic_ls_train.jpgl``): one
  image id per line, the official generic test (train) list.
- images: ``<root>/<images_dir>/<image_pattern>`` with ``{id}`` the image id
  (default ``images/{id}.jpg``).

Every row with the wrong number of columns, a non-integer field, negative counts, no
votes, a duplicate image id, an unknown tag id or a missing image file is reported
(:class:`~ctxbench.families.aesthetics.data.DataReport`). Paths: ``root`` is taken
against the task file (:func:`ctxbench.io.paths.option_path`); every file under it,
image files included, must resolve inside it (:func:`ctxbench.io.paths.contained`:
a symlink leading out is refused).

The paper keeps only tags with at least 1,000 images (``min_tag_images: 1000``):
rarer tags are removed from an image's tags and images left without a tag are
filtered out (counted in the report).

``source: datasets`` reads the same fields from a Hugging Face ``datasets`` table
(:mod:`.ava_hf`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataNotFound, DatasetFormatError, PathEscapeError
from ...inputs import ImageRef
from ...io.paths import contained, option_path
from .data import (AVA_INSTRUCTIONS, MIN_PER_TAG, AestheticsDataset, DataReport, RowTable,
                   limit_items, validate_rows)

# ----------------------------------------------------------------------------- text files
def _check_pattern(pattern: str, where: str) -> None:
    """An image pattern may use only ``{id}`` and must stay relative, without '..'."""
    if "{id}" not in pattern:
        raise DatasetFormatError(f"{where}: image_pattern {pattern!r} must contain '{{id}}'")
    probe = pattern.replace("{id}", "0")
    if "{" in probe or "}" in probe:
        raise DatasetFormatError(f"{where}: image_pattern {pattern!r} may use only the "
                                 f"placeholder '{{id}}'")
    parts = Path(probe).parts
    if Path(probe).is_absolute() or ".." in parts or probe.startswith(("/", "\\")):
        raise PathEscapeError(f"{where}: image_pattern {pattern!r} must be a relative path "
                              f"without '..' (it is joined to the images folder)")



def read_id_names(path: Path, report: DataReport, kind: str) -> dict[int, str]:
    """``<int id> <name>`` lines (tags.txt, challenges.txt); bad lines are reported."""
    out: dict[int, str] = {}
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        parts = line.strip().split(None, 1)
        if len(parts) != 2 or not parts[0].lstrip("-").isdigit():
            report.add(path, lineno, f"{kind}_malformed",
                       f"expected '<integer id> <name>', got {line.strip()[:60]!r}", "line ignored")
            continue
        key = int(parts[0])
        if key in out:
            report.add(path, lineno, f"{kind}_duplicate", f"duplicate id {key}", "later line ignored")
            continue
        out[key] = parts[1].strip()
    return out


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="strict").splitlines()
    except UnicodeDecodeError:
        return path.read_text(encoding="latin-1").splitlines()


def read_id_list(path: Path, report: DataReport) -> list[str]:
    """An image list (``.jpgl``): one image id per line (a trailing ``.jpg`` is allowed)."""
    ids = []
    for lineno, line in enumerate(_read_lines(path), 1):
        token = line.strip()
        if not token:
            continue
        token = token[:-4] if token.lower().endswith(".jpg") else token
        if not token.isdigit():
            report.add(path, lineno, "list_malformed", f"not an image id: {line.strip()[:60]!r}",
                       "line ignored")
            continue
        ids.append(str(int(token)))
    return ids


def parse_ava_txt(path: Path, report: DataReport) -> tuple[np.ndarray, np.ndarray]:
    """Rows of AVA.txt with 15 integer fields, as ``([M, 15] int64, [M] line numbers)``.
    Rows with the wrong column count or non-integer fields are reported."""
    rows: list[list[int]] = []
    lines: list[int] = []
    for lineno, line in enumerate(_read_lines(path), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 15:
            report.add(path, lineno, "wrong_column_count",
                       f"expected 15 columns (index, image id, 10 vote counts, tag 1, tag 2, "
                       f"challenge), got {len(tokens)}", "row dropped")
            continue
        try:
            values = [int(t) for t in tokens]
        except ValueError:
            bad = next(i for i, t in enumerate(tokens) if not t.lstrip("-").isdigit())
            report.add(path, lineno, "not_integer",
                       f"column {bad + 1} is {tokens[bad][:30]!r}, expected an integer", "row dropped")
            continue
        too_big = next((i for i, v in enumerate(values) if abs(v) >= 2 ** 62), None)
        if too_big is not None:   # would overflow int64 for the whole file, not just this row
            report.add(path, lineno, "integer_overflow",
                       f"column {too_big + 1} is {tokens[too_big][:30]!r}, too large", "row dropped")
            continue
        rows.append(values)
        lines.append(lineno)
    if not rows:
        return np.zeros((0, 15), np.int64), np.zeros(0, np.int64)
    return np.asarray(rows, dtype=np.int64), np.asarray(lines, dtype=np.int64)


def filter_rare_tags(tags: np.ndarray, min_images: int, report: DataReport) -> tuple[np.ndarray, np.ndarray]:
    """The paper's filter: drop tags used by fewer than ``min_images`` images; returns
    (new tags, mask of images that still have a tag)."""
    if min_images <= 0:
        return tags, np.ones(len(tags), dtype=bool)
    flat = tags[tags > 0]
    ids, counts = np.unique(flat, return_counts=True)
    rare = ids[counts < min_images]
    tags = np.where(np.isin(tags, rare), 0, tags)
    keep = (tags > 0).any(axis=1)
    report.filter(f"tags with fewer than {min_images} images removed", len(rare))
    report.filter(f"images without a tag used by >= {min_images} images", int((~keep).sum()))
    return tags, keep


# ----------------------------------------------------------------------------- loader
def load_ava(options: dict[str, Any], ctx) -> AestheticsDataset:
    """Loader ``ava`` (module docstring; options: :data:`.options.AVA_OPTIONS`)."""
    if "root" not in options:
        raise DatasetFormatError(f"{ctx.task_file}: dataset.options.root is required "
                                 f"(the AVA_dataset folder)")
    root = option_path(options, "root", ctx)
    if not root.is_dir():
        raise DataNotFound(f"AVA data root {root} does not exist. {AVA_INSTRUCTIONS}")
    report = DataReport(strict=bool(options.get("strict", False)))
    source = options.get("source", "files")
    tags_file = options.get("tags_file", "tags.txt")
    tag_path = contained(root, tags_file, "dataset.options.tags_file") if tags_file else None
    tag_names = read_id_names(tag_path, report, "tags") if tag_path and tag_path.is_file() else None
    ch_file = options.get("challenges_file", "challenges.txt")
    ch_path = contained(root, ch_file, "dataset.options.challenges_file") if ch_file else None
    challenge_names = read_id_names(ch_path, report, "challenges") if ch_path and ch_path.is_file() else {}
    if source == "files":
        table, refs_for = _ava_files(root, options, tag_names, report)
    elif source == "datasets":
        from .ava_hf import ava_table
        table, refs_for, tag_names = ava_table(root, options, tag_names, report)
    else:
        raise DatasetFormatError(f"{ctx.task_file}: dataset.options.source must be 'files' or "
                                 f"'datasets', got {source!r}")
    if tag_names is None:
        tag_names = {int(t): f"tag {int(t)}" for t in np.unique(table.tags[table.tags > 0])}
        report.notes.append(f"no tag list ({tags_file!r} not found under {root}): tags are "
                            f"named 'tag <id>'")

    tags, has_tag = filter_rare_tags(table.tags, int(options.get("min_tag_images", 0)), report)
    split = np.full(len(table.ids), "", dtype=object)
    if table.split is not None:
        split = np.asarray(table.split, dtype=object)
    split = _official_split(root, options, table.ids, split, report)
    keep = np.flatnonzero(has_tag & (split != "unused"))
    report.filter("images outside the official train and test lists", int(((split == "unused") & has_tag).sum()))
    strata = [f"{split[i]}/{tags[i, 0]}" for i in keep]     # (split, tag 1)
    chosen, limited = limit_items(strata, ctx.limit, ctx.seed, MIN_PER_TAG)
    sampled = keep[chosen]
    if ctx.limit is not None:
        report.filter(f"--limit {ctx.limit}: images not sampled", len(keep) - len(sampled))
    refs_kept = refs_for(table, sampled)
    present = np.array([r is not None for r in refs_kept], dtype=bool)
    refs_all = dict(zip(sampled[present].tolist(), [r for r in refs_kept if r is not None]))
    keep = sampled[present]
    if len(keep) == 0:
        raise DatasetFormatError(
            f"{root / options.get('ava_file', 'AVA.txt') if source == 'files' else root}: no usable "
            f"image is left ({report.n_issues} problem rows, filters {report.filtered}; first "
            f"problems: {report.issues[:3]})")
    return AestheticsDataset(
        name=f"ava:{root.name}", ids=[table.ids[i] for i in keep], refs=[refs_all[i] for i in keep],
        votes=table.votes[keep], tags=tags[keep], tag_names=dict(sorted(tag_names.items())),
        challenges=table.challenges[keep], challenge_names=challenge_names, split=split[keep],
        report=report, meta={"root": str(root), "source": source,
                             **({"limit": {**limited, "kept": int(len(keep))}} if limited else {})})


def _ava_files(root: Path, options: dict[str, Any], tag_names, report: DataReport):
    ava_path = contained(root, options.get("ava_file", "AVA.txt"), "dataset.options.ava_file")
    if not ava_path.is_file():
        raise DataNotFound(f"AVA vote table {ava_path} not found. {AVA_INSTRUCTIONS}")
    rows, lines = parse_ava_txt(ava_path, report)
    table = validate_rows(rows[:, 1], rows[:, 2:12], rows[:, 12:14], rows[:, 14], lines,
                          str(ava_path), tag_names, report)
    images_dir = contained(root, options.get("images_dir", "images"), "dataset.options.images_dir")
    pattern = options.get("image_pattern", "{id}.jpg")
    _check_pattern(pattern, "dataset.options.image_pattern")
    check = bool(options.get("check_images", True))
    if check and not images_dir.is_dir():
        raise DataNotFound(f"AVA image folder {images_dir} does not exist. {AVA_INSTRUCTIONS}")

    def refs_for(t: RowTable, rows: np.ndarray) -> list[ImageRef | None]:
        # resolved inside the images folder: an image that is a symlink out is refused
        paths = [contained(images_dir, pattern.format(id=t.ids[i]),    # ids are digits only
                           f"{t.file}, line {t.lines[i]}: image {t.ids[i]}") for i in rows]
        if check:
            exists = np.fromiter((p.is_file() for p in paths), dtype=bool, count=len(paths))
            missing = np.flatnonzero(~exists)
            report.add_many(t.file, [t.lines[rows[i]] for i in missing], "missing_image",
                            [f"image {t.ids[rows[i]]}: file {paths[i]} not found" for i in missing],
                            "row dropped")
        else:
            exists = np.ones(len(paths), dtype=bool)
        return [ImageRef.from_path(p) if ok else None for p, ok in zip(paths, exists)]

    return table, refs_for


def _official_split(root: Path, options, ids: list[str], split: np.ndarray,
                    report: DataReport) -> np.ndarray:
    """Mark ``test`` / ``trainval`` / ``unused`` from the official lists, if given."""
    test_opt, train_opt = options.get("test_list"), options.get("train_list")
    if not test_opt:
        if train_opt:
            raise DatasetFormatError("dataset.options.train_list is given without test_list "
                                     "(give both, or only test_list)")
        return split
    index = {i: k for k, i in enumerate(ids)}
    split = np.full(len(ids), "unused" if train_opt else "trainval", dtype=object)
    for opt, label in ((train_opt, "trainval"), (test_opt, "test")):
        if not opt:
            continue
        path = contained(root, opt, f"dataset.options.{'train' if label == 'trainval' else 'test'}_list")
        if not path.is_file():
            raise DataNotFound(f"image list {path} not found. {AVA_INSTRUCTIONS}")
        listed = read_id_list(path, report)
        found = np.array([index[i] for i in listed if i in index], dtype=np.int64)
        report.filter(f"ids in {path.name} without a valid row in the vote table",
                      len(listed) - len(found))
        split[found] = label
    return split

