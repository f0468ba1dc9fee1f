"""The context_retrieval evaluator on the embedded dataset: structure proven by an
oracle backend, chance by `random`, n/a by a backend without context support."""

import numpy as np
import pytest
import torch

from ctxbench.backend import Capabilities
from ctxbench.encoder import CachedEncoder
from ctxbench.families.context_retrieval import evaluator as cr
from ctxbench.families.context_retrieval.data import limit_groups
from ctxbench.families.context_retrieval.protocol import PROTOCOL_DEFAULTS
from ctxbench.families.contract import EvalRequest
from ctxbench.families.context_retrieval.synthetic import build
from ctxbench_plugins.random_backend import RandomBackend
from oracle_backend import OracleBackend


@pytest.fixture(scope="module")
def dataset():
    return build(n_groups=8, seed=0)


def run(backend, dataset, **protocol):
    enc = CachedEncoder(backend, cache=None, progress=False)
    p = {**PROTOCOL_DEFAULTS, "bootstrap_resamples": 500, **protocol}
    return cr.evaluate(EvalRequest(task=None, dataset=dataset, encoder=enc, protocol=p)), enc


def test_oracle_with_image_context_is_perfect_at_every_level(dataset):
    out, _ = run(OracleBackend(dataset), dataset)
    for level in ("L1", "L2", "L3", "L4"):
        for pattern in ("image_ctx", "both_ctx"):
            assert out.metrics[f"{level}/{pattern}/R@1"].value == pytest.approx(1.0)


def test_oracle_without_context_meets_the_generator_ceiling(dataset):
    out, _ = run(OracleBackend(dataset), dataset)
    ceiling = dataset.meta["no_context_ceiling"]
    for level in ("L1", "L2", "L3", "L4"):
        got = out.metrics[f"{level}/no_ctx/R@1"].value
        assert got == pytest.approx(ceiling[level], abs=1e-9)
    assert ceiling["L1"] == 1.0 and ceiling["L3"] < 0.5 and ceiling["L4"] < 0.5
    # the context gain at L3 is significant under the cluster bootstrap
    diff = out.metrics["L3/image_ctx-no_ctx/R@1"]
    assert diff.value > 0.5 and diff.ci[0] > 0 and diff.p_value < 0.01


def test_random_sits_near_one_over_pool(dataset):
    pool = len(dataset.images)
    values = []
    for seed in range(4):
        out, _ = run(RandomBackend(seed=seed), dataset, patterns=["no_ctx"], divergence=False)
        values += [out.metrics[f"{lv}/no_ctx/R@1"].value for lv in ("L1", "L2", "L3", "L4")]
    assert np.mean(values) == pytest.approx(1 / pool, abs=0.02)


class NoContextBackend(RandomBackend):
    def __init__(self):
        super().__init__(seed=1)
        self.capabilities = Capabilities(normalized=True)


def test_patterns_needing_context_are_na_for_a_dual_encoder(dataset):
    out, enc = run(NoContextBackend(), dataset)
    assert out.metrics["L2/no_ctx/R@1"].value is not None
    for pattern in ("query_ctx", "image_ctx", "both_ctx"):
        m = out.metrics[f"L2/{pattern}/R@1"]
        assert m.value is None and m.note.startswith("n/a")


def test_candidate_context_encodes_each_query_once_per_context(dataset):
    class Counting(RandomBackend):
        calls = 0

        def encode_texts(self, texts, contexts):
            Counting.calls += len(texts)
            return super().encode_texts(texts, contexts)

    run(Counting(), dataset, patterns=["no_ctx", "query_ctx"], levels=["L3"], divergence=False)
    n_ctx = len(set(dataset.assignment.values()))
    n_q = len(dataset.evaluation_queries("L3"))
    assert Counting.calls == n_q + n_q * n_ctx  # plain queries + one pass per context


def test_source_mode_and_divergence(dataset):
    out, _ = run(RandomBackend(), dataset, query_context="source")
    assert out.details["query_context"] == "source"
    # L1 queries are the same under every story: zero divergence; L3 differs
    assert out.metrics["L1/query_divergence"].value == pytest.approx(0.0, abs=1e-6)
    assert out.metrics["L3/query_divergence"].value > 0.5


def test_limit_keeps_whole_groups(dataset):
    small = limit_groups(dataset, 12)
    assert len(small.images) == 10 and len(small.groups) == 2
    assert all(im.group in {g.id for g in small.groups} for im in small.images)
