import numpy as np
import pytest

from ctxbench.bootstrap import cluster_means, two_sided_p


def test_cluster_bootstrap_matches_a_naive_resampling_loop():
    rng = np.random.default_rng(1)
    clusters = np.repeat(np.arange(12), rng.integers(1, 6, 12))
    values = rng.random((len(clusters), 2))
    boot = cluster_means(values, clusters, n_resamples=4000, seed=3)
    # naive reference: resample cluster ids, concatenate their items, take the mean
    ref = []
    r2 = np.random.default_rng(99)
    ids = np.unique(clusters)
    for _ in range(4000):
        pick = r2.choice(ids, size=len(ids), replace=True)
        rows = np.concatenate([np.flatnonzero(clusters == c) for c in pick])
        ref.append(values[rows].mean(axis=0))
    ref = np.array(ref)
    assert np.allclose(boot.point, values.mean(axis=0))
    assert np.allclose(boot.samples.mean(axis=0), ref.mean(axis=0), atol=0.01)
    assert np.allclose(boot.samples.std(axis=0), ref.std(axis=0), rtol=0.1)
    lo, hi = boot.ci()[0]
    assert lo < values[:, 0].mean() < hi


def test_iid_bootstrap_standard_error():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(400)
    boot = cluster_means(x, None, n_resamples=5000, seed=0)
    assert boot.samples[:, 0].std() == pytest.approx(x.std() / np.sqrt(400), rel=0.08)


def test_p_values():
    assert two_sided_p(np.full((1000, 1), 0.3))[0] == pytest.approx(1 / 1000)   # never 0
    sym = np.linspace(-1, 1, 1001)[:, None]
    assert two_sided_p(sym)[0] == pytest.approx(1.0)
    shifted = np.random.default_rng(0).normal(0.1, 0.1, (10000, 1))
    p = two_sided_p(shifted)[0]
    assert 0.25 < p < 0.40   # 2 * P(N(0.1, 0.1) <= 0) = 0.317


def test_deterministic_given_seed():
    x = np.arange(20.0)
    a = cluster_means(x, x // 4, 300, seed=5).samples
    b = cluster_means(x, x // 4, 300, seed=5).samples
    assert np.array_equal(a, b)
