"""Datasets of the aesthetics family (SPEC §5, seeds/004_*): AVA and parameter sweeps.

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

MOS = sum_k k c_k / sum_k c_k (the paper's ground-truth score); the normalised vote
distribution c / sum c is kept for NIMA-style heads.

Bad rows are *reported*, not silently dropped: every row with the wrong number of
columns, a non-integer field, negative counts, no votes, a duplicate image id, an
unknown tag id or a missing image file is listed in :class:`DataReport` (file,
line, problem, action taken) which the evaluator copies into the result's
``details``. Loading fails with :class:`~ctxbench.errors.DatasetFormatError` only
when nothing valid is left, or on the first problem when ``strict: true``.

The paper keeps only tags with at least 1,000 images (``min_tag_images: 1000``):
rarer tags are removed from an image's tags and images left without a tag are
filtered out (counted in the report).

A ``datasets`` source (``source: datasets``) reads the same fields from a Hugging
Face ``datasets`` table (a ``save_to_disk`` folder or a local data folder), with
its column names given by ``hf_columns``.

Parameter sweeps (the paper's CFG-scale experiment, §4.2): images labelled with a
generation parameter, as ``<root>/<prompt_id>/<param>/<image>.png`` or a manifest
CSV (see :func:`load_param_sweep`).
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataNotFound, DatasetFormatError, PathEscapeError
from ...inputs import ImageRef, sha256_hex
from .metrics import mos_from_votes

N_SCORES = 10
MAX_REPORTED = 200  # issues kept verbatim in a report (all are counted)

AVA_INSTRUCTIONS = (
    "AVA is not redistributed by ctxbench. Obtain the AVA_dataset release (AVA.txt, "
    "tags.txt, challenges.txt, aesthetics_image_lists/generic_test.jpgl) and the images "
    "from the dataset's authors (Murray et al., CVPR 2012) or a mirror (e.g. the download "
    "script of github.com/imfing/ava_downloader), then lay it out as "
    "$CTXBENCH_DATA/ava/{AVA.txt,tags.txt,challenges.txt,aesthetics_image_lists/,images/<id>.jpg} "
    "(or point the task's dataset.options.root elsewhere; CTXBENCH_DATA defaults to "
    "~/ctxbench-data). A Hugging Face copy saved with Dataset.save_to_disk can be used "
    "instead with source: datasets.")

SWEEP_INSTRUCTIONS = (
    "Generate the images yourself (the paper: Stable Diffusion 'Realistic Vision V6.0 B1', "
    "512x512 px, 30 sampling steps, CFG scale 1, 3, 5, 7, 9, 100 images each per prompt) and "
    "save them as <root>/<prompt_id>/<cfg>/<n>.png (e.g. nature/7/0001.png), or list them in "
    "a manifest CSV with columns path,prompt_id,param[,prompt] (paths relative to root). "
    "Prompt texts come from the manifest's 'prompt' column, the 'prompts' option, or the "
    "prompt_id with '_' read as a space.")


# ----------------------------------------------------------------------------- report
@dataclass
class DataReport:
    """Rows that were not used as they stand, and why (copied into result details)."""

    issues: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)     # problem kind -> rows
    filtered: dict[str, int] = field(default_factory=dict)   # deliberate filters -> rows
    notes: list[str] = field(default_factory=list)            # how missing optional files were handled
    strict: bool = False

    def add(self, file: str | Path, line: int | None, kind: str, problem: str, action: str) -> None:
        """Record one problem (``kind`` is a short key, ``problem`` the full message)."""
        if self.strict:
            where = f"{file}" + (f", line {line}" if line is not None else "")
            raise DatasetFormatError(f"{where}: {problem} (strict mode: fix the row or set "
                                     f"strict: false to skip and report such rows)")
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self.issues) < MAX_REPORTED:
            self.issues.append({"file": str(file), "line": line, "kind": kind,
                                "problem": problem, "action": action})

    def add_many(self, file, lines, kind: str, problems, action: str) -> None:
        for line, problem in zip(lines, problems):
            self.add(file, None if line is None else int(line), kind, problem, action)

    def filter(self, reason: str, n: int) -> None:
        if n:
            self.filtered[reason] = self.filtered.get(reason, 0) + int(n)

    @property
    def n_issues(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        return {"n_issues": self.n_issues, "by_kind": dict(self.counts),
                "issues": list(self.issues), "issues_listed": len(self.issues),
                "filtered": dict(self.filtered), "notes": list(self.notes)}


# ----------------------------------------------------------------------------- datasets
@dataclass
class AestheticsDataset:
    """Images with vote counts and up to two semantic tags (AVA or its embedded twin).

    ``split`` holds, per image, ``"test"``, ``"trainval"`` (train/validation, split by
    the evaluator), ``"unused"``, or ``""`` (no official split: the evaluator draws a
    seeded train/val/test split)."""

    name: str
    ids: list[str]
    refs: list[ImageRef]
    votes: np.ndarray                  # [N, 10] vote counts for scores 1..10
    tags: np.ndarray                   # [N, 2] int tag ids, 0 = none
    tag_names: dict[int, str]
    challenges: np.ndarray             # [N] int, 0 = unknown
    challenge_names: dict[int, str]
    split: np.ndarray                  # [N] str
    report: DataReport = field(default_factory=DataReport)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.votes = np.asarray(self.votes, dtype=np.float64).reshape(n, N_SCORES)
        self.tags = np.asarray(self.tags, dtype=np.int64).reshape(n, 2)
        self.challenges = np.asarray(self.challenges, dtype=np.int64).reshape(n)
        self.split = np.asarray(self.split, dtype=object).reshape(n)
        if len(self.refs) != n:
            raise ValueError(f"{len(self.refs)} image refs for {n} ids")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def mos(self) -> np.ndarray:
        """Mean opinion score per image, sum_k k c_k / sum_k c_k."""
        return mos_from_votes(self.votes)

    @property
    def distribution(self) -> np.ndarray:
        """Normalised vote distribution per image ``[N, 10]``."""
        return self.votes / self.votes.sum(axis=1, keepdims=True)

    def subset(self, idx) -> "AestheticsDataset":
        idx = np.asarray(idx, dtype=np.int64)
        meta = dict(self.meta)
        for key in meta.get("per_item", ()):   # per-image lists in meta follow the subset
            if meta.get(key) is not None:
                meta[key] = [meta[key][i] for i in idx]
        return replace(self, ids=[self.ids[i] for i in idx], refs=[self.refs[i] for i in idx],
                       votes=self.votes[idx], tags=self.tags[idx], challenges=self.challenges[idx],
                       split=self.split[idx], meta=meta)


@dataclass
class ParamSweepDataset:
    """Images generated at several values of one parameter (e.g. CFG scale), per prompt."""

    name: str
    refs: list[ImageRef]
    prompt_ids: np.ndarray            # [N] str
    params: np.ndarray                # [N] float
    prompts: dict[str, str]           # prompt id -> prompt text (the tag for tag-aware scoring)
    param_name: str = "param"
    report: DataReport = field(default_factory=DataReport)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prompt_ids = np.asarray(self.prompt_ids, dtype=object)
        self.params = np.asarray(self.params, dtype=np.float64)
        if not (len(self.refs) == len(self.prompt_ids) == len(self.params)):
            raise ValueError("refs, prompt_ids and params differ in length")

    def __len__(self) -> int:
        return len(self.refs)


# ----------------------------------------------------------------------------- helpers
def resolve_option_path(value: str | os.PathLike, base: Path) -> Path:
    """A loader option path: absolute as given, relative against ``base``."""
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else base / path


def safe_join(root: Path, rel: str, where: str) -> Path:
    """``root / rel`` refusing absolute paths and anything resolving outside ``root``."""
    if not rel or Path(rel).is_absolute() or rel.startswith(("/", "\\")) or \
            (len(rel) > 1 and rel[1] == ":"):
        raise PathEscapeError(f"{where}: path {rel!r} must be relative to the data root {root}")
    resolved = (root / rel).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise PathEscapeError(f"{where}: path {rel!r} resolves to {resolved}, outside the data "
                              f"root {root} (no '..' or symlinks leading out; move the file "
                              f"under the root)")
    return resolved


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
            rows.append([int(t) for t in tokens])
        except ValueError:
            bad = next(i for i, t in enumerate(tokens) if not t.lstrip("-").isdigit())
            report.add(path, lineno, "not_integer",
                       f"column {bad + 1} is {tokens[bad][:30]!r}, expected an integer", "row dropped")
            continue
        lines.append(lineno)
    if not rows:
        return np.zeros((0, 15), np.int64), np.zeros(0, np.int64)
    return np.asarray(rows, dtype=np.int64), np.asarray(lines, dtype=np.int64)


@dataclass
class _Table:
    """Validated columns before images and splits are attached."""
    ids: list[str]
    votes: np.ndarray
    tags: np.ndarray
    challenges: np.ndarray
    lines: list[Any]           # line number (files) or row index (datasets) per row
    file: str
    split: list[str] | None = None   # per row, from a ``datasets`` source's split names


def validate_rows(ids: np.ndarray, votes: np.ndarray, tags: np.ndarray, challenges: np.ndarray,
                  lines: np.ndarray, file: str, tag_names: dict[int, str] | None,
                  report: DataReport) -> _Table:
    """Vectorised checks shared by the text and ``datasets`` sources: negative counts,
    rows without votes, duplicate ids (rows dropped); unknown tag ids (tag removed)."""
    ids = np.asarray(ids, dtype=object)
    keep = np.ones(len(ids), dtype=bool)
    neg = (votes < 0).any(axis=1)
    report.add_many(file, lines[neg], "negative_votes",
                    [f"image {i}: negative vote count" for i in ids[neg]], "row dropped")
    empty = ~neg & (votes.sum(axis=1) == 0)
    report.add_many(file, lines[empty], "no_votes",
                    [f"image {i}: all 10 vote counts are 0 (MOS undefined)" for i in ids[empty]],
                    "row dropped")
    keep &= ~neg & ~empty
    _, first = np.unique(ids.astype(str), return_index=True)
    dup = np.ones(len(ids), dtype=bool)
    dup[first] = False
    dup &= keep
    report.add_many(file, lines[dup], "duplicate_id",
                    [f"image {i} appears again (first occurrence kept)" for i in ids[dup]], "row dropped")
    keep &= ~dup
    tags = tags.copy()
    if tag_names is not None:
        known = np.array(sorted(tag_names) or [0])
        unknown = (tags != 0) & ~np.isin(tags, known) & keep[:, None]
        rows = np.flatnonzero(unknown.any(axis=1))
        report.add_many(file, lines[rows], "unknown_tag",
                        [f"image {ids[r]}: tag id(s) {sorted(set(tags[r][unknown[r]].tolist()))} "
                         f"not in the tag list" for r in rows], "tag ignored")
        tags[unknown] = 0
    sel = np.flatnonzero(keep)
    return _Table([str(i) for i in ids[sel]], votes[sel].astype(np.float64), tags[sel],
                  challenges[sel], [lines[i] for i in sel], file)


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


def apply_limit(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices kept under ``--limit``: a seeded random subset, in original order."""
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng([seed, 0xA7A])
    return np.sort(rng.choice(n, size=int(limit), replace=False))


