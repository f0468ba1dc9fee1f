"""What the aesthetics loaders return: the dataset types and their problem report.

Loaders, one module per source:

- :mod:`.ava`: AVA (Murray, Marchesotti & Perronnin, "AVA: A large-scale database
  for aesthetic visual analysis", CVPR 2012) from its text files;
- :mod:`.ava_hf`: the same fields from a Hugging Face ``datasets`` table;
- :mod:`.param_sweep`: generated images labelled with a generation parameter (the
  CFG-scale experiment of Sugiura & Yamauchi, section 4.2);
- :mod:`.synthetic`: the embedded twins of both, from the synthetic world.

MOS = sum_k k c_k / sum_k c_k (the paper's ground-truth score); the normalised vote
distribution c / sum c is kept for NIMA-style heads.

Bad rows are *reported*, not silently dropped: every row with a problem is listed
in :class:`DataReport` (file, line, problem, action taken), which the evaluator
copies into the result's ``details``. Loading fails with
:class:`~ctxbench.errors.DatasetFormatError` only when nothing valid is left, or on
the first problem when ``strict: true``.

``--limit N`` (:func:`limit_items`) keeps about N images, a seeded draw stratified so
that the evaluation stays defined: quality sets keep at least ``MIN_PER_TAG`` images
per (split, tag 1), sweeps at least ``MIN_PER_CELL`` per (prompt, parameter value);
the limit is raised to that floor when N is below it, and N at or above the set's
size is a no-op. What was kept is recorded in the dataset's ``meta["limit"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DatasetFormatError
from ...inputs import ImageRef
from .metrics import mos_from_votes

N_SCORES = 10
MAX_REPORTED = 200  # issues kept verbatim in a report (all are counted)
MIN_PER_TAG = 5     # --limit: images kept per (split, tag 1), so train/val/test each get some
MIN_PER_CELL = 2    # --limit: sweep images kept per (prompt, parameter value)

AVA_INSTRUCTIONS = (
    "AVA is not redistributed by ctxbench. Obtain the AVA_dataset release (AVA.txt, "
    "tags.txt, challenges.txt, aesthetics_image_lists/generic_test.jpgl) and the images "
    "from the dataset's authors (Murray et al., CVPR 2012) or a mirror (e.g. the download "
    "script of github.com/imfing/ava_downloader), then lay it out as "
    "$CTXBENCH_DATA/ava/{AVA.txt,tags.txt,challenges.txt,aesthetics_image_lists/,images/<id>.jpg} "
    "(or point the task's dataset.options.root elsewhere; CTXBENCH_DATA defaults to "
    "~/ctxbench-data). A Hugging Face copy saved with Dataset.save_to_disk can be used "
    "instead with source: datasets.")


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

# ----------------------------------------------------------------------------- rows
@dataclass
class RowTable:
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
                  report: DataReport) -> RowTable:
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
    return RowTable([str(i) for i in ids[sel]], votes[sel].astype(np.float64), tags[sel],
                  challenges[sel], [lines[i] for i in sel], file)


def limit_items(labels, limit: int | None, seed: int, min_per_label: int,
                what: str = "images") -> tuple[np.ndarray, dict[str, Any] | None]:
    """The items kept under ``--limit N``: indices (sorted) and a record for ``meta``.

    ``labels`` (one per item) are the strata the evaluation needs filled: each label
    keeps at least ``min_per_label`` items (all it has if fewer), so the limit is
    raised when N is below that floor (never fewer than the metric needs); the rest
    of N is shared in proportion to the labels' sizes (largest remainder), each
    label's items drawn at random with ``seed``. ``limit`` None or N >= the set keeps
    everything (the record then says so, or is None without a limit)."""
    labels = np.asarray(labels, dtype=object)
    n = len(labels)
    if limit is None:
        return np.arange(n), None
    keys = sorted(set(labels.tolist()), key=str)
    members = [np.flatnonzero(labels == k) for k in keys]
    sizes = np.array([len(m) for m in members])
    floor = np.minimum(sizes, int(min_per_label))
    target = max(int(limit), int(floor.sum()))
    if target >= n:
        keep = np.arange(n)
    else:
        spare = sizes - floor
        share = spare * (target - floor.sum()) / spare.sum()
        extra = np.floor(share).astype(int)
        left = target - floor.sum() - extra.sum()
        extra[np.argsort(-(share - extra), kind="stable")[:left]] += 1
        rng = np.random.default_rng([seed, 0xA7A])
        keep = np.sort(np.concatenate([rng.permutation(m)[:k] for m, k in
                                       zip(members, floor + extra)]))
    record = {"limit": int(limit), "kept": int(len(keep)), "of": int(n), "unit": what,
              "how": f"seeded random {what}, at least {min_per_label} per stratum "
                     f"({len(keys)} strata), the rest in proportion to their sizes"}
    if target > int(limit) and len(keep) > int(limit):
        record["raised_to"] = int(len(keep))
        record["why"] = (f"fewer than {min_per_label} {what} per stratum would leave a split "
                         f"or a correlation undefined")
    return keep, record
