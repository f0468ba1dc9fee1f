"""The domain_adaptation metrics against hand computations and an analytic bootstrap variance."""

import numpy as np
import pytest

from ctxbench.families.domain_adaptation.metrics import (class_stratified_bootstrap, mean_per_class_accuracy,
                                                         mean_present_class_accuracy, per_class_accuracy,
                                                         top1_accuracy)
from ctxbench.families.domain_adaptation.scoring import score_domains, seed_interval


def test_hand_computed_case():
    y = [0, 0, 0, 1, 2, 2]
    pred = [0, 0, 1, 1, 0, 2]
    # overall 4/6; per class 2/3, 1/1, 1/2 -> mean (2/3 + 1 + 1/2) / 3 = 13/18
    assert top1_accuracy(y, pred) == pytest.approx(4 / 6)
    assert mean_per_class_accuracy(y, pred) == pytest.approx(13 / 18)
    np.testing.assert_allclose(per_class_accuracy(y, pred, n_classes=4), [2 / 3, 1, 0.5, np.nan])


def test_imbalance_separates_the_two_figures():
    y = [0] * 9 + [1]
    pred = [0] * 10          # always the majority class
    assert top1_accuracy(y, pred) == pytest.approx(0.9)
    assert mean_per_class_accuracy(y, pred) == pytest.approx(0.5)


def test_absent_classes_count_zero_officially_and_are_left_out_of_the_present_mean():
    assert mean_present_class_accuracy([3, 3], [3, 1]) == pytest.approx(0.5)
    assert mean_per_class_accuracy([3, 3], [3, 1], n_classes=10) == pytest.approx(0.05)
    assert np.isnan(top1_accuracy([], []))
    with pytest.raises(ValueError):
        top1_accuracy([0, 1], [0])


def test_stratified_bootstrap_points_match_the_direct_metrics():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 300)
    correct = rng.random((300, 3)) < [0.3, 0.6, 0.9]
    top, mpca = class_stratified_bootstrap(correct, y, 200, seed=0)
    for m in range(3):
        pred = np.where(correct[:, m], y, -1)
        assert top.point[m] == pytest.approx(top1_accuracy(y, pred))
        assert mpca.point[m] == pytest.approx(mean_per_class_accuracy(y, pred))
    assert top.samples.shape == (200, 3) and mpca.samples.shape == (200, 3)


def test_stratified_bootstrap_variance_matches_the_analytic_one():
    # within-class resampling: Var(mpca*) = (1/C^2) sum_c a_c (1 - a_c) / n_c
    rng = np.random.default_rng(0)
    sizes = np.array([5, 20, 60, 15])
    y = np.repeat(np.arange(4), sizes)
    acc = np.array([0.2, 0.5, 0.7, 0.9])
    correct = np.concatenate([rng.random(n) < a for n, a in zip(sizes, acc)])
    a_hat = np.array([correct[y == c].mean() for c in range(4)])
    analytic = np.sqrt((a_hat * (1 - a_hat) / sizes).sum() / 16)
    _, mpca = class_stratified_bootstrap(correct, y, 20_000, seed=3)
    assert mpca.samples[:, 0].std() == pytest.approx(analytic, rel=0.04)
    assert mpca.samples[:, 0].mean() == pytest.approx(a_hat.mean(), abs=0.003)


def test_identical_predictors_get_identical_replicates_and_perfect_is_degenerate():
    y = np.repeat(np.arange(3), 10)
    col = np.arange(30) % 4 != 0
    top, mpca = class_stratified_bootstrap(np.stack([col, col, np.ones(30, bool)], 1), y, 300, seed=0)
    np.testing.assert_array_equal(mpca.samples[:, 0], mpca.samples[:, 1])
    np.testing.assert_array_equal(top.samples[:, 0], top.samples[:, 1])
    assert (mpca.samples[:, 2] == 1).all() and mpca.ci()[2].tolist() == [1.0, 1.0]


def test_class_sizes_are_fixed_in_every_replicate():
    # with one always-right and one always-wrong class, top-1 never moves
    y = np.array([0] * 4 + [1] * 6)
    correct = np.array([True] * 4 + [False] * 6)
    top, mpca = class_stratified_bootstrap(correct, y, 100, seed=0)
    assert np.allclose(top.samples, 0.4) and np.allclose(mpca.samples, 0.5)


def _official_percls_accuracy(all_pred, all_label, num_class):
    """GeoNet's official per-class accuracy, transcribed (absent classes stay 0)."""
    all_pred, all_label = np.asarray(all_pred), np.asarray(all_label)
    cls_acc = np.zeros([num_class])
    for i in range(num_class):
        idx = all_label == i
        if idx.sum() > 0:
            cls_acc[i] = (all_pred[idx] == all_label[idx]).mean() * 100.0
    return cls_acc


def test_geonet_official_convention_against_the_official_code_and_sklearn():
    y_true, y_pred = [1, 1, 2, 2], [1, 1, 2, 0]
    assert mean_per_class_accuracy(y_true, y_pred, n_classes=3) == pytest.approx(0.50)
    assert mean_per_class_accuracy(y_true, y_pred, n_classes=3) == pytest.approx(
        _official_percls_accuracy(y_pred, y_true, 3).mean() / 100)
    assert mean_present_class_accuracy(y_true, y_pred) == pytest.approx(0.75)
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 6, 40)
        pred = np.where(rng.random(40) < 0.6, y, rng.integers(0, 8, 40))
        assert mean_per_class_accuracy(y, pred, n_classes=8) == pytest.approx(
            _official_percls_accuracy(pred, y, 8).mean() / 100)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    assert mean_present_class_accuracy(y_true, y_pred) == pytest.approx(
        sklearn_metrics.balanced_accuracy_score(y_true, y_pred))


def test_scoring_reports_the_official_mpca_and_the_present_class_one():
    y = np.array([1, 1, 2, 2])
    got = score_domains({("zs", "d"): np.array([[1, 1, 2, 0]])}, {"d": y}, 300, 0, n_classes=3)[("zs", "d")]
    assert got.mpca_point == pytest.approx(0.50) and got.present_point == pytest.approx(0.75)
    np.testing.assert_allclose(got.mpca, got.present * 2 / 3)
    assert got.seeds_mpca.tolist() == [pytest.approx(0.5)]


def test_fractional_scores_bootstrap_like_the_mean_of_their_runs():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 120)
    runs = rng.random((3, 120)) < 0.7                       # 3 training runs of one predictor
    top, mpca = class_stratified_bootstrap(runs.mean(0), y, 100, seed=0)
    per_run = [mean_present_class_accuracy(y, np.where(r, y, -1)) for r in runs]
    assert mpca.point[0] == pytest.approx(np.mean(per_run))
    assert top.point[0] == pytest.approx(runs.mean())


def test_seed_interval_is_the_t_interval():
    stats = pytest.importorskip("scipy.stats")
    g = np.array([0.10, 0.14, 0.12])
    mean, (lo, hi), p = seed_interval(g)
    ref = stats.ttest_1samp(g, 0.0)
    half = stats.t.ppf(0.975, 2) * g.std(ddof=1) / np.sqrt(3)
    assert mean == pytest.approx(0.12) and (lo, hi) == (pytest.approx(0.12 - half), pytest.approx(0.12 + half))
    assert p == pytest.approx(ref.pvalue)
    assert seed_interval(np.zeros(3)) == (0.0, (0.0, 0.0), 1.0)
    assert seed_interval(np.array([0.2])) == (0.2, None, None)