# ----------------------------------------------------------------------------- AVA loader
AVA_OPTIONS = {
    "root": "folder of the AVA_dataset release (required; relative to the task file)",
    "source": "'files' (AVA.txt, default) or 'datasets' (a Hugging Face table)",
    "ava_file": "vote table, default AVA.txt (relative to root)",
    "tags_file": "tag names, default tags.txt (relative to root; optional)",
    "challenges_file": "challenge names, default challenges.txt (relative to root; optional)",
    "test_list": "official test list, e.g. aesthetics_image_lists/generic_test.jpgl (optional)",
    "train_list": "official train list (optional; without it every non-test image is train/val)",
    "images_dir": "image folder relative to root, default images",
    "image_pattern": "file name inside images_dir, default {id}.jpg",
    "check_images": "report and drop rows whose image file is missing (default true)",
    "min_tag_images": "keep only tags with at least this many images (paper: 1000; default 0)",
    "strict": "fail on the first malformed row instead of reporting it (default false)",
    "hf_path": "source=datasets: save_to_disk folder or local data folder (relative to root)",
    "hf_split": "source=datasets: split name, or 'all' (default; a split named 'test' is the test split)",
    "hf_columns": "source=datasets: {id, image, votes | vote_columns, tag1, tag2, challenge} column names",
}


