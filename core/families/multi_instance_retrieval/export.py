"""Write an EPIC-KITCHENS-100 multi-instance retrieval challenge submission.

The submission is a pickle of a dict, as written by the challenge baselines
(``test_jpose_triplet.py`` / ``test_mmen_triplet.py`` in
github.com/mwray/Joint-Part-of-Speech-Embeddings, and ``create_submission.py``
in github.com/adrianofragomeni/MI-MM; see github.com/epic-kitchens/C5-Multi-Instance-Retrieval):

- ``version``: ``"0.1"`` (JPoSE writes the float 0.1, MI-MM the string "0.1");
- ``challenge``: ``"multi_instance_retrieval"``;
- ``sim_mat``: float32 array [n_vis, n_txt] = [9668, 3842] on the test set; row i
  is clip ``vis_ids[i]``, column j caption ``txt_ids[j]`` (higher = more similar);
- ``vis_ids``: the clips' narration_ids, in the order of ``EPIC_100_retrieval_test``;
- ``txt_ids``: the captions' narration_ids, in the order of
  ``EPIC_100_retrieval_test_sentence`` (JPoSE passes the DataFrames' pandas
  ``Index``, MI-MM numpy object arrays; we write numpy object arrays of str);
- ``sls_pt``, ``sls_tl``, ``sls_td``: the Supervision Levels Scale (Damen & Wray,
  arXiv:2008.09890, github.com/epic-kitchens/sls) of the method: pre-training
  (0 none .. 5 private data), training labels (0 none .. 5) and training data
  (0 zero-shot, 1 few-shot, 2 <= 25% of train, 3 train, 4 train+val, 5 more).
  The baselines declare 2 / 3 / 3 (trained on the EPIC train split). A frozen
  backend evaluated by ctxbench is zero-shot on EPIC, so the defaults here are
  ``sls_tl=0, sls_td=0`` and ``sls_pt=5`` (web-scale pre-training data that is not
  public, e.g. CLIP's); declare the true levels of your backend.

Portability: the pickle uses protocol 4 (as the baselines) and rebuilds arrays
with ``numpy.ndarray`` / ``numpy.array`` only, so it loads under numpy 1.x and
2.x alike (numpy 2's own array pickles name ``numpy._core``, unknown to numpy 1).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ...errors import CtxbenchError

CHALLENGE = "multi_instance_retrieval"
VERSION = "0.1"
SIMILARITY_ARTIFACT = "mir_similarity.npz"


class _PortablePickler(pickle.Pickler):
    """Arrays as ``numpy.ndarray(shape, dtype, bytearray)`` / ``numpy.array(list, object)``."""

    def reducer_override(self, obj):
        if type(obj) is np.ndarray:
            if obj.dtype == object:
                return np.array, (obj.tolist(), "O")
            arr = np.ascontiguousarray(obj)
            return np.ndarray, (arr.shape, arr.dtype.str, bytearray(arr.tobytes()))
        return NotImplemented


def find_similarity_file(source: str | Path) -> Path:
    """The similarity artifact for ``source``: the .npz itself, a result JSON (its
    ``.artifacts`` folder), or a folder searched recursively (exactly one match)."""
    source = Path(source)
    if source.is_file() and source.suffix == ".npz":
        return source
    if source.is_file() and source.suffix == ".json":
        source = source.with_suffix(".artifacts")
    if not source.is_dir():
        raise CtxbenchError(f"{source}: not found; pass a results folder, a result .json of a "
                            f"multi_instance_retrieval task, or its {SIMILARITY_ARTIFACT}")
    found = sorted(source.rglob(SIMILARITY_ARTIFACT))
    if not found:
        raise CtxbenchError(f"{source}: no {SIMILARITY_ARTIFACT} below this folder; run the "
                            f"epic100_mir task first (`ctxbench run --task epic100_mir ...`)")
    if len(found) > 1:
        listing = "\n  ".join(str(f) for f in found[:20])
        raise CtxbenchError(f"{source}: {len(found)} similarity files found; pass one of them "
                            f"(or its result .json):\n  {listing}")
    return found[0]


def read_similarity(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sim [n_vis, n_txt] float32, vis_ids, txt_ids)`` from an artifact (no pickle)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            sim, vis, txt = data["sim"], data["vis_ids"], data["txt_ids"]
    except (KeyError, ValueError, OSError) as exc:
        raise CtxbenchError(f"{path}: not a ctxbench similarity artifact with arrays sim, vis_ids, "
                            f"txt_ids ({exc})") from exc
    if sim.ndim != 2 or sim.shape != (len(vis), len(txt)):
        raise CtxbenchError(f"{path}: sim has shape {sim.shape} but there are {len(vis)} vis_ids "
                            f"and {len(txt)} txt_ids")
    if not np.isfinite(sim).all():
        raise CtxbenchError(f"{path}: sim has non-finite values")
    return sim.astype(np.float32, copy=False), vis, txt


def _level(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 5:
        raise CtxbenchError(f"{name} must be an integer level 0..5 (Supervision Levels Scale); "
                            f"got {value!r}")
    return int(value)


def submission_dict(sim: np.ndarray, vis_ids, txt_ids, *, sls_pt: int = 5, sls_tl: int = 0,
                    sls_td: int = 0) -> dict:
    return {"version": VERSION, "challenge": CHALLENGE,
            "sim_mat": np.ascontiguousarray(sim, dtype=np.float32),
            "vis_ids": np.array([str(v) for v in vis_ids], dtype=object),
            "txt_ids": np.array([str(t) for t in txt_ids], dtype=object),
            "sls_pt": _level("sls_pt", sls_pt), "sls_tl": _level("sls_tl", sls_tl),
            "sls_td": _level("sls_td", sls_td)}


OFFICIAL_SHAPE = (9668, 3842)   # EPIC-KITCHENS-100 MIR test set: clips x captions


def refuse_unofficial(path: Path, sim: np.ndarray) -> None:
    """A submission must come from a full run on the official test set: refuse a
    ``--limit`` run (its result JSON says so) and any other size (a synthetic or
    partial set), naming why and the ``--force`` override."""
    result_json = path.parent.with_suffix(".json")
    if result_json.is_file():
        import json
        try:
            limit = json.loads(result_json.read_text(encoding="utf-8")).get("limit")
        except (OSError, ValueError, AttributeError):
            limit = None
        if limit is not None:
            raise CtxbenchError(f"{path}: computed with --limit {limit}, a partial run; the "
                                "challenge needs the whole test set (re-run without --limit, or "
                                "pass --force to write it anyway)")
    if tuple(sim.shape) != OFFICIAL_SHAPE:
        raise CtxbenchError(f"{path}: similarity is {sim.shape[0]} x {sim.shape[1]}, not the "
                            f"official test set's {OFFICIAL_SHAPE[0]} x {OFFICIAL_SHAPE[1]} "
                            "(a synthetic or partial run); pass --force to write it anyway")


def export_submission(result_dir_or_similarity_file: str | Path, out_path: str | Path, *,
                      sls_pt: int = 5, sls_tl: int = 0, sls_td: int = 0,
                      force: bool = False) -> Path:
    """Write the challenge pickle for a run's similarity matrix; returns ``out_path``.

    ``result_dir_or_similarity_file``: see :func:`find_similarity_file`. A run that
    is not on the official test set (9,668 clips x 3,842 captions) or was computed
    with ``--limit`` is refused unless ``force`` (the server would refuse it)."""
    path = find_similarity_file(result_dir_or_similarity_file)
    sim, vis, txt = read_similarity(path)
    if not force:
        refuse_unofficial(path, sim)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    payload = submission_dict(sim, vis, txt, sls_pt=sls_pt, sls_tl=sls_tl, sls_td=sls_td)
    tmp = out_path.with_name(out_path.name + ".tmp")
    with open(tmp, "wb") as f:
        _PortablePickler(f, protocol=4).dump(payload)
    tmp.replace(out_path)
    return out_path
