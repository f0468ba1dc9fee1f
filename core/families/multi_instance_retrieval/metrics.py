"""EPIC-KITCHENS-100 multi-instance retrieval metrics: mAP and nDCG.

Exactly the official evaluation of the EPIC-KITCHENS-100 MIR challenge,
``src/evaluation/mAP.py`` and ``src/evaluation/nDCG.py`` in
github.com/mwray/Joint-Part-of-Speech-Embeddings (Wray et al., ICCV 2019;
Damen et al., IJCV 2022), for a similarity ``S`` [n_vis, n_txt] and a soft
relevancy ``R`` of the same shape. A query is a row (V->T: ``S, R``; T->V:
``S.T, R.T``); its items are ranked by similarity, highest first.

mAP (mAP.py). An item is *relevant* iff ``R == 1`` exactly, but the precision
at rank k sums the *soft* relevances of the top k items:
``P(k) = sum_{i<=k} R_(i) / k`` and ``AP = sum_{k: R_(k) == 1} P(k) / #{R == 1}``.

nDCG (nDCG.py). Linear gains ``R``, discount ``1 / log2(rank + 1)`` (rank from 1),
each query truncated at ``K = #{R > 0}`` in that query:
``DCG = sum_{k<=K} R_(k) / log2(k + 1)``; IDCG is the same sum over the query's
``R`` sorted in descending order; ``nDCG = DCG / IDCG``.

Queries without an item (NaN). The official code divides by the number of
relevant items (mAP) and by IDCG (nDCG) with numpy semantics: a query with no
item of ``R == 1`` gets AP = 0/0 = NaN, a query with no ``R > 0`` gets nDCG =
NaN, and ``np.mean`` then makes the whole score NaN. The per-query functions
here return exactly those NaNs; the aggregate functions default to the same
(``nan_policy="propagate"``) and offer ``nan_policy="omit"`` (mean over the
queries that have an item) as a clearly named alternative. On the real test set
(9,668 x 3,842) every query of both directions has an item of ``R == 1``, so
the two policies agree there.

Ties. The official code uses numpy's default ``argsort`` (``kind="quicksort"``:
introsort, or a SIMD sort on AVX2/AVX-512 machines), which is *not stable*, so
the official order of tied items is unspecified and can change with the
machine and numpy version. Its two files also sort in opposite conventions:
mAP ranks by ``(-S).argsort()`` (ascending on the negated scores) while nDCG
ranks by ``np.argsort(S)[:, ::-1]`` (ascending, then reversed). We reproduce the
deterministic reading of each, i.e. what those exact expressions return with a
stable sort: for mAP tied items keep ascending item index; for nDCG tied items
come in *descending* item index. (Both equal the official output whenever
numpy's sort happens to be stable, e.g. with no ties at all.)

Infinite scores. ``+inf`` and ``-inf`` are ranked as the official code ranks
them: ``+inf`` above every finite score, ``-inf`` below, equal infinities tied
(ordered by the tie conventions above). NaN is refused: it has no order, and
the official files disagree on it (numpy sorts NaN last, so mAP.py's
``(-S).argsort()`` ranks it last and nDCG.py's reversed ``argsort(S)`` first).

Speed and memory. Each direction is sorted once and the order is shared by mAP
and nDCG. float32 scores (what the evaluator produces) are sorted as unique
uint64 keys (score bits, item index) with numpy's SIMD sort, which gives the
stable order directly; other dtypes use ``np.argsort`` and re-sort the tied runs
of the affected rows by (run start, item index). Rows are processed in chunks of
about ``chunk_elements`` entries on up to ``MAX_THREADS`` threads (numpy releases
the GIL in the sorts, gathers and reductions), so the extra memory is bounded
(~70 bytes per chunk element per thread: under 20 MB per thread by default)
whatever the matrix size; the official code needs gigabytes at the full
9,668 x 3,842 size. tests/benchmarks/bench_mir.py measures both (run it with
``-m benchmark``).
"""

