"""probe.train_probe_stack: R probes in one loop, each the fit train_probe gives it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ctxbench.probe import ProbeConfig, train_probe, train_probe_stack


class LinearRows(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([l.weight.detach() for l in layers]))   # noqa: E741
        self.bias = nn.Parameter(torch.stack([l.bias.detach() for l in layers]))     # noqa: E741

    def forward(self, x):
        return x @ self.weight.transpose(1, 2) + self.bias[:, None, :]


def regression(seed=0, n=120, d=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, 1, generator=g) + 0.3 * torch.randn(n, 1, generator=g)
    return x[:90], y[:90], x[90:], y[90:]


def test_stacked_linear_probes_match_separate_fits():
    x, y, xv, yv = regression()
    # batch 8: 12 steps an epoch, so MIN_STEPS allows a stop from epoch 17; the runs
    # stop at different epochs (checked below), each as train_probe stops it
    configs = [ProbeConfig(epochs=300, lr=0.1, batch_size=8, patience=2, seed=s) for s in (0, 1, 2, 3)]
    layers = []
    for c in configs:
        torch.manual_seed(c.seed)
        layers.append(nn.Linear(6, 1))
    alone = [train_probe(copy.deepcopy(layer), 90, lambda m, i: ((m(x[i]) - y[i]) ** 2).mean(),
                         lambda m: -float(((m(xv) - yv) ** 2).mean()), c)
             for layer, c in zip(layers, configs)]
    stack = LinearRows(layers)
    runs = train_probe_stack(stack, 90, lambda m, i: ((m(x[i]) - y[i]) ** 2).mean((1, 2)),
                             lambda m: -((m(xv.expand(4, -1, -1)) - yv) ** 2).mean((1, 2)), configs)
    for run, ref in zip(runs, alone):
        assert run.best_epoch == ref.best_epoch
        assert run.history == pytest.approx(ref.history, rel=1e-4, abs=1e-6)
        torch.testing.assert_close(run.state["weight"], ref.model.weight.detach(), rtol=1e-4, atol=1e-5)
    assert len({len(run.history) for run in runs}) > 1, "every run stopped at the same epoch"


def test_a_run_without_a_comparable_score_keeps_its_last_state():
    """NaN validation scores never beat anything: the run returns its final state (as
    train_probe returns its last model), not an empty one."""
    x, y, _, _ = regression()
    configs = [ProbeConfig(epochs=3, lr=1e-2, batch_size=30, patience=1, seed=s) for s in (0, 1)]
    stack = LinearRows([nn.Linear(6, 1), nn.Linear(6, 1)])
    runs = train_probe_stack(stack, 90, lambda m, i: ((m(x[i]) - y[i]) ** 2).mean((1, 2)),
                             lambda m: torch.full((2,), float("nan")), configs)
    for r, run in enumerate(runs):
        assert run.best_epoch == -1 and len(run.history) == 3
        assert torch.equal(run.state["weight"], stack.weight.detach()[r])


def test_stacked_runs_must_share_all_but_the_seed():
    with pytest.raises(ValueError, match="seed only"):
        train_probe_stack(LinearRows([nn.Linear(2, 1), nn.Linear(2, 1)]), 4, None, None,
                          [ProbeConfig(seed=0), ProbeConfig(seed=1, lr=0.1)])