def load_ava(options: dict[str, Any], ctx) -> AestheticsDataset:
    """Loader ``ava`` (see the module docstring and :data:`AVA_OPTIONS`)."""
    if "root" not in options:
        raise DatasetFormatError(f"{ctx.task_file}: dataset.options.root is required "
                                 f"(the AVA_dataset folder)")
    root = resolve_option_path(options["root"], Path(ctx.task_file).parent)
    if not root.is_dir():
        raise DataNotFound(f"AVA data root {root} does not exist. {AVA_INSTRUCTIONS}")
    report = DataReport(strict=bool(options.get("strict", False)))
    source = options.get("source", "files")
    tags_file = options.get("tags_file", "tags.txt")
    tag_path = safe_join(root, tags_file, "dataset.options.tags_file") if tags_file else None
    tag_names = read_id_names(tag_path, report, "tags") if tag_path and tag_path.is_file() else None
    ch_file = options.get("challenges_file", "challenges.txt")
    ch_path = safe_join(root, ch_file, "dataset.options.challenges_file") if ch_file else None
    challenge_names = read_id_names(ch_path, report, "challenges") if ch_path and ch_path.is_file() else {}
    if source == "files":
        table, refs_for = _ava_files(root, options, tag_names, report)
    elif source == "datasets":
        table, refs_for, tag_names = _ava_hf(root, options, tag_names, report)
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
    sampled = keep[apply_limit(len(keep), ctx.limit, ctx.seed)]
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
        report=report, meta={"root": str(root), "source": source})


