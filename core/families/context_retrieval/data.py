"""Data structures and the JSON loader of the context_retrieval family.

Tsutsumi & Kohita, "Same image, different meaning": images are grouped (5 per
group, e.g. scenes of one movie); each group has two or more stories (context C:
title + synopsis); for each (image, story, level) there is one query. An
assignment pi maps each image to one story; a tuple (I, C, q) is a ground-truth
pair when C = pi(I). Levels: L1 objects/actions (context-independent), L2 visual
focus, L3 situation and intent, L4 atmosphere and effect.

Real data (LSMDC frames under the MPII licence, MS COCO images) comes with stories
and queries that are not public, so :func:`load_json` reads a documented JSON format
that anyone holding the data can produce::

    {
      "name": "lsmdc",                      # optional; default: the file's stem
      "meta": {...},                        # optional; copied into dataset.meta
      "groups": [                           # one per movie (the paper: 50 x 5 images)
        {"id": "movie_0001",
         "stories": [                       # two or more contexts C of this group
           {"id": "movie_0001_a", "title": "...", "synopsis": "..."}, ...],
         "images": [
           {"id": "movie_0001_img3",
            "path": "frames/movie_0001/img3.jpg",   # relative to image_root
            "story": "movie_0001_a",                # pi(image): a story of this group
            "queries": {                            # per story id of this group
              "movie_0001_a": {"L1": "...", "L2": "...", "L3": "...", "L4": "..."},
              "movie_0001_b": {"L1": "...", "L2": null, "L3": "...", "L4": "..."}}},
           ...]},
        ...]
    }

Rules, each checked with an error naming the file and the JSON field
(``groups[3].images[1].path``): group, story and image ids are non-empty strings,
unique in the file; ``story`` is one of the group's stories and has an entry in
``queries``; ``queries`` keys are stories of the same group, and every entry has all
four levels, each a string or ``null`` (``null`` = explicitly missing: that (image,
level) is not evaluated). Image paths are relative to ``image_root`` (default: the
JSON file's folder); absolute paths and paths that resolve outside the root (``..``,
symlinks) are refused (:class:`~ctxbench.errors.PathEscapeError`; the check is
:func:`ctxbench.io.paths.contained`, resolve-then-contain). Images are read lazily;
their cache key is the hash of the file's bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import DataNotFound, DatasetFormatError
from ...inputs import ImageRef
from ...io.paths import contained, option_path
from .protocol import LEVELS

__all__ = ["LEVELS", "Story", "CRImage", "CRGroup", "ContextRetrievalDataset", "load_json",
           "load_from_options", "limit_groups"]


@dataclass(frozen=True)
class Story:
    id: str
    title: str
    synopsis: str

    def context_text(self) -> str:
        """The context string handed to backends (the paper's prompt holds title + story)."""
        return f"Title: {self.title}\nStory: {self.synopsis}"


@dataclass(frozen=True)
class CRImage:
    id: str
    group: str
    ref: ImageRef


@dataclass(frozen=True)
class CRGroup:
    id: str
    image_ids: tuple[str, ...]
    story_ids: tuple[str, ...]


@dataclass
class ContextRetrievalDataset:
    """One source (e.g. LSMDC or COCO): the pool is all of its images."""

    name: str
    images: list[CRImage]
    stories: dict[str, Story]
    groups: list[CRGroup]
    assignment: dict[str, str]                 # image id -> story id (pi)
    queries: dict[tuple[str, str, str], str]   # (image id, story id, level) -> query text
    meta: dict[str, Any] = field(default_factory=dict)

    def evaluation_queries(self, level: str) -> list[tuple[int, str]]:
        """(index of target image in self.images, query text) for every image whose
        assigned story has a query at ``level``."""
        out = []
        for idx, image in enumerate(self.images):
            text = self.queries.get((image.id, self.assignment[image.id], level))
            if text is not None:
                out.append((idx, text))
        return out

    def group_of_image(self) -> list[str]:
        return [image.group for image in self.images]


# ----------------------------------------------------------------------------- JSON loader
_OBTAIN = ("The file is produced by whoever holds the data: LSMDC frames (licence from MPII, "
           "https://sites.google.com/site/describingmovies/) or MS COCO images "
           "(https://cocodataset.org), with stories and per-level queries, written in the "
           "JSON format documented in ctxbench.families.context_retrieval.data.")


class _Reader:
    """Field access with errors that name the file, the JSON path and the fix."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, problem: str, fix: str) -> DatasetFormatError:
        return DatasetFormatError(f"{self.path}: field '{where}': {problem} ({fix})")

    def get(self, obj: dict, key: str, where: str, kind, fix: str = "", optional=False):
        field_path = f"{where}.{key}" if where else key
        if key not in obj:
            if optional:
                return None
            raise self.fail(field_path, "missing", fix or f"add '{key}'")
        value = obj[key]
        if not isinstance(value, kind) or (kind is str and not value.strip()):
            want = {str: "a non-empty string", list: "a list", dict: "an object"}.get(kind, str(kind))
            raise self.fail(field_path, f"expected {want}, got {type(value).__name__} {value!r:.60}",
                            fix or f"make '{key}' {want}")
        return value


def load_json(path: str | Path, image_root: str | Path | None = None) -> ContextRetrievalDataset:
    """Read a dataset in the JSON format of the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFound(f"context_retrieval dataset file not found: {path}. {_OBTAIN}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{path}: not valid JSON: {exc}") from None
    r = _Reader(path)
    if not isinstance(doc, dict):
        raise r.fail("(top level)", "expected an object", "see the format in ctxbench.families.context_retrieval.data")
    root = Path(image_root) if image_root is not None else path.parent
    if not root.is_dir():
        raise DataNotFound(f"image root {root} (for {path}) is not a directory. {_OBTAIN}")
    root = root.resolve()
    name = r.get(doc, "name", "", str, optional=True) or path.stem
    meta = dict(r.get(doc, "meta", "", dict, optional=True) or {})
    parsed = _Parsed(r, root)
    seen_groups: set[str] = set()
    for gi, group in enumerate(r.get(doc, "groups", "", list, "add a list of groups")):
        parsed.group(gi, group, seen_groups)
    if parsed.missing_files:
        missing = parsed.missing_files
        shown = "; ".join(missing[:5]) + (f"; ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise DataNotFound(f"{path}: image files not found under {root}: {shown}. {_OBTAIN}")
    if not parsed.images:
        raise r.fail("groups", "no images", "add at least one group with images")
    meta.setdefault("source_file", str(path))
    return ContextRetrievalDataset(name, parsed.images, parsed.stories, parsed.groups,
                                   parsed.assignment, parsed.queries, meta)


class _Parsed:
    """What :func:`load_json` has read so far; each method checks one JSON object."""

    def __init__(self, reader: _Reader, root: Path):
        self.r, self.root = reader, root
        self.images: list[CRImage] = []
        self.stories: dict[str, Story] = {}
        self.groups: list[CRGroup] = []
        self.assignment: dict[str, str] = {}
        self.queries: dict[tuple[str, str, str], str] = {}
        self.missing_files: list[str] = []

    def group(self, gi: int, group: Any, seen_groups: set[str]) -> None:
        r, gw = self.r, f"groups[{gi}]"
        if not isinstance(group, dict):
            raise r.fail(gw, "expected an object", "each group is {id, stories, images}")
        gid = r.get(group, "id", gw, str)
        if gid in seen_groups:
            raise r.fail(f"{gw}.id", f"duplicate group id {gid!r}", "group ids must be unique")
        seen_groups.add(gid)
        sids: list[str] = []
        for si, story in enumerate(r.get(group, "stories", gw, list)):
            sw = f"{gw}.stories[{si}]"
            if not isinstance(story, dict):
                raise r.fail(sw, "expected an object", "each story is {id, title, synopsis}")
            sid = r.get(story, "id", sw, str)
            if sid in self.stories:
                raise r.fail(f"{sw}.id", f"duplicate story id {sid!r}", "story ids must be unique in the file")
            self.stories[sid] = Story(sid, r.get(story, "title", sw, str), r.get(story, "synopsis", sw, str))
            sids.append(sid)
        if not sids:
            raise r.fail(f"{gw}.stories", "empty", "each group needs at least one story (the paper: two or more)")
        iids = [self.image(f"{gw}.images[{ii}]", image, gid, sids)
                for ii, image in enumerate(r.get(group, "images", gw, list))]
        self.groups.append(CRGroup(gid, tuple(iids), tuple(sids)))

    def image(self, iw: str, image: Any, gid: str, sids: list[str]) -> str:
        r = self.r
        if not isinstance(image, dict):
            raise r.fail(iw, "expected an object", "each image is {id, path, story, queries}")
        iid = r.get(image, "id", iw, str)
        if iid in self.assignment:
            raise r.fail(f"{iw}.id", f"duplicate image id {iid!r}", "image ids must be unique in the file")
        file = contained(self.root, r.get(image, "path", iw, str), f"{r.path}: field '{iw}.path'")
        if not file.is_file():
            self.missing_files.append(f"{iw}.path = {file}")
        assigned = r.get(image, "story", iw, str)
        if assigned not in sids:
            raise r.fail(f"{iw}.story", f"{assigned!r} is not a story of group {gid!r}",
                         f"use one of {sids}")
        qmap = r.get(image, "queries", iw, dict)
        if assigned not in qmap:
            raise r.fail(f"{iw}.queries", f"no queries for the assigned story {assigned!r}",
                         f"add \"{assigned}\": {{\"L1\": ..., \"L2\": ..., \"L3\": ..., \"L4\": ...}}")
        for sid, levels in qmap.items():
            self.story_queries(f"{iw}.queries.{sid}", iid, sid, levels, gid, sids)
        self.images.append(CRImage(iid, gid, ImageRef.from_path(file)))
        self.assignment[iid] = assigned
        return iid

    def story_queries(self, qw: str, iid: str, sid: str, levels: Any, gid: str, sids: list[str]) -> None:
        r = self.r
        if sid not in sids:
            raise r.fail(qw, f"{sid!r} is not a story of group {gid!r}", f"use one of {sids}")
        if not isinstance(levels, dict):
            raise r.fail(qw, "expected an object", "give {\"L1\": ..., ..., \"L4\": ...}")
        for level in LEVELS:
            if level not in levels:
                raise r.fail(f"{qw}.{level}", "missing",
                             "give the query, or null if this level is explicitly missing")
            text = levels[level]
            if text is None:
                continue
            if not isinstance(text, str) or not text.strip():
                raise r.fail(f"{qw}.{level}", f"expected a non-empty string or null, got {text!r:.60}",
                             "write the query text, or null if it is missing")
            self.queries[(iid, sid, level)] = text
        extra = sorted(set(levels) - set(LEVELS))
        if extra:
            raise r.fail(f"{qw}.{extra[0]}", "unknown level", f"levels are {', '.join(LEVELS)}")


def limit_groups(ds: ContextRetrievalDataset, limit: int | None) -> ContextRetrievalDataset:
    """``--limit N``: the first groups holding at most N images (whole groups, so the
    cluster structure stays intact; at least one group). ``ds`` itself when nothing
    is cut."""
    if not limit or len(ds.images) <= limit:
        return ds
    keep_groups, count = [], 0
    for g in ds.groups:
        if count and count + len(g.image_ids) > limit:
            break
        keep_groups.append(g)
        count += len(g.image_ids)
    ids = {i for g in keep_groups for i in g.image_ids}
    return ContextRetrievalDataset(
        name=ds.name, images=[im for im in ds.images if im.id in ids],
        stories={s: st for s, st in ds.stories.items() if any(s in g.story_ids for g in keep_groups)},
        groups=keep_groups, assignment={i: s for i, s in ds.assignment.items() if i in ids},
        queries={k: v for k, v in ds.queries.items() if k[0] in ids},
        meta={**ds.meta, "limited_to": count})


def load_from_options(options: dict, ctx) -> ContextRetrievalDataset:
    """The ``context_retrieval_json`` loader: ``path`` and ``image_root`` are task-relative
    (:func:`ctxbench.io.paths.option_path`)."""
    if options.get("path") is None:
        raise ValueError("dataset option 'path' is required (the dataset's JSON file)")
    ds = load_json(option_path(options, "path", ctx), option_path(options, "image_root", ctx))
    return limit_groups(ds, getattr(ctx, "limit", None))
