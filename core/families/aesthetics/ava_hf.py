"""AVA from a Hugging Face ``datasets`` table (loader ``ava`` with ``source: datasets``).

``hf_path`` (relative to the AVA root) is a ``save_to_disk`` folder, a parquet file
or a local data folder, opened with :func:`ctxbench.io.hf_datasets.open_local`
(nothing is fetched from the hub). Column names default to ``image_id``, ``image``,
``votes`` (10 counts), ``tag1``, ``tag2``, ``challenge`` and are renamed with
``hf_columns`` (``vote_columns``: ten separate count columns instead of ``votes``).
Tags may be ids or names; new names get new ids. A split named ``test`` is the test
split, every other split train/validation (``hf_split`` picks one split, default
``all``). An image cell holds encoded bytes or a path, which must resolve inside the
AVA root (:func:`ctxbench.io.paths.contained` / :func:`~ctxbench.io.paths.within`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...errors import DataNotFound, DatasetFormatError
from ...inputs import ImageRef, sha256_hex
from ...io.hf_datasets import open_local
from ...io.paths import contained, within
from .data import AVA_INSTRUCTIONS, N_SCORES, DataReport, RowTable, validate_rows

DEFAULT_COLUMNS = {"id": "image_id", "image": "image", "votes": "votes", "tag1": "tag1",
                   "tag2": "tag2", "challenge": "challenge"}


def _open(root: Path, options: dict[str, Any], report: DataReport):
    """(the table, its path, per-row split labels) with ``hf_split`` applied."""
    import datasets as hfd

    if "hf_path" not in options:
        raise DatasetFormatError("source: datasets needs dataset.options.hf_path (a save_to_disk "
                                 "folder or a local data folder, relative to root)")
    path = contained(root, options["hf_path"], "dataset.options.hf_path")
    if not path.exists():
        raise DataNotFound(f"Hugging Face AVA copy {path} not found. {AVA_INSTRUCTIONS}")
    splits = open_local(path)
    want = options.get("hf_split", "all")
    if list(splits) == ["all"]:                 # one table without split names
        if want != "all":
            report.notes.append(f"{path} has no named splits: hf_split {want!r} ignored")
        data = splits["all"]
        return data, path, np.full(len(data), "", dtype=object)
    if want == "all":
        names = list(splits)
    elif want in splits:
        names = [want]
    else:
        raise DatasetFormatError(f"{path}: split {want!r} not found; splits: {list(splits)}")
    parts = [splits[n] for n in names]
    split_col = np.concatenate([np.full(len(p), "test" if n == "test" else "trainval", object)
                                for n, p in zip(names, parts)])
    if "test" not in names:
        split_col[:] = ""
    data = hfd.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    return data, path, split_col


def _votes(data, cols: dict, need: Callable[[str], str], path: Path,
           report: DataReport) -> tuple[np.ndarray, np.ndarray]:
    """Vote counts ``[n, 10]`` and the mask of rows whose cell is 10 integer counts."""
    n = len(data)
    if "vote_columns" in cols:
        vc = cols["vote_columns"]
        if not isinstance(vc, list) or len(vc) != N_SCORES:
            raise DatasetFormatError(f"{path}: hf_columns.vote_columns must list 10 column names")
        votes_list = list(zip(*[data[c] for c in vc]))
    else:
        votes_list = data[need("votes")]
    votes = np.zeros((n, N_SCORES))
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
    return votes, ok


def _tags(data, cols: dict, present: set, tag_names) -> tuple[np.ndarray, dict[int, str]]:
    """Tag ids ``[n, 2]`` from id or name cells; a new name gets the next free id."""
    n = len(data)
    names_to_id = {v.lower(): k for k, v in (tag_names or {}).items()}
    new_names = dict(tag_names or {})

    def tag_ids(column: str) -> np.ndarray:
        out = np.zeros(n, np.int64)
        if cols[column] not in present:
            return out
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

    return np.stack([tag_ids("tag1"), tag_ids("tag2")], axis=1), new_names


def ava_table(root: Path, options: dict[str, Any], tag_names, report: DataReport):
    """The ``datasets`` source: ``(validated rows, refs_for(rows), tag names or None)``."""
    import datasets as hfd

    data, path, split_col = _open(root, options, report)
    cols = {**DEFAULT_COLUMNS, **(options.get("hf_columns") or {})}
    present = set(data.column_names)

    def need(key: str) -> str:
        name = cols[key]
        if name not in present:
            raise DatasetFormatError(f"{path}: column {name!r} (hf_columns.{key}) not found; "
                                     f"columns: {sorted(present)} (set dataset.options.hf_columns)")
        return name

    n = len(data)
    votes, ok = _votes(data, cols, need, path, report)
    ids = np.asarray([str(x) for x in data[need("id")]], dtype=object)
    tags, new_names = _tags(data, cols, present, tag_names)
    challenges = (np.asarray(data[cols["challenge"]], dtype=np.int64)
                  if cols["challenge"] in present else np.zeros(n, np.int64))
    sel = np.flatnonzero(ok)
    table = validate_rows(ids[sel], votes[sel], tags[sel], challenges[sel], np.arange(n)[sel],
                          str(path), new_names if new_names else None, report)
    pos = {str(i): k for k, i in zip(sel, ids[sel])}
    table.split = [split_col[pos[i]] for i in table.ids]
    image_col = need("image")
    if isinstance(data.features[image_col], hfd.Image):
        data = data.cast_column(image_col, hfd.Image(decode=False))

    def refs_for(t: RowTable, rows: np.ndarray) -> list[ImageRef | None]:
        return [image_ref(data, image_col, int(t.lines[r]), root, path) for r in rows]

    return table, refs_for, (new_names or None)


def image_ref(data, column: str, row: int, root: Path, where: Path) -> ImageRef:
    """Lazy image of one table row: encoded bytes (keyed by their hash) or a path
    inside ``root`` (relative to it, or absolute as the table recorded it)."""
    from PIL import Image

    def cell():
        value = data[row][column]
        if isinstance(value, dict):
            if value.get("bytes"):
                return value["bytes"]
            value = value.get("path")
        if isinstance(value, str):
            at = f"{where}: row {row}, column {column}"
            path = within([root], value, at) if Path(value).is_absolute() else contained(root, value, at)
            return path.read_bytes()
        raise DatasetFormatError(f"{where}: row {row}, column {column}: no image bytes or path")

    def load():
        return Image.open(io.BytesIO(cell()))

    return ImageRef(lambda: sha256_hex(b"file\0" + cell()), load, f"{where}[{row}].{column}")