from __future__ import annotations

import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .protocol import NAN_POLICIES, REFERENCE  # noqa: F401  (REFERENCE: the official code followed)

_LITTLE = sys.byteorder == "little"
DIRECTIONS = ("v2t", "t2v")
DEFAULT_CHUNK_ELEMENTS = 262_144   # ~2 MB per array: the working set stays in cache
MAX_THREADS = 4
TRANSPOSE_BLOCK_ELEMENTS = 2_000_000   # T->V: columns transposed per copy (~24 MB)


def _as_numpy(x: Any, name: str) -> np.ndarray:
    """numpy view of a numpy array or torch tensor (any device); float16/bfloat16 -> float32."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach()
        if str(x.dtype) in ("torch.float16", "torch.bfloat16"):
            x = x.float()
        x = x.cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix [n_vis, n_txt]; got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}")
    return arr


def _check_pair(similarity: Any, relevancy: Any) -> tuple[np.ndarray, np.ndarray]:
    s = _as_numpy(similarity, "similarity")
    r = _as_numpy(relevancy, "relevancy")
    if s.shape != r.shape:
        raise ValueError(f"similarity {s.shape} and relevancy {r.shape} must have the same shape "
                         f"[n_vis, n_txt]")
    if 0 in s.shape:
        raise ValueError(f"similarity has an empty dimension {s.shape}")
    if np.issubdtype(s.dtype, np.integer) or s.dtype == np.bool_:
        s = s.astype(np.float64)
    return s, r


def _orders(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Descending-score orders of the rows of ``s`` [Q, n] (C-contiguous).

    Returns ``(order, tie_rows, ndcg_tie_order)``: ``order`` [Q, n] (intp) ranks
    tied scores by ascending index (the mAP convention); rows listed in
    ``tie_rows`` have ties, and ``ndcg_tie_order`` [len(tie_rows), n] is their
    order with ties by descending index (the nDCG convention). Other rows are
    tie-free, so both conventions coincide there.
    """
    if s.shape[1] < 2**32:
        if s.dtype == np.float32:
            return _orders_packed(s)
        if s.dtype == np.float64:     # float32 values stored as float64: same order, faster path
            s32 = s.astype(np.float32)
            if np.array_equal(s32, s):
                return _orders_packed(s32)
    return _orders_argsort(s)


