"""image_text_retrieval metrics: hand-computed cases, an exhaustive brute-force
reference over every tie-breaking order (ties included), chance for a constant
embedding, block-wise scoring, and the evaluator's output on a stub encoder."""

import itertools
import math

import numpy as np
import pytest
import torch

from ctxbench.families.contract import EvalRequest
from ctxbench.families.image_text_retrieval import evaluator, metrics
from ctxbench.families.image_text_retrieval.data import ImageTextDataset
from ctxbench.families.image_text_retrieval.metrics import (i2t_hits, multi_positive_recall_at_k,
                                                            recall_at_k, t2i_hits)
from ctxbench.families.image_text_retrieval.protocol import (PROTOCOL_DEFAULTS, check_protocol,
                                                             metric_names)
from ctxbench.errors import ProtocolError
from ctxbench.inputs import ImageRef
from PIL import Image


def brute_force(scores: np.ndarray, positives: np.ndarray, ks) -> np.ndarray:
    """E[hit@K] averaged over every order of the candidates used to break ties:
    rank by score (descending), ties by the position in the permutation."""
    q, p = scores.shape
    out = np.zeros((q, len(ks)))
    perms = list(itertools.permutations(range(p)))
    for i in range(q):
        for perm in perms:
            tiebreak = np.empty(p)
            tiebreak[list(perm)] = np.arange(p)
            order = sorted(range(p), key=lambda c: (-scores[i, c], tiebreak[c]))
            first = next(r for r, c in enumerate(order, 1) if positives[i, c])
            out[i] += [first <= k for k in ks]
    return out / len(perms)


# ----------------------------------------------------------------------------- hand-computed
def test_i2t_hand_computed_cases():
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.1],     # 1 above, the positive tied with 1 negative
                           [0.3, 0.7, 0.7, 0.7],     # 2 positives tied with 1 negative, none above
                           [0.8, 0.2, 0.6, 0.6]])    # best positive first: a hit at every K
    positives = torch.tensor([[False, True, False, False],
                              [False, True, True, False],
                              [True, False, True, False]])
    got = multi_positive_recall_at_k(scores, positives, [1, 2, 3])
    # row 0: K=1 -> 0; K=2: one free place among {pos, neg} -> 1/2; K=3 -> 1
    # row 1: K=1: miss iff the negative comes first -> 1 - 1/3; K=2 -> 1
    expected = torch.tensor([[0.0, 0.5, 1.0], [2 / 3, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(got, expected)


def test_t2i_hand_computed_cases():
    # 3 captions x 3 images; caption 2's image ties with another one
    scores = torch.tensor([[0.9, 0.1, 0.2], [0.8, 0.3, 0.1], [0.4, 0.6, 0.6]])
    got = recall_at_k(scores, torch.tensor([0, 1, 2]), [1, 2])
    assert torch.allclose(got, torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.5, 1.0]], dtype=torch.float64))


def test_one_positive_is_the_single_target_formula():
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.integers(0, 3, size=(40, 9)).astype(np.float32))
    targets = torch.from_numpy(rng.integers(0, 9, size=40))
    mask = torch.nn.functional.one_hot(targets, 9).bool()
    ks = [1, 2, 5, 9, 12]
    assert torch.allclose(multi_positive_recall_at_k(scores, mask, ks), recall_at_k(scores, targets, ks))


# ----------------------------------------------------------------------------- brute force
@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_over_every_tie_breaking_order(seed):
    rng = np.random.default_rng(seed)
    p = 6
    scores = rng.integers(0, 3, size=(12, p)).astype(np.float32)   # many ties
    positives = rng.random((12, p)) < 0.35
    positives[np.arange(12), rng.integers(0, p, size=12)] = True   # at least one each
    ks = [1, 2, 3, 5]
    got = multi_positive_recall_at_k(torch.from_numpy(scores), torch.from_numpy(positives), ks).numpy()
    assert np.allclose(got, brute_force(scores, positives, ks), atol=1e-12)
    single = rng.integers(0, p, size=12)
    one = np.zeros_like(positives)
    one[np.arange(12), single] = True
    got1 = recall_at_k(torch.from_numpy(scores), torch.from_numpy(single), ks).numpy()
    assert np.allclose(got1, brute_force(scores, one, ks), atol=1e-12)


def test_scores_within_the_tolerance_are_ties():
    scores = torch.tensor([[0.5 + 3e-7, 0.5, 0.2]])
    got = multi_positive_recall_at_k(scores, torch.tensor([[False, True, False]]), [1])
    assert got.item() == pytest.approx(0.5)


def test_bad_shapes_and_queries_without_positive_are_refused():
    with pytest.raises(ValueError, match="at least one positive"):
        multi_positive_recall_at_k(torch.zeros(2, 3), torch.tensor([[True, False, False]] + [[False] * 3]), [1])
    with pytest.raises(ValueError, match=r"\[Q, P\]"):
        multi_positive_recall_at_k(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.bool), [1])


# ----------------------------------------------------------------------------- embeddings
OWNER = torch.tensor([0, 0, 0, 1, 2, 2, 3, 4, 4, 4])   # 5 images, 1-3 captions each


def test_constant_embeddings_score_exactly_chance():
    images, texts = torch.ones(5, 4), torch.ones(10, 4)
    ks = [1, 2, 5]
    t2i = t2i_hits(texts, images, OWNER, ks).mean(0)
    assert torch.allclose(t2i, torch.tensor([k / 5 for k in ks], dtype=torch.float64))
    i2t = i2t_hits(images, texts, OWNER, ks)
    m = torch.bincount(OWNER).tolist()
    expected = [[1 - math.comb(10 - mi, k) / math.comb(10, k) for k in ks] for mi in m]
    assert torch.allclose(i2t, torch.tensor(expected, dtype=torch.float64))


