import numpy as np
import pytest
import torch

from ctxbench.families.context_retrieval.metrics import recall_at_k


def test_recall_hand_cases():
    scores = torch.tensor([[0.9, 0.1, 0.5],    # target 0: rank 1
                           [0.9, 0.1, 0.5],    # target 2: rank 2
                           [0.9, 0.1, 0.5]])   # target 1: rank 3
    r = recall_at_k(scores, torch.tensor([0, 2, 1]), [1, 2, 3])
    assert r.tolist() == [[1, 1, 1], [0, 1, 1], [0, 0, 1]]


def test_ties_count_as_expected_recall():
    # target tied with 3 others, one candidate strictly above: rank uniform on 2..5
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.5, 0.9, 0.1]])
    r = recall_at_k(scores, torch.tensor([0]), [1, 2, 3, 5])
    assert r[0].tolist() == pytest.approx([0.0, 0.25, 0.5, 1.0])
    # constant scores: exactly chance
    const = torch.zeros(4, 10)
    assert recall_at_k(const, torch.arange(4), [1])[:, 0].tolist() == [0.1] * 4


def test_matches_rank_definition_without_ties():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((50, 30))
    t = rng.integers(0, 30, 50)
    ranks = np.array([(s[i] > s[i, t[i]]).sum() + 1 for i in range(50)])
    r = recall_at_k(torch.from_numpy(s), torch.from_numpy(t), [1, 5, 10]).numpy()
    for j, k in enumerate([1, 5, 10]):
        assert np.array_equal(r[:, j], (ranks <= k).astype(float))


def test_shape_errors():
    with pytest.raises(ValueError, match="scores must be"):
        recall_at_k(torch.zeros(3), torch.zeros(3), [1])


def test_float_noise_within_tolerance_is_a_tie():
    scores = torch.tensor([[0.5, 0.5 + 3e-8, 0.5 - 3e-8, 0.1]])
    assert recall_at_k(scores, torch.tensor([0]), [1])[0, 0].item() == pytest.approx(1 / 3)
    assert recall_at_k(scores, torch.tensor([0]), [1], tie_tolerance=0)[0, 0].item() == 0.0
