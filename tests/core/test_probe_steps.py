"""Every probe gets a real fit on a small training set (the class: early stopping that
ends a fit before it has learned anything, which scores a probe near chance and looks
like a finding about the backend).

The shared loop (ctxbench.probe.train_probe) is what the metadata_sentiment,
domain_adaptation and aesthetics probes train with, so the mechanism is tested there:
at least MIN_STEPS_PER_EPOCH steps per epoch, no early stop before MIN_STEPS steps,
and on a validation plateau the later (more trained) state is kept."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ctxbench import probe


def _separable(n: int, k: int = 8, d: int = 32, margin: float = 0.6, seed: int = 0):
    """Classes on a sphere with a small margin: learnable, but not in a few steps."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(k, d, generator=g), dim=-1)
    y = torch.arange(n) % k
    x = margin * centres[y] + F.normalize(torch.randn(n, d, generator=g), dim=-1)
    return (x - x.mean(0)) / x.std(0), y


@pytest.mark.parametrize("n_train", [40, 240, 1000])
def test_small_training_sets_get_enough_steps(n_train):
    x, y = _separable(n_train)
    steps = []

    def batch_loss(m, idx):
        steps.append(len(idx))
        return F.cross_entropy(m(x[idx]), y[idx])

    config = probe.ProbeConfig(epochs=100, lr=0.01, batch_size=256, patience=10)
    result = probe.train_probe(nn.Linear(x.shape[1], 8), n_train, batch_loss, lambda m: 0.5, config)
    per_epoch = math.ceil(n_train / probe.effective_batch_size(n_train, 256))
    assert per_epoch >= probe.MIN_STEPS_PER_EPOCH
    assert len(steps) >= min(probe.MIN_STEPS, 100 * per_epoch)
    # a flat validation score keeps the last state, not the one after the first epoch
    assert result.best_epoch == len(result.history) - 1


def test_a_small_probe_learns_what_is_there():
    """240 training items with a 256-item batch (the embedded sentiment probe's shape):
    the fit separates the classes on held-out items."""
    x, y = _separable(240 + 400)
    xt, yt, xv, yv = x[:240], y[:240], x[240:], y[240:]
    config = probe.ProbeConfig(epochs=100, lr=0.01, batch_size=256, patience=10)
    result = probe.train_probe(nn.Linear(x.shape[1], 8), 240,
                               lambda m, idx: F.cross_entropy(m(xt[idx]), yt[idx]),
                               lambda m: float((m(xv[:80]).argmax(1) == yv[:80]).float().mean()), config)
    with torch.no_grad():
        accuracy = float((result.model(xv[80:]).argmax(1) == yv[80:]).float().mean())
    assert accuracy > 0.8, (accuracy, result.history[:15])


def test_early_stopping_still_stops_after_min_steps():
    x, y = _separable(2000)
    config = probe.ProbeConfig(epochs=100, lr=0.01, batch_size=256, patience=3)
    result = probe.train_probe(nn.Linear(x.shape[1], 8), 2000,
                               lambda m, idx: F.cross_entropy(m(x[idx]), y[idx]), lambda m: 0.5, config)
    per_epoch = math.ceil(2000 / 256)
    assert len(result.history) == max(4, math.ceil(probe.MIN_STEPS / per_epoch))
