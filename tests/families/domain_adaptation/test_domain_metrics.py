"""The domain_adaptation metrics against hand computations and an analytic bootstrap variance."""

import numpy as np
import pytest

from ctxbench.families.domain_adaptation.metrics import (class_stratified_bootstrap, mean_per_class_accuracy,
                                     per_class_accuracy, top1_accuracy)


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


def test_absent_classes_are_left_out_and_bad_shapes_refused():
    assert mean_per_class_accuracy([3, 3], [3, 1], n_classes=10) == pytest.approx(0.5)
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
