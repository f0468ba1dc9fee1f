"""EPIC-KITCHENS-100 MIR metrics against hand computations and a straightforward
per-query reference written here from the official mAP.py / nDCG.py
(github.com/mwray/Joint-Part-of-Speech-Embeddings src/evaluation)."""

import math

import numpy as np
import pytest
import torch

from ctxbench.families.multi_instance_retrieval.metrics import mir_map, mir_ndcg
from ctxbench.families.multi_instance_retrieval.metrics import (mir_map_per_query, mir_ndcg_per_query, mir_per_query,
                                  mir_scores)


# ----------------------------------------------------------------------------- reference
def ref_ap(scores, rel, order):
    """AP of one query, official definition, item order given."""
    ranked = [rel[i] for i in order]
    relevant = [k for k, r in enumerate(ranked) if r == 1]
    if not relevant:
        return float("nan")
    total, running = 0.0, 0.0
    for k, r in enumerate(ranked):
        running += r
        if r == 1:
            total += running / (k + 1)
    return total / len(relevant)


def ref_ndcg(scores, rel, order):
    """nDCG of one query, official definition, item order given."""
    k = sum(1 for r in rel if r > 0)
    if k == 0:
        return float("nan")
    dcg = sum(rel[i] / math.log2(p + 2) for p, i in enumerate(order[:k]))
    ideal = sorted(rel, reverse=True)
    idcg = sum(ideal[p] / math.log2(p + 2) for p in range(k))
    return dcg / idcg


def map_order(scores):
    """Official mAP.py ranks by (-S).argsort(); its deterministic (stable) reading:
    descending score, ties by ascending index."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def ndcg_order(scores):
    """Official nDCG.py ranks by np.argsort(S)[::-1]; stable reading: descending
    score, ties by descending index."""
    return sorted(range(len(scores)), key=lambda i: (scores[i], i), reverse=True)


def reference(sim, rel):
    sim, rel = np.asarray(sim, dtype=np.float64), np.asarray(rel, dtype=np.float64)
    out = {"map": {}, "ndcg": {}}
    for d, (s, r) in {"v2t": (sim, rel), "t2v": (sim.T, rel.T)}.items():
        out["map"][d] = np.array([ref_ap(s[q].tolist(), r[q].tolist(), map_order(s[q].tolist()))
                                  for q in range(s.shape[0])])
        out["ndcg"][d] = np.array([ref_ndcg(s[q].tolist(), r[q].tolist(), ndcg_order(s[q].tolist()))
                                   for q in range(s.shape[0])])
    return out


def soft_relevancy(rng, shape):
    """Values of the official formula's kind: (verb + IoU) / 2."""
    values = np.array([0, 0, 0, 0.25, 1 / 3, 0.5, 2 / 3, 0.75, 5 / 6, 1.0])
    return values[rng.integers(len(values), size=shape)]


def assert_close(got, want):
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, equal_nan=True)


# ----------------------------------------------------------------------------- hand cases
def test_hand_computed_average_precision():
    # ranked relevances [0.5, 1, 0]: one relevant item at rank 2, P(2) = (0.5 + 1) / 2
    sim = np.array([[3.0, 2.0, 1.0]])
    rel = np.array([[0.5, 1.0, 0.0]])
    assert mir_map_per_query(sim, rel)["v2t"][0] == pytest.approx(0.75, abs=1e-12)


def test_hand_computed_ndcg():
    sim = np.array([[3.0, 2.0, 1.0]])
    rel = np.array([[0.5, 1.0, 0.0]])
    dcg = 0.5 / math.log2(2) + 1.0 / math.log2(3)        # truncated at K = 2 items with R > 0
    idcg = 1.0 / math.log2(2) + 0.5 / math.log2(3)
    assert mir_ndcg_per_query(sim, rel)["v2t"][0] == pytest.approx(dcg / idcg, abs=1e-12)


def test_official_ndcg_example_value():
    # the self-test at the bottom of the official nDCG.py asserts this exact value
    sim = np.array([[1.0, 0.7, 0.4, 0.0], [0.3, 0.9, 0.6, 0.1], [0.2, 0.5, 0.8, 0.4]])
    rel = np.array([[1.0, 0.5, 0.25, 0.0], [0.0, 1.0, 0.4, 0.0], [0.5, 0.3, 1.0, 0.0]])
    assert mir_ndcg(sim, rel)["v2t"] == pytest.approx(0.9371789900735429, abs=1e-15)