def _ava_files(root: Path, options: dict[str, Any], tag_names, report: DataReport):
    ava_path = safe_join(root, options.get("ava_file", "AVA.txt"), "dataset.options.ava_file")
    if not ava_path.is_file():
        raise DataNotFound(f"AVA vote table {ava_path} not found. {AVA_INSTRUCTIONS}")
    rows, lines = parse_ava_txt(ava_path, report)
    table = validate_rows(rows[:, 1], rows[:, 2:12], rows[:, 12:14], rows[:, 14], lines,
                          str(ava_path), tag_names, report)
    images_dir = safe_join(root, options.get("images_dir", "images"), "dataset.options.images_dir")
    pattern = options.get("image_pattern", "{id}.jpg")
    _check_pattern(pattern, "dataset.options.image_pattern")
    check = bool(options.get("check_images", True))
    if check and not images_dir.is_dir():
        raise DataNotFound(f"AVA image folder {images_dir} does not exist. {AVA_INSTRUCTIONS}")

    def refs_for(t: _Table, rows: np.ndarray) -> list[ImageRef | None]:
        paths = [images_dir / pattern.format(id=t.ids[i]) for i in rows]   # ids are digits only
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
        path = safe_join(root, opt, f"dataset.options.{'train' if label == 'trainval' else 'test'}_list")
        if not path.is_file():
            raise DataNotFound(f"image list {path} not found. {AVA_INSTRUCTIONS}")
        listed = read_id_list(path, report)
        found = np.array([index[i] for i in listed if i in index], dtype=np.int64)
        report.filter(f"ids in {path.name} without a valid row in the vote table",
                      len(listed) - len(found))
        split[found] = label
    return split