def _orders_packed(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32: sort one uint64 key per item, (descending-score bits << 32) | index.

    Keys are unique, so a plain (SIMD) sort yields the stable order directly;
    the score bits map float order onto unsigned order (IEEE 754: flip the sign
    bit of non-negative values, every bit of negative ones; here complemented so
    that ascending keys are descending scores), -0.0 folded onto +0.0 so that
    equal scores get equal bits."""
    q, n = s.shape
    u = np.add(s, np.float32(0.0)).view(np.uint32)           # -0.0 + 0.0 == +0.0
    flip = (~(u.view(np.int32) >> 31)).view(np.uint32)       # all ones if s >= 0
    flip &= np.uint32(0x7FFFFFFF)
    u ^= flip                                                # s >= 0: ~u & 0x7FFF..; s < 0: u
    del flip
    key = np.empty((q, n), dtype=np.uint64)
    words = key.view(np.uint32).reshape(q, n, 2)             # (low, high) on little-endian
    lo, hi = (0, 1) if _LITTLE else (1, 0)
    words[:, :, hi] = u
    words[:, :, lo] = np.arange(n, dtype=np.uint32)
    key.sort(axis=1)
    score = words[:, :, hi]
    tie_rows = np.flatnonzero((score[:, 1:] == score[:, :-1]).any(axis=1))
    order = words[:, :, lo].astype(np.intp)
    if tie_rows.size == 0:
        return order, tie_rows, order[:0]
    # ties by descending index: the same keys with the index complemented
    ties = np.empty((tie_rows.size, n), dtype=np.uint64)
    tw = ties.view(np.uint32).reshape(tie_rows.size, n, 2)
    tw[:, :, hi] = u[tie_rows]
    tw[:, :, lo] = np.arange(n - 1, -1, -1, dtype=np.uint32)
    ties.sort(axis=1)
    ndcg = (n - 1) - tw[:, :, lo].astype(np.intp)
    return order, tie_rows, ndcg


def _orders_argsort(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Other dtypes: unstable argsort, then the tied runs re-ordered by one integer
    sort of composite keys (run start, item index) on the affected rows only."""
    neg = np.negative(s)
    order = np.argsort(neg, axis=1)
    neg.sort(axis=1)                               # the ranked scores (same values)
    tie = neg[:, 1:] == neg[:, :-1]
    del neg
    tie_rows = np.flatnonzero(tie.any(axis=1))
    if tie_rows.size == 0:
        return order, tie_rows, order[:0]
    n = s.shape[1]
    is_start = np.ones((tie_rows.size, n), dtype=bool)
    is_start[:, 1:] = ~tie[tie_rows]
    del tie
    start = np.where(is_start, np.arange(n, dtype=np.int64), 0)
    np.maximum.accumulate(start, axis=1, out=start)  # first position of each run
    base = start * n
    idx = order[tie_rows]
    order[tie_rows] = np.sort(base + idx, axis=1) - base
    ndcg = (n - 1) - (np.sort(base + ((n - 1) - idx), axis=1) - base)
    return order, tie_rows, ndcg


def _gather(r: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``r[i, order[i, j]]`` for a C-contiguous ``r`` (flat take: faster than
    take_along_axis). ``order`` is consumed (offset in place)."""
    order += (np.arange(r.shape[0], dtype=np.intp) * r.shape[1])[:, None]
    return np.take(r.reshape(-1), order)


def _transposed(m: np.ndarray, a: int, b: int, dtype=None) -> np.ndarray:
    """Contiguous ``m[:, a:b].T`` copied in row blocks (cache-friendly)."""
    out = np.empty((b - a, m.shape[0]), dtype=dtype or m.dtype)
    for i in range(0, m.shape[0], 512):
        out[:, i:i + 512] = m[i:i + 512, a:b].T
    return out


def _average_precision(ranked: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Per row of ``ranked`` (relevances in rank order, C-contiguous): the sum over
    positions k with R == 1 of (soft relevance of the top k) / k, divided by the
    number of such positions; NaN when there is none (mAP.py).

    The top-k sums are only needed at the relevant positions: the row is cut into
    segments ending at each relevant item, summed in one ``reduceat`` pass, and
    the segment sums are accumulated per row (few per row) instead of a full
    cumulative sum. Rows with very many relevant items use the full cumsum."""
    q, n = ranked.shape
    flat = ranked.reshape(-1)
    pos = np.flatnonzero(flat == 1)
    if pos.size == 0:
        return np.full(q, np.nan)
    rows = pos // n
    counts = np.bincount(rows, minlength=q)
    widest = int(counts.max())
    if q * widest > flat.size // 4:
        cum = np.cumsum(ranked, axis=1)
        top = cum.reshape(-1)[pos]
    else:
        first = np.cumsum(counts) - counts           # index in pos of each row's first item
        within = np.arange(pos.size) - first[rows]   # rank of an item among its row's
        start = np.empty_like(pos)                   # its segment: after the previous one
        start[0] = rows[0] * n
        start[1:] = pos[:-1] + 1
        start[within == 0] = rows[within == 0] * n
        bounds = np.empty(2 * pos.size, dtype=np.intp)
        bounds[0::2] = start
        bounds[1::2] = pos + 1
        seg = np.add.reduceat(flat, bounds[:-1])[0::2]   # the last bound may be len(flat)
        seg[-1] = flat[start[-1]:pos[-1] + 1].sum()
        padded = np.zeros((q, widest))
        padded[rows, within] = seg
        np.cumsum(padded, axis=1, out=padded)
        top = padded[rows, within]
    total = np.bincount(rows, weights=top / ranks[pos - rows * n], minlength=q)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / counts


def _prefix_sums(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``x[i, :k[i]].sum()`` for every row (one pass, no mask)."""
    q, n = x.shape
    if n == 1:
        return np.where(k > 0, x[:, 0], 0.0)
    x = np.ascontiguousarray(x)
    starts = np.empty(2 * q, dtype=np.intp)
    starts[0::2] = np.arange(q) * n
    starts[1::2] = starts[0::2] + np.minimum(k, n - 1)
    sums = np.add.reduceat(x.reshape(-1), starts)[0::2]
    sums[k == 0] = 0.0
    sums[k == n] += x[k == n, -1]
    return sums


def _default_threads() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cpus))


def _direction(s_full: np.ndarray, r_full: np.ndarray, transpose: bool, want_map: bool,
               want_ndcg: bool, chunk_elements: int, threads: int) -> dict[str, np.ndarray]:
    """Per-query AP and nDCG of the rows of ``s_full`` (or of its columns when
    ``transpose``). Queries are processed in chunks of ~``chunk_elements`` entries
    on ``threads`` threads (numpy releases the GIL in the sorts, gathers and
    reductions), each writing its own slice of the output; for T->V, a block of
    several chunks is transposed at a time (one cache-friendly copy)."""
    n_queries, n_items = s_full.shape[::-1] if transpose else s_full.shape
    step = max(1, int(chunk_elements) // max(n_items, 1))
    block = max(step, (TRANSPOSE_BLOCK_ELEMENTS // max(n_items, 1)) // step * step)
    ranks = np.arange(1, n_items + 1, dtype=np.float64)       # k in P(k)
    logs = np.log2(np.arange(n_items, dtype=np.float64) + 2)  # log2(rank + 1)
    out = {}
    if want_map:
        out["map"] = np.empty(n_queries)
    if want_ndcg:
        out["ndcg"] = np.empty(n_queries)

    def work(s: np.ndarray, r: np.ndarray, a: int) -> None:
        b = a + s.shape[0]
        s = np.ascontiguousarray(s)
        if np.isnan(s).any():
            bad = a + int(np.flatnonzero(np.isnan(s).any(axis=1))[0])
            raise ValueError(f"similarity has a NaN (query {bad} of this direction): NaN has no "
                             f"rank (the official mAP.py ranks it last, nDCG.py first); "
                             f"replace it by a number, e.g. -inf")
        r = np.ascontiguousarray(r, dtype=np.float64)  # may be a view of the input: read only
        order, tie_rows, ndcg_ties = _orders(s)
        del s
        ranked = _gather(r, order)
        del order
        if want_map:
            out["map"][a:b] = _average_precision(ranked, ranks)
        if want_ndcg:
            if tie_rows.size:
                ranked[tie_rows] = _gather(np.ascontiguousarray(r[tie_rows]), ndcg_ties)
            k = (r > 0).sum(axis=1)
            ranked /= logs
            dcg = _prefix_sums(ranked, k)
            del ranked
            ideal = np.sort(r, axis=1)[:, ::-1] / logs
            with np.errstate(invalid="ignore", divide="ignore"):
                out["ndcg"][a:b] = dcg / _prefix_sums(ideal, k)

    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        for start in range(0, n_queries, block):
            stop = min(n_queries, start + block)
            if transpose:
                s_block, r_block = _transposed(s_full, start, stop), _transposed(r_full, start, stop,
                                                                                 np.float64)
            else:
                s_block, r_block = s_full[start:stop], r_full[start:stop]
            jobs = [(s_block[a - start:a - start + step], r_block[a - start:a - start + step], a)
                    for a in range(start, stop, step)]
            if pool is None:
                for job in jobs:
                    work(*job)
            else:
                for future in [pool.submit(work, *job) for job in jobs]:
                    future.result()
    finally:
        if pool is not None:
            pool.shutdown()
    return out


def mir_per_query(similarity: Any, relevancy: Any, *, metrics: tuple[str, ...] = ("map", "ndcg"),
                  chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
                  threads: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per-query scores, one sort per direction shared by the metrics.

    ``similarity`` and ``relevancy`` are [n_vis, n_txt] numpy arrays or torch
    tensors. Returns ``{metric: {"v2t": [n_vis], "t2v": [n_txt]}}`` (float64,
    NaN for a query with no item, as the official code) for ``metrics`` among
    ``"map"``, ``"ndcg"``. ``threads``: chunks processed in parallel (default: the
    usable CPUs, at most 4); results do not depend on it.
    """
    bad = [m for m in metrics if m not in ("map", "ndcg")]
    if bad or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of ('map', 'ndcg'); got {metrics}")
    s, r = _check_pair(similarity, relevancy)
    want_map, want_ndcg = "map" in metrics, "ndcg" in metrics
    threads = _default_threads() if threads is None else max(1, int(threads))
    v2t = _direction(s, r, False, want_map, want_ndcg, chunk_elements, threads)
    t2v = _direction(s, r, True, want_map, want_ndcg, chunk_elements, threads)
    return {m: {"v2t": v2t[m], "t2v": t2v[m]} for m in metrics}


def mir_map_per_query(similarity: Any, relevancy: Any, **kw) -> dict[str, np.ndarray]:
    """Per-query average precision ``{"v2t": [n_vis], "t2v": [n_txt]}`` (official mAP.py)."""
    return mir_per_query(similarity, relevancy, metrics=("map",), **kw)["map"]


def mir_ndcg_per_query(similarity: Any, relevancy: Any, **kw) -> dict[str, np.ndarray]:
    """Per-query nDCG ``{"v2t": [n_vis], "t2v": [n_txt]}`` (official nDCG.py)."""
    return mir_per_query(similarity, relevancy, metrics=("ndcg",), **kw)["ndcg"]


def reduce_queries(per_query: dict[str, np.ndarray], nan_policy: str = "propagate") -> dict[str, float]:
    """``{"v2t", "t2v", "avg"}`` from per-query values: the mean per direction and
    the mean of the two directions (as the official test scripts report AVG)."""
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}; got {nan_policy!r}")
    mean = np.mean if nan_policy == "propagate" else np.nanmean
    out = {}
    for d in DIRECTIONS:
        values = np.asarray(per_query[d], dtype=np.float64)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # nanmean of all-NaN
            out[d] = float(mean(values)) if values.size else float("nan")
    out["avg"] = (out["v2t"] + out["t2v"]) / 2
    return out


def mir_map(similarity: Any, relevancy: Any, *, nan_policy: str = "propagate", **kw) -> dict[str, float]:
    """Mean average precision ``{"v2t", "t2v", "avg"}`` exactly as the official mAP.py."""
    return reduce_queries(mir_map_per_query(similarity, relevancy, **kw), nan_policy)


def mir_ndcg(similarity: Any, relevancy: Any, *, nan_policy: str = "propagate", **kw) -> dict[str, float]:
    """Mean nDCG ``{"v2t", "t2v", "avg"}`` exactly as the official nDCG.py."""
    return reduce_queries(mir_ndcg_per_query(similarity, relevancy, **kw), nan_policy)


def mir_scores(similarity: Any, relevancy: Any, *, nan_policy: str = "propagate",
               **kw) -> dict[str, dict[str, float]]:
    """Both metrics with one sort per direction: ``{"map": {...}, "ndcg": {...}}``."""
    per = mir_per_query(similarity, relevancy, **kw)
    return {m: reduce_queries(v, nan_policy) for m, v in per.items()}