def test_truncation_ignores_items_past_k():
    # a relevant item ranked beyond K = #{R > 0} earns no gain
    sim = np.array([[4.0, 3.0, 2.0, 1.0]])
    rel = np.array([[0.0, 0.0, 0.0, 1.0]])
    assert mir_ndcg_per_query(sim, rel)["v2t"][0] == 0.0
    assert mir_map_per_query(sim, rel)["v2t"][0] == pytest.approx(0.25)


def test_soft_precision_counts_partial_relevance_above_a_relevant_item():
    sim = np.array([[3.0, 2.0, 1.0]])
    rel = np.array([[0.5, 0.5, 1.0]])      # P(3) = (0.5 + 0.5 + 1) / 3
    assert mir_map_per_query(sim, rel)["v2t"][0] == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- NaN policy
def test_queries_without_relevant_items_are_nan_as_in_the_official_code():
    sim = np.array([[3.0, 2.0, 1.0]])
    rel = np.array([[0.5, 1.0, 0.0]])
    per = mir_per_query(sim, rel)
    # T->V: column 0 has no R == 1 (AP = 0/0), column 2 has no R > 0 (nDCG = 0/0)
    assert np.isnan(per["map"]["t2v"][0]) and per["map"]["t2v"][1] == 1.0
    assert np.isnan(per["map"]["t2v"][2])
    assert per["ndcg"]["t2v"][0] == 1.0 and np.isnan(per["ndcg"]["t2v"][2])
    # official np.mean over the queries: NaN propagates
    assert math.isnan(mir_map(sim, rel)["t2v"]) and math.isnan(mir_map(sim, rel)["avg"])
    omitted = mir_map(sim, rel, nan_policy="omit")
    assert omitted["t2v"] == 1.0 and omitted["avg"] == pytest.approx((0.75 + 1.0) / 2)
    with pytest.raises(ValueError, match="nan_policy"):
        mir_map(sim, rel, nan_policy="zero")


# ----------------------------------------------------------------------------- reference
@pytest.mark.parametrize("shape,dtype,chunk", [((7, 5), np.float64, 1), ((23, 41), np.float32, 50),
                                               ((60, 13), np.float64, 100_000),
                                               ((31, 64), np.float32, 7)])