def _ava_hf(root: Path, options: dict[str, Any], tag_names, report: DataReport):
    """The ``datasets`` source: a Hugging Face table with configurable column names."""
    import datasets as hfd   # local folders only: nothing is fetched from the hub

    if "hf_path" not in options:
        raise DatasetFormatError("source: datasets needs dataset.options.hf_path (a save_to_disk "
                                 "folder or a local data folder, relative to root)")
    path = safe_join(root, options["hf_path"], "dataset.options.hf_path")
    if not path.exists():
        raise DataNotFound(f"Hugging Face AVA copy {path} not found. {AVA_INSTRUCTIONS}")
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        data = hfd.load_from_disk(str(path))
    else:
        data = hfd.load_dataset(str(path))
    want = options.get("hf_split", "all")
    if isinstance(data, hfd.DatasetDict):
        if want == "all":
            names = list(data.keys())
        elif want in data:
            names = [want]
        else:
            raise DatasetFormatError(f"{path}: split {want!r} not found; splits: {list(data.keys())}")
        parts = [data[n] for n in names]
        split_col = np.concatenate([np.full(len(p), "test" if n == "test" else "trainval", object)
                                    for n, p in zip(names, parts)])
        if "test" not in names:
            split_col[:] = ""
        data = hfd.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    else:
        split_col = np.full(len(data), "", dtype=object)
    cols = {"id": "image_id", "image": "image", "votes": "votes", "tag1": "tag1", "tag2": "tag2",
            "challenge": "challenge", **(options.get("hf_columns") or {})}
    present = set(data.column_names)

    def need(key: str) -> str:
        name = cols[key]
        if name not in present:
            raise DatasetFormatError(f"{path}: column {name!r} (hf_columns.{key}) not found; "
                                     f"columns: {sorted(present)} (set dataset.options.hf_columns)")
        return name

    n = len(data)
    if "vote_columns" in cols:
        vc = cols["vote_columns"]
        if not isinstance(vc, list) or len(vc) != N_SCORES:
            raise DatasetFormatError(f"{path}: hf_columns.vote_columns must list 10 column names")
        raw = [data[c] for c in vc]
        votes_list = list(zip(*raw))
    else:
        votes_list = data[need("votes")]
    votes = np.zeros((n, N_SCORES))
    lines = np.arange(n)
    ok = np.ones(n, dtype=bool)
    for i, v in enumerate(votes_list):   # ragged or non-numeric cells reported per row
        try:
            arr = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != (N_SCORES,) or not np.isfinite(arr).all() or \
                (arr != np.round(arr)).any():
            report.add(path, i, "bad_votes", f"row {i}: votes must be 10 integer counts, got "
                       f"{str(v)[:60]}", "row dropped")
            ok[i] = False
        else:
            votes[i] = arr
    ids = np.asarray([str(x) for x in data[need("id")]], dtype=object)

    names_to_id = {v.lower(): k for k, v in (tag_names or {}).items()}
    new_names = dict(tag_names or {})

    def tag_ids(column: str) -> np.ndarray:
        if cols[column] not in present:
            return np.zeros(n, np.int64)
        out = np.zeros(n, np.int64)
        for i, t in enumerate(data[cols[column]]):
            if t is None or t == "" or t == 0:
                continue
            if isinstance(t, (int, np.integer)):
                out[i] = int(t)
                continue
            key = str(t).strip().lower()
            if key not in names_to_id:
                names_to_id[key] = max(list(new_names) + [0]) + 1
                new_names[names_to_id[key]] = str(t).strip()
            out[i] = names_to_id[key]
        return out

    tags = np.stack([tag_ids("tag1"), tag_ids("tag2")], axis=1)
    challenges = (np.asarray(data[cols["challenge"]], dtype=np.int64)
                  if cols["challenge"] in present else np.zeros(n, np.int64))
    sel = np.flatnonzero(ok)
    table = validate_rows(ids[sel], votes[sel], tags[sel], challenges[sel], lines[sel], str(path),
                          new_names if new_names else None, report)
    pos = {str(i): k for k, i in zip(sel, ids[sel])}
    table.split = [split_col[pos[i]] for i in table.ids]
    image_col = need("image")
    feature = data.features[image_col]
    if isinstance(feature, hfd.Image):
        data = data.cast_column(image_col, hfd.Image(decode=False))

    def refs_for(t: _Table, rows: np.ndarray) -> list[ImageRef | None]:
        return [_hf_image_ref(data, image_col, int(t.lines[r]), root, path) for r in rows]

    return table, refs_for, (new_names or None)


def _hf_image_ref(data, column: str, row: int, root: Path, where: Path) -> ImageRef:
    """Lazy image of one table row: encoded bytes (keyed by their hash) or a path."""
    from PIL import Image

    def cell():
        value = data[row][column]
        if isinstance(value, dict):
            if value.get("bytes"):
                return value["bytes"]
            value = value.get("path")
        if isinstance(value, str):
            return safe_join(root, value, f"{where}: row {row}, column {column}").read_bytes()
        raise DatasetFormatError(f"{where}: row {row}, column {column}: no image bytes or path")

    def load():
        return Image.open(io.BytesIO(cell()))

    return ImageRef(lambda: sha256_hex(b"file\0" + cell()), load, f"{where}[{row}].{column}")


