"""Classification metrics against hand-computed cases and an independent reference.

The reference below writes the definitions out per class with Python loops
(precision = TP / predicted, recall = TP / true, F1 = harmonic mean, 0 when
undefined; macro = mean over classes seen in y_true or y_pred; weighted = mean
weighted by true support), independently of the confusion-matrix code under test.
"""

import math

import numpy as np
import pytest

from ctxbench.bootstrap import cluster_means
from ctxbench.families.metadata_sentiment.scoring import paired_bootstrap
from ctxbench.families.metadata_sentiment.metrics import (accuracy, confusion_matrix, f1_positive,
                                                          kl_divergence, macro_f1, mean_kl_divergence,
                                                          per_class_accuracy, scores_from_confusion,
                                                          weighted_f1)


def reference_f1s(y_true, y_pred):
    labels = sorted(set(y_true) | set(y_pred))
    f1, support = {}, {}
    for c in labels:
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == c and p == c)
        n_pred = sum(1 for p in y_pred if p == c)
        n_true = sum(1 for t in y_true if t == c)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1[c] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        support[c] = n_true
    macro = sum(f1.values()) / len(labels)
    weighted = sum(f1[c] * support[c] for c in labels) / len(y_true)
    return macro, weighted


def test_hand_computed_balanced_case():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 0, 2]
    # class 0: TP 1, FP 1, FN 1 -> F1 1/2; class 1: TP 2, FP 1 -> 4/5; class 2: TP 1, FN 1 -> 2/3
    expected_macro = (0.5 + 0.8 + 2 / 3) / 3
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert macro_f1(y_true, y_pred, 3) == pytest.approx(expected_macro)
    assert weighted_f1(y_true, y_pred, 3) == pytest.approx(expected_macro)  # equal supports
    np.testing.assert_allclose(per_class_accuracy(y_true, y_pred, 3), [0.5, 1.0, 0.5])
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, 3),
                                  [[1, 1, 0], [0, 2, 0], [1, 0, 1]])


def test_hand_computed_imbalanced_case_with_unseen_and_spurious_classes():
    # K = 4: class 1 is never predicted, class 2 only predicted, class 3 absent everywhere
    y_true = [0, 0, 0, 1]
    y_pred = [0, 0, 2, 0]
    # class 0: TP 2, FP 1, FN 1 -> 2/3; class 1: 0; class 2: 0 (present: predicted once)
    assert macro_f1(y_true, y_pred, 4) == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert weighted_f1(y_true, y_pred, 4) == pytest.approx((3 * 2 / 3 + 1 * 0) / 4)
    pc = per_class_accuracy(y_true, y_pred, 4)
    np.testing.assert_allclose(pc[:2], [2 / 3, 0.0])
    assert math.isnan(pc[2]) and math.isnan(pc[3])
    assert accuracy(y_true, y_pred) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(5))
def test_f1_matches_independent_reference(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    n = int(rng.integers(5, 60))
    y_true = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, k, n))
    macro, weighted = reference_f1s(y_true.tolist(), y_pred.tolist())
    assert macro_f1(y_true, y_pred, k) == pytest.approx(macro)
    assert weighted_f1(y_true, y_pred, k) == pytest.approx(weighted)


def test_weighted_confusion_equals_repeated_items():
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 3, 20), rng.integers(0, 3, 20)
    counts = rng.integers(0, 4, size=(5, 20))
    batched = confusion_matrix(y_true, y_pred, 3, counts=counts)
    for b in range(5):
        rep_t, rep_p = np.repeat(y_true, counts[b]), np.repeat(y_pred, counts[b])
        np.testing.assert_array_equal(batched[b], confusion_matrix(rep_t, rep_p, 3))
        scores = scores_from_confusion(batched[b])
        if rep_t.size:
            assert scores["accuracy"] == pytest.approx(accuracy(rep_t, rep_p))
            m, w = reference_f1s(rep_t.tolist(), rep_p.tolist())
            assert scores["macro_F1"] == pytest.approx(m) and scores["weighted_F1"] == pytest.approx(w)