def test_agrees_with_per_query_reference_on_tie_free_scores(shape, dtype, chunk):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    n = shape[0] * shape[1]
    sim = (rng.permutation(n).reshape(shape).astype(dtype) - n // 2) / 7  # distinct, +/-
    rel = soft_relevancy(rng, shape)
    rel[rng.integers(shape[0]), :] = 0.0          # one query with nothing relevant
    want = reference(sim, rel)
    got = mir_per_query(sim, rel, chunk_elements=chunk)
    for metric in ("map", "ndcg"):
        for d in ("v2t", "t2v"):
            assert_close(got[metric][d], want[metric][d])


def test_ties_follow_each_official_file_convention():
    # mAP: (-S).argsort() -> ties by ascending index; nDCG: argsort(S)[::-1] -> descending
    sim = np.array([[1.0, 1.0, 0.0]])
    rel = np.array([[0.0, 1.0, 0.5]])
    assert mir_map_per_query(sim, rel)["v2t"][0] == pytest.approx(0.5)          # order 0, 1, 2
    idcg = 1.0 + 0.5 / math.log2(3)
    assert mir_ndcg_per_query(sim, rel)["v2t"][0] == pytest.approx(1.0 / idcg)  # order 1, 0, 2


@pytest.mark.parametrize("dtype,scale", [(np.float32, 1.0), (np.float64, 1.0), (np.float64, 3.0)])
def test_agrees_with_reference_on_heavily_tied_scores(dtype, scale):
    # float32, float64 holding float32 values, and float64 values (x / 3) that are not:
    # the three sorting paths of the implementation
    rng = np.random.default_rng(7)
    sim = rng.integers(-2, 2, size=(37, 29)).astype(dtype) / scale   # many ties per row
    sim[3] = 0.5                                              # a constant row
    rel = soft_relevancy(rng, sim.shape)
    want = reference(sim, rel)
    got = mir_per_query(sim, rel, chunk_elements=64)
    for metric in ("map", "ndcg"):
        for d in ("v2t", "t2v"):
            assert_close(got[metric][d], want[metric][d])


def test_negative_zero_ties_with_zero():
    rel = np.array([[0.0, 1.0, 0.5]])
    for dtype in (np.float32, np.float64):
        sim = np.array([[0.0, -0.0, -1.0]], dtype=dtype)
        assert mir_map_per_query(sim, rel)["v2t"][0] == pytest.approx(0.5)


# ----------------------------------------------------------------------------- API
def test_public_api_returns_directions_and_average_and_accepts_torch():
    rng = np.random.default_rng(3)
    sim = rng.standard_normal((12, 9)).astype(np.float32)
    rel = soft_relevancy(rng, sim.shape)
    rel[np.arange(9), np.arange(9)] = 1.0
    rel[9:, 0] = 1.0
    a, b = mir_map(sim, rel), mir_ndcg(sim, rel)
    assert set(a) == set(b) == {"v2t", "t2v", "avg"}
    assert a["avg"] == pytest.approx((a["v2t"] + a["t2v"]) / 2)
    ref = reference(sim, rel)
    assert a["v2t"] == pytest.approx(ref["map"]["v2t"].mean(), abs=1e-9)
    assert b["t2v"] == pytest.approx(ref["ndcg"]["t2v"].mean(), abs=1e-9)
    assert mir_map(torch.from_numpy(sim), torch.from_numpy(rel)) == a
    assert mir_ndcg(torch.from_numpy(sim).half(), rel)["v2t"] == pytest.approx(
        mir_ndcg(sim.astype(np.float16).astype(np.float32), rel)["v2t"])
    both = mir_scores(sim, rel)
    assert both["map"] == a and both["ndcg"] == b


def test_inputs_are_not_modified():
    rng = np.random.default_rng(4)
    sim = rng.standard_normal((20, 30))
    rel = soft_relevancy(rng, sim.shape)
    sim0, rel0 = sim.copy(), rel.copy()
    mir_scores(sim, rel)
    assert np.array_equal(sim, sim0) and np.array_equal(rel, rel0)


def test_bad_inputs_are_refused_with_clear_errors():
    with pytest.raises(ValueError, match="same shape"):
        mir_map(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="2-D"):
        mir_map(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="has a NaN"):
        mir_map(np.array([[1.0, np.nan]]), np.array([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="has a NaN"):
        mir_map(np.array([[1.0, np.nan]], dtype=np.float32), np.array([[1.0, 0.0]]))


# ----------------------------------------------------------------------------- infinities
def official_orders(s):
    """The official expressions, run with a stable sort: mAP.py ``(-S).argsort()``,
    nDCG.py ``np.argsort(S)[:, ::-1]``."""
    return np.argsort(-s, axis=1, kind="stable"), np.argsort(s, axis=1, kind="stable")[:, ::-1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infinite_scores_are_ranked_as_the_official_code_ranks_them(dtype):
    """+inf above every finite score, -inf below, equal infinities tied with the
    official conventions (mAP: ascending index; nDCG: descending index)."""
    rng = np.random.default_rng(11)
    sim = rng.integers(0, 4, size=(9, 12)).astype(dtype)     # many finite ties
    sim[rng.random(sim.shape) < 0.2] = np.inf
    sim[rng.random(sim.shape) < 0.1] = -np.inf
    sim[0] = np.inf                                          # a query whose items all tie at +inf
    rel = soft_relevancy(rng, sim.shape)
    rel[:, 0] = 1.0
    rel[0, :] = 1.0
    got = mir_per_query(sim, rel)
    want = reference(sim, rel)
    for m in ("map", "ndcg"):
        for d in ("v2t", "t2v"):
            assert_close(got[m][d], want[m][d])
    # the reference orders are what the official expressions return under a stable sort
    s64 = sim.astype(np.float64)
    map_o, ndcg_o = official_orders(s64)
    for q in range(s64.shape[0]):
        assert map_o[q].tolist() == map_order(s64[q].tolist())
        assert ndcg_o[q].tolist() == ndcg_order(s64[q].tolist())


def test_plus_inf_ranks_first():
    sim = np.array([[0.9, np.inf, 0.1]])
    rel = np.array([[0.0, 1.0, 0.5]])
    assert mir_map(sim, rel)["v2t"] == pytest.approx(1.0)     # the relevant item is ranked first
    sim = np.array([[np.inf, 0.9, 0.1]])
    assert mir_map(sim, rel)["v2t"] == pytest.approx((0.0 + 1.0) / 2)   # relevant at rank 2