# ----------------------------------------------------------------------------- sweeps
SWEEP_OPTIONS = {
    "root": "folder of generated images (required; relative to the task file)",
    "manifest": "CSV with columns path,prompt_id,param[,prompt] (relative to root; optional: "
                "without it the layout <root>/<prompt_id>/<param>/<image> is read)",
    "prompts": "mapping prompt_id -> prompt text (optional)",
    "param_name": "name of the parameter, e.g. cfg_scale (default param)",
    "strict": "fail on the first malformed entry instead of reporting it (default false)",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_PARAM_RE = re.compile(r"^[A-Za-z_\-]*?(-?\d+(?:\.\d+)?)$")


def load_param_sweep(options: dict[str, Any], ctx) -> ParamSweepDataset:
    """Loader ``param_sweep``: generated images labelled with a generation parameter."""
    if "root" not in options:
        raise DatasetFormatError(f"{ctx.task_file}: dataset.options.root is required")
    root = resolve_option_path(options["root"], Path(ctx.task_file).parent)
    if not root.is_dir():
        raise DataNotFound(f"parameter-sweep image folder {root} does not exist. {SWEEP_INSTRUCTIONS}")
    report = DataReport(strict=bool(options.get("strict", False)))
    prompts: dict[str, str] = {str(k): str(v) for k, v in (options.get("prompts") or {}).items()}
    entries: list[tuple[Path, str, float]] = []
    if options.get("manifest"):
        mpath = safe_join(root, options["manifest"], "dataset.options.manifest")
        if not mpath.is_file():
            raise DataNotFound(f"manifest {mpath} not found. {SWEEP_INSTRUCTIONS}")
        with mpath.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"path", "prompt_id", "param"} - set(reader.fieldnames or [])
            if missing:
                raise DatasetFormatError(f"{mpath}, line 1: header lacks column(s) {sorted(missing)} "
                                         f"(expected path,prompt_id,param[,prompt])")
            for row in reader:
                line = reader.line_num
                try:
                    param = float(row["param"])
                    if not np.isfinite(param):
                        raise ValueError
                except (TypeError, ValueError):
                    report.add(mpath, line, "bad_param", f"param {row.get('param')!r} is not a number",
                               "row dropped")
                    continue
                if not (row.get("path") or "").strip() or not (row.get("prompt_id") or "").strip():
                    report.add(mpath, line, "empty_field", "empty path or prompt_id", "row dropped")
                    continue
                path = safe_join(root, row["path"].strip(), f"{mpath}, line {line}")
                if not path.is_file():
                    report.add(mpath, line, "missing_image", f"file {path} not found", "row dropped")
                    continue
                pid = row["prompt_id"].strip()
                if row.get("prompt") and pid not in prompts:
                    prompts[pid] = row["prompt"].strip()
                entries.append((path, pid, param))
    else:
        root_r = root.resolve()
        for pdir in sorted(p for p in root.iterdir() if p.is_dir()):
            for vdir in sorted(v for v in pdir.iterdir() if v.is_dir()):
                match = _PARAM_RE.match(vdir.name)
                if not match:
                    report.add(vdir, None, "bad_param_dir",
                               f"folder name {vdir.name!r} is not a parameter value (e.g. 7, cfg7, "
                               f"cfg_7.5)", "folder skipped")
                    continue
                for f in sorted(vdir.iterdir()):
                    if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                        if not f.resolve().is_relative_to(root_r):
                            raise PathEscapeError(f"{f}: resolves outside the data root {root}")
                        entries.append((f, pdir.name, float(match.group(1))))
    if not entries:
        raise DatasetFormatError(f"{root}: no images found ({report.n_issues} problems: "
                                 f"{report.issues[:3]}). {SWEEP_INSTRUCTIONS}")
    keep = apply_limit(len(entries), ctx.limit, ctx.seed)
    entries = [entries[i] for i in keep]
    pids = sorted({e[1] for e in entries})
    for pid in pids:
        prompts.setdefault(pid, pid.replace("_", " "))
    return ParamSweepDataset(
        name=f"sweep:{root.name}", refs=[ImageRef.from_path(e[0]) for e in entries],
        prompt_ids=[e[1] for e in entries], params=[e[2] for e in entries],
        prompts={p: prompts[p] for p in pids}, param_name=str(options.get("param_name", "param")),
        report=report, meta={"root": str(root)})