def test_kl_hand_computed():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    q = np.array([[0.25, 0.25, 0.5], [0.5, 0.25, 0.25]])
    # row 0: 0.5 ln 2 + 0.5 ln 2 = ln 2 (the zero of p contributes 0); row 1: ln 2
    np.testing.assert_allclose(kl_divergence(p, q), [math.log(2), math.log(2)])
    assert mean_kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    # votes are normalised: [2, 2, 0] is the same distribution as [0.5, 0.5, 0]
    assert kl_divergence([[2, 2, 0]], [[0.25, 0.25, 0.5]])[0] == pytest.approx(math.log(2))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="same length"):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="positive sum"):
        kl_divergence([[0, 0]], [[0.5, 0.5]])


def test_paired_bootstrap_shares_resamples_with_cluster_means():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 150)
    a = np.where(rng.random(150) < 0.7, y, rng.integers(0, 4, 150))
    b = np.where(rng.random(150) < 0.5, y, rng.integers(0, 4, 150))
    boot = paired_bootstrap(y, {"a": a, "b": b}, 4, n_resamples=500, seed=7)
    ref = cluster_means(np.stack([(a == y), (b == y)], 1).astype(float), None, 500, seed=7)
    np.testing.assert_allclose(boot["a"]["accuracy"].samples[:, 0], ref.samples[:, 0])
    np.testing.assert_allclose(boot["b"]["accuracy"].samples[:, 0], ref.samples[:, 1])
    assert boot["a"]["accuracy"].point[0] == pytest.approx((a == y).mean())
    assert boot["a"]["macro_F1"].point[0] == pytest.approx(macro_f1(y, a, 4))
    lo, hi = boot["a"]["macro_F1"].ci()[0]
    assert lo < macro_f1(y, a, 4) < hi


def test_binary_positive_f1_and_macro_f1_hand_computed():
    # TP 2, FP 1, FN 1 for class 1 -> F1 2/3; class 0: TP 1, FP 1, FN 1 -> 1/2
    y_true = [1, 1, 1, 0, 0]
    y_pred = [1, 1, 0, 1, 0]
    assert f1_positive(y_true, y_pred) == pytest.approx(2 / 3)
    assert macro_f1(y_true, y_pred, 2) == pytest.approx((2 / 3 + 1 / 2) / 2)
    # the positive class never true nor predicted: 0 (sklearn's zero_division=0), while macro
    # F1 averages over the one class present only
    assert f1_positive([0, 0], [0, 0]) == 0.0 and macro_f1([0, 0], [0, 0], 2) == 1.0
    # positive predicted but never true: precision 0 -> F1 0
    assert f1_positive([0, 0, 0], [1, 0, 0]) == 0.0
    # all positives found, one false alarm: P = 2/3, R = 1 -> F1 0.8
    assert f1_positive([1, 1, 0, 0], [1, 1, 1, 0]) == pytest.approx(0.8)


@pytest.mark.parametrize("seed", range(5))
def test_f1_agrees_with_sklearn(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    y_true = rng.integers(0, 2, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, 2, n))
    assert f1_positive(y_true, y_pred) == pytest.approx(metrics.f1_score(y_true, y_pred, pos_label=1,
                                                                         zero_division=0))
    assert macro_f1(y_true, y_pred, 2) == pytest.approx(metrics.f1_score(y_true, y_pred, average="macro",
                                                                         zero_division=0))
    k = int(rng.integers(3, 7))
    y_true = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, k, n))
    assert macro_f1(y_true, y_pred, k) == pytest.approx(metrics.f1_score(y_true, y_pred, average="macro",
                                                                         zero_division=0))
    assert weighted_f1(y_true, y_pred, k) == pytest.approx(metrics.f1_score(y_true, y_pred,
                                                                            average="weighted",
                                                                            zero_division=0))


def test_paired_bootstrap_reports_positive_f1_for_binary_tasks_only():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 40)
    a = np.where(rng.random(40) < 0.7, y, 1 - y)
    boot = paired_bootstrap(y, {"a": a}, 2, 200, seed=0)
    assert boot["a"]["F1_positive"].point[0] == pytest.approx(f1_positive(y, a))
    # each resample equals the positive F1 of the items it repeats
    from ctxbench.bootstrap import CHUNK
    w = np.random.default_rng(0).multinomial(40, np.full(40, 1 / 40), size=min(CHUNK, 200))[0]
    idx = np.repeat(np.arange(40), w)
    assert boot["a"]["F1_positive"].samples[0, 0] == pytest.approx(f1_positive(y[idx], a[idx]))
    assert "F1_positive" not in paired_bootstrap(y, {"a": a}, 3, 50, seed=0)["a"]
