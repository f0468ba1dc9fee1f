"""--limit keeps enough of the MIR set that chance stays chance (class: a limit so
small that every item is relevant made random score mAP 1.000)."""

import numpy as np

from ctxbench.families.multi_instance_retrieval.data import MIN_LIMIT_CLIPS, limit_indices
from ctxbench.families.multi_instance_retrieval.metrics import mir_map


def test_tiny_limits_are_raised_and_random_stays_near_chance():
    rng = np.random.default_rng(0)
    verbs = rng.integers(0, 6, 200)
    relevancy = (verbs[:, None] == verbs[None, :]).astype(float) * 0.5
    np.fill_diagonal(relevancy, 1.0)
    rows, cols = limit_indices(relevancy, 3)
    assert len(rows) >= MIN_LIMIT_CLIPS - 1 and len(cols) >= MIN_LIMIT_CLIPS - 1
    sub = relevancy[np.ix_(rows, cols)]
    random_map = mir_map(rng.standard_normal(sub.shape), sub)["avg"]
    assert random_map < 0.6
    assert limit_indices(relevancy, 10_000) is None
    big_rows, _ = limit_indices(relevancy, 100)
    assert len(big_rows) <= 100
