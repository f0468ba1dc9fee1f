"""Quality metrics (ctxbench.families.aesthetics.metrics) against scipy.stats and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ctxbench.families.aesthetics import metrics as Q


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_rankdata_matches_scipy_with_ties(rng):
    x = rng.integers(0, 6, size=(5, 40)).astype(float)      # many ties
    ours = Q.rankdata(x)
    for row, ranks in zip(x, ours):
        np.testing.assert_allclose(ranks, stats.rankdata(row, method="average"))
    np.testing.assert_allclose(Q.rankdata(x.T, axis=0), ours.T)


def test_lcc_and_srcc_match_scipy(rng):
    true = rng.normal(5.4, 0.7, 200)
    pred = 0.6 * true + rng.normal(0, 0.5, 200)
    pred_tied = np.round(pred, 1)                             # ties in predictions
    assert Q.lcc(pred, true) == pytest.approx(stats.pearsonr(pred, true)[0], abs=1e-12)
    assert Q.srcc(pred, true) == pytest.approx(stats.spearmanr(pred, true)[0], abs=1e-12)
    assert Q.srcc(pred_tied, np.round(true, 1)) == pytest.approx(
        stats.spearmanr(pred_tied, np.round(true, 1))[0], abs=1e-12)


def test_vectorised_rows_equal_single_calls(rng):
    pred, true = rng.normal(size=(6, 30)), rng.normal(size=(6, 30))
    lccs, srccs = Q.lcc(pred, true), Q.srcc(pred, true)
    kls, emds = Q.histogram_kl(pred + 5, true + 5), Q.histogram_emd(pred + 5, true + 5)
    for i in range(6):
        assert lccs[i] == pytest.approx(Q.lcc(pred[i], true[i]))
        assert srccs[i] == pytest.approx(Q.srcc(pred[i], true[i]))
        assert kls[i] == pytest.approx(Q.histogram_kl(pred[i] + 5, true[i] + 5))
        assert emds[i] == pytest.approx(Q.histogram_emd(pred[i] + 5, true[i] + 5))


def test_constant_prediction_gives_nan_correlation():
    assert math.isnan(Q.lcc(np.full(5, 3.0), np.arange(5.0)))
    assert math.isnan(Q.srcc(np.full(5, 3.0), np.arange(5.0)))


def test_abs_error_hand_computed():
    mean, std = Q.abs_error([5.0, 6.0, 4.0, 7.5], [5.5, 5.0, 4.0, 6.0])
    # |errors| = 0.5, 1.0, 0.0, 1.5 -> mean 0.75, population std sqrt(0.3125)
    assert mean == pytest.approx(0.75)
    assert std == pytest.approx(math.sqrt(((0.25 ** 2) + 0.25 ** 2 + 0.75 ** 2 + 0.75 ** 2) / 4))


def test_error_mean_variance_std_against_numpy(rng):
    pred, true = rng.normal(5.5, 1.0, 300), rng.normal(5.5, 0.8, 300)
    e = np.abs(pred - true)
    assert Q.mean_abs_error(pred, true) == pytest.approx(np.mean(e), abs=1e-12)
    assert Q.abs_error_variance(pred, true) == pytest.approx(np.var(e, ddof=0), abs=1e-12)
    assert Q.abs_error_std(pred, true) == pytest.approx(np.std(e, ddof=0), abs=1e-12)
    assert Q.abs_error_variance(pred, true) == pytest.approx(Q.abs_error_std(pred, true) ** 2)
    assert Q.abs_error(pred, true) == pytest.approx((np.mean(e), np.std(e)))
    # hand example: |errors| 0.5, 1.0, 0.0, 1.5 -> mean 0.75, variance 0.3125
    assert Q.abs_error_variance([5.0, 6.0, 4.0, 7.5], [5.5, 5.0, 4.0, 6.0]) == pytest.approx(0.3125)
    # along the last axis, as the bootstrap calls them
    stack_p, stack_t = pred.reshape(3, 100), true.reshape(3, 100)
    np.testing.assert_allclose(Q.abs_error_variance(stack_p, stack_t),
                               np.var(np.abs(stack_p - stack_t), axis=1))


def test_kl_direction_is_true_given_predicted_as_scipy_entropy(rng):
    """KL(P_true || P_pred) == scipy.stats.entropy(p_true, q_pred) on the smoothed
    histograms, and not the reverse direction."""
    true = rng.normal(5.5, 0.7, 400)
    pred = rng.normal(5.0, 0.3, 400)          # narrower: empty predicted bins where true falls
    p, q = Q.score_histogram(true), Q.score_histogram(pred)
    assert ((p > 0) & (q == 0)).any()
    for eps in (1e-4, 1e-2):
        ours = Q.histogram_kl(pred, true, eps=eps)
        ps, qs = (p + eps) / (p + eps).sum(), (q + eps) / (q + eps).sum()
        assert ours == pytest.approx(stats.entropy(ps, qs), rel=1e-12)
        assert abs(ours - stats.entropy(qs, ps)) > 0.1
        assert Q.kl_divergence(p, q, eps) == pytest.approx(stats.entropy(ps, qs), rel=1e-12)
    # empty predicted bins: the figure depends strongly on eps (so eps is stated with it)
    assert Q.histogram_kl(pred, true, eps=1e-4) > 1.5 * Q.histogram_kl(pred, true, eps=1e-2)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="shape"):
        Q.lcc([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="finite"):
        Q.srcc([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="no items"):
        Q.abs_error([], [])


def test_histogram_bins_and_clipping():
    # default edges 0.5, 1.5, ..., 10.5; out-of-range scores land in the end bins
    h = Q.score_histogram([0.2, 1.0, 1.49, 1.5, 5.0, 10.5, 11.7, 9.9])
    expected = np.zeros(10)
    expected[0] = 3        # 0.2 (clipped), 1.0, 1.49
    expected[1] = 1        # 1.5
    expected[4] = 1        # 5.0
    expected[9] = 3        # 9.9, 10.5 (closed last bin), 11.7 (clipped)
    np.testing.assert_allclose(h, expected / 8)
    np.testing.assert_allclose(Q.bin_edges(), np.arange(0.5, 10.51, 1.0))
    h20 = Q.score_histogram([1.0, 1.2], n_bins=20)
    assert h20[1] == 1.0   # bin [1.0, 1.5) of the 20 half-unit bins


def test_kl_hand_computed():
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.25, 0.5, 0.25])
    # eps = 0: 0.5 log(0.5/0.25) + 0.5 log(0.5/0.5) = 0.5 log 2
    assert Q.kl_divergence(p, q, eps=0.0) == pytest.approx(0.5 * math.log(2))
    # with smoothing: p' = (p + eps) / (1 + 3 eps)
    eps = 0.01
    ps, qs = (p + eps) / (1 + 3 * eps), (q + eps) / (1 + 3 * eps)
    assert Q.kl_divergence(p, q, eps) == pytest.approx(float(np.sum(ps * np.log(ps / qs))))
    # an empty predicted bin where true scores fall is finite only thanks to eps
    assert np.isfinite(Q.kl_divergence([0.0, 1.0], [1.0, 0.0], 1e-4))
    assert Q.kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)


def test_emd_hand_computed():
    p, q = [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]
    # CDFs (1,1,1,1) vs (0,0,0,1): |diff| = 1,1,1,0
    assert Q.emd(p, q, r=2) == pytest.approx(math.sqrt(3 / 4))
    assert Q.emd(p, q, r=1) == pytest.approx(3 / 4)
    assert Q.emd([2.0, 2.0], [1.0, 1.0]) == pytest.approx(0.0)   # normalised first
    # histogram EMD: all true scores at 5, all predictions at 6 (unit bins):
    # CDF differ only on bin 5 -> (1/10 * 1)^(1/2)
    assert Q.histogram_emd(np.full(4, 6.0), np.full(4, 5.0)) == pytest.approx(math.sqrt(0.1))


def test_nima_emd_per_image():
    true = np.array([[0, 0, 0, 0, 1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 1.0]])
    pred = np.array([[0, 0, 0, 0, 1, 0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    out = Q.nima_emd(pred, true)
    assert out.shape == (2,)
    assert out[0] == pytest.approx(0.0)
    assert out[1] == pytest.approx(math.sqrt(9 / 10))   # CDFs differ on bins 1..9


def test_mos_from_votes():
    votes = np.array([[0, 0, 1, 0, 2, 0, 0, 0, 0, 1]])   # scores 3, 5, 5, 10
    assert Q.mos_from_votes(votes)[0] == pytest.approx((3 + 10 + 10) / 4)


def test_logistic_fit_recovers_monotone_mapping(rng):
    x = rng.uniform(-3, 3, 300)
    params = (8.0, 2.0, 0.5, 0.7)
    y = Q.logistic4(x, params) + rng.normal(0, 0.05, 300)
    fitted, ok = Q.logistic4_fit(x, y)
    assert ok
    np.testing.assert_allclose(Q.logistic4(x, fitted), Q.logistic4(x, params), atol=0.05)
    value, _, _ = Q.lcc_logistic(x, y)
    assert value > Q.lcc(x, y) + 0.02      # the nonlinearity costs plain LCC
    assert value == pytest.approx(stats.pearsonr(Q.logistic4(x, fitted), y)[0])


def test_definitions_name_bins_and_epsilon():
    d = Q.definitions(10, 0.5, 10.5, 1e-4, 2.0)
    assert "0.5, 1.5" in d["KL"] and "eps=0.0001" in d["KL"]
    assert "KL(P_true || P_pred)" in d["KL"] and "p = true, q = predicted" in d["KL"]
    assert "variance" in d["Error_var"] and "std" in d["Error_std"] and "mean" in d["Error"]
    assert "±" not in d["Error_std"]
    assert "r=2" in d["EMD"] and "no logistic" in d["LCC"]