def test_block_wise_scoring_gives_the_same_hits(monkeypatch):
    rng = torch.Generator().manual_seed(0)
    images, texts = torch.randn(5, 8, generator=rng), torch.randn(10, 8, generator=rng)
    full_t, full_i = t2i_hits(texts, images, OWNER, [1, 3]), i2t_hits(images, texts, OWNER, [1, 3])
    monkeypatch.setattr(metrics, "BLOCK", 3)
    assert torch.equal(t2i_hits(texts, images, OWNER, [1, 3]), full_t)
    assert torch.equal(i2t_hits(images, texts, OWNER, [1, 3]), full_i)


def test_oracle_embeddings_score_one():
    images = torch.eye(5)
    texts = images[OWNER] + 0.01 * torch.randn(10, 5, generator=torch.Generator().manual_seed(1))
    assert torch.all(t2i_hits(texts, images, OWNER, [1]) == 1)
    assert torch.all(i2t_hits(images, texts, OWNER, [1]) == 1)


# ----------------------------------------------------------------------------- evaluator
class StubEncoder:
    """Embeds image i as e_i (its ref label is its index) and a caption as e_owner,
    except ``swap``: caption j pointed at another image. Counts every input."""

    def __init__(self, ds, swap=None):
        self.ds, self.swap = ds, dict(swap or {})
        self.calls = {"images": [], "texts": []}

    def images(self, refs):
        self.calls["images"].append(len(refs))
        return torch.eye(len(refs))

    def texts(self, texts):
        self.calls["texts"].append(len(texts))
        owners = [self.swap.get(j, o) for j, o in enumerate(self.ds.caption_image)]
        return torch.eye(len(self.ds.images))[owners]


def _dataset(n_images=5, owner=OWNER, extra_images=0):
    refs = [ImageRef.from_pil(Image.new("RGB", (2, 2), (i, 0, 0)), str(i))
            for i in range(n_images + extra_images)]
    return ImageTextDataset("stub", [str(i) for i in range(len(refs))], refs,
                            [f"caption {j}" for j in range(len(owner))], owner.tolist())


def _run(ds, encoder, **protocol):
    p = {**PROTOCOL_DEFAULTS, "bootstrap_resamples": 500, **protocol}
    return evaluator.evaluate(EvalRequest(task=None, dataset=ds, encoder=encoder, protocol=p, seed=0))


def test_evaluator_metrics_headline_and_single_encoding():
    ds = _dataset()
    enc = StubEncoder(ds, swap={0: 3})   # caption 0 (of image 0) looks like image 3
    out = _run(ds, enc)
    assert enc.calls == {"images": [5], "texts": [10]}   # each input once
    assert list(out.metrics) == metric_names(PROTOCOL_DEFAULTS)
    assert out.headline == ["t2i/R@1", "i2t/R@1"]
    t2i = out.metrics["t2i/R@1"]
    assert t2i.value == pytest.approx(0.9) and t2i.n == 10
    lo, hi = t2i.ci
    assert lo <= 0.9 <= hi and hi == 1.0
    # image 3 ties between its own caption 6 and caption 0: expected hit 1/2; the others hit
    assert out.metrics["i2t/R@1"].value == pytest.approx((4 + 0.5) / 5)
    assert out.metrics["i2t/R@5"].value == 1.0 and out.metrics["t2i/R@10"].value == 1.0
    assert out.n == 15
    assert out.details["n_images"] == 5 and out.details["captions_per_image"]["max"] == 3
    assert [r["direction"] for r in out.tables["Recall@K by direction"]] == ["t2i", "i2t"]


def test_images_without_captions_are_distractors_not_queries():
    ds = _dataset(extra_images=2)            # images 5 and 6 have no caption
    out = _run(ds, StubEncoder(ds), ks=[1, 2])
    assert out.metrics["i2t/R@1"].n == 5 and out.metrics["t2i/R@1"].n == 10
    assert out.headline == ["t2i/R@1", "i2t/R@1"]
    assert out.metrics["t2i/R@1"].value == 1.0


def test_headline_uses_the_smallest_k_without_1():
    ds = _dataset()
    assert _run(ds, StubEncoder(ds), ks=[10, 5]).headline == ["t2i/R@5", "i2t/R@5"]


def test_cluster_bootstrap_resamples_images():
    """One image with many captions all wrong: an item bootstrap would give a narrow
    interval, resampling images a wide one."""
    owner = torch.tensor([0] * 20 + [1, 2, 3, 4])
    ds = _dataset(owner=owner)
    out = _run(ds, StubEncoder(ds, swap={j: 1 for j in range(20)}), bootstrap_resamples=2000)
    lo, hi = out.metrics["t2i/R@1"].ci
    assert out.metrics["t2i/R@1"].value == pytest.approx(4 / 24)
    from ctxbench.bootstrap import cluster_means
    hits = np.array([0.0] * 20 + [1.0] * 4)[:, None]
    item_lo, item_hi = cluster_means(hits, None, 2000, seed=0).ci(method="expanded")[0]
    assert hi - lo > 2 * (item_hi - item_lo)   # the 20-caption cluster is in or out as a whole
    assert hi == 1.0                           # a resample without image 0: every caption hits


@pytest.mark.parametrize("bad", [{"ks": []}, {"ks": [0]}, {"ks": [1, 1]}, {"ks": "1"},
                                 {"bootstrap_resamples": 0}, {"bootstrap_resamples": True}])
def test_protocol_check_refuses(bad):
    with pytest.raises(ProtocolError):
        check_protocol({**PROTOCOL_DEFAULTS, **bad})
