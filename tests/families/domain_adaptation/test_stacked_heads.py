"""All runs of a pair train side by side (model.train_heads on probe.train_probe_stack).
The class of defect guarded here: a stacked run that is not the run it stands for
(a row reading another run's batch, loss weight or early stop). Each stacked run is
compared with that run trained alone by an independent reference: the indexed,
one-run loss of TRUST's terms (below) through the plain probe.train_probe loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ctxbench.families.domain_adaptation.model import (AdaptHead, StackedAdaptHeads, TrainData,
                                                       probe_config, stacked_loss, train_heads)
from ctxbench.families.domain_adaptation.protocol import PROTOCOL_DEFAULTS
from ctxbench.probe import ProbeMemo, train_probe


def reference_contrastive(z, u, w, tau):
    """One batch of target items, written as the module docstring states it."""
    sim = (u @ u.T).clamp(0.0, 1.0)
    pos = sim / sim.sum(1, keepdim=True).clamp_min(1e-12)
    log_neg_w = torch.log((1.0 - sim).clamp_min(1e-6))
    logits = z @ u.T / tau
    log_den = torch.logsumexp(logits + log_neg_w, dim=1, keepdim=True)
    return (w * -(pos * (logits - log_den)).sum(1)).sum() / len(z)


def reference_loss(data: TrainData, p: dict, lam_pl: float, lam_con: float):
    """One run's loss on one batch ``idx`` (indices into source, then target items)."""
    ns = len(data.ys)

    def batch_loss(m, idx):
        src, tgt = idx[idx < ns], idx[idx >= ns] - ns
        loss = F.cross_entropy(m(data.xs[src]), data.ys[src]) if len(src) else m.classifier.bias.sum() * 0
        if len(tgt) and (lam_pl or lam_con):
            h, w = m.features(data.xt[tgt]), data.ct[tgt]
            if lam_pl:
                loss = loss + lam_pl * (w * F.cross_entropy(m.classifier(h), data.yt[tgt], reduction="none")).mean()
            if lam_con and len(tgt) >= 2:
                z = F.normalize(m.projector(h), dim=-1)
                loss = loss + lam_con * reference_contrastive(z, data.ut[tgt], w, float(p["contrastive_temperature"]))
        return loss

    return batch_loss


def fresh_head(data: TrainData, k: int, seed: int) -> AdaptHead:
    torch.manual_seed(seed)
    return AdaptHead(data.xs.shape[1], k, data.ut.shape[1])


def train_alone(data: TrainData, k: int, p: dict, seed: int, lam_pl: float, lam_con: float):
    def val_score(m):
        return float((m(data.xv).argmax(1) == data.yv).float().mean())

    return train_probe(fresh_head(data, k, seed), len(data.ys) + data.n_target,
                       reference_loss(data, p, lam_pl, lam_con), val_score, probe_config(p, seed))


def shifted_data(seed=0, k=5, d=16, n_src=30, n_tgt=25):
    g = torch.Generator().manual_seed(seed)
    anchors = F.normalize(torch.randn(k, d, generator=g), dim=-1)
    ys, yv, yt_true = (torch.arange(k).repeat_interleave(n) for n in (n_src, 6, n_tgt))
    noisy = lambda y, s: F.normalize(anchors[y] + s * torch.randn(len(y), d, generator=g), dim=-1)  # noqa: E731
    xt = F.normalize(noisy(yt_true, 0.9) + 0.8 * torch.randn(len(yt_true), d, generator=g), dim=-1)
    ut = noisy(yt_true, 0.3)
    yhat = torch.where(torch.rand(len(yt_true), generator=g) < 0.8, yt_true, torch.randint(0, k, yt_true.shape, generator=g))
    conf = torch.rand(len(yt_true), generator=g)
    return TrainData(noisy(ys, 0.9), ys, noisy(yv, 0.9), yv, xt, yhat, conf, ut), k


def test_each_stacked_runs_loss_and_gradient_are_its_own():
    """Each row of a stack, given its own batch (with few or no target or source
    items among them), gets exactly the loss and gradient of that run alone."""
    data, k = shifted_data()
    p = dict(PROTOCOL_DEFAULTS)
    seeds, lambdas = [11, 11, 12, 13, 14], [(0.0, 0.0), (1.0, 0.5), (1.0, 0.5), (0.5, 0.0), (0.0, 2.0)]
    heads = [fresh_head(data, k, s) for s in seeds]
    stack = StackedAdaptHeads([fresh_head(data, k, s) for s in seeds], lambdas)
    ns, n = len(data.ys), len(data.ys) + data.n_target
    g = torch.Generator().manual_seed(0)
    for batch in (16, 3):
        idx = torch.stack([torch.randperm(n, generator=g)[:batch] for _ in seeds])
        idx[3] = torch.arange(ns, ns + batch)          # target items only
        idx[4, :batch - 1] = torch.arange(batch - 1)   # a single target item
        stack.zero_grad()
        losses = stacked_loss(data, p, [a for a, _ in lambdas], [b for _, b in lambdas])(stack, idx)
        losses.sum().backward()
        for r, (head, (lp, lc)) in enumerate(zip(heads, lambdas)):
            head.zero_grad()
            alone = reference_loss(data, p, lp, lc)(head, idx[r])
            alone.backward()
            assert float(losses[r].detach()) == pytest.approx(float(alone.detach()), rel=1e-5, abs=1e-7), (batch, r)
            for name, param in head.named_parameters():
                got = dict(stack.named_parameters())[name].grad[r]
                want = param.grad if param.grad is not None else torch.zeros_like(param)  # unused: None
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_each_stacked_run_is_the_run_trained_alone():
    """Whole fits, without early stopping (patience > epochs): the same validation
    history and, up to float rounding, the same final state. (Adam divides each
    gradient by its running scale, so over hundreds of small-batch steps rounding
    differences on near-zero gradients grow to ~1e-3; here 40 epochs of 4 steps,
    the batch capped by probe.effective_batch_size.)"""
    data, k = shifted_data()
    p = {**PROTOCOL_DEFAULTS, "batch_size": 256, "epochs": 40, "patience": 1000}
    seeds = [11, 11, 12, 13]
    lambdas = [(0.0, 0.0), (1.0, 0.5), (1.0, 0.5), (0.5, 0.0)]
    stacked = train_heads(data, k, p, seeds, lambdas, "cpu")
    for (model, res), seed, (lp, lc) in zip(stacked, seeds, lambdas):
        alone = train_alone(data, k, p, seed, lp, lc)
        assert len(res.history) == len(alone.history) == 40
        assert np.abs(np.array(res.history) - np.array(alone.history)).max() <= 1 / len(data.yv) + 1e-6
        for name, value in alone.model.state_dict().items():
            torch.testing.assert_close(model.state_dict()[name], value, rtol=1e-3, atol=1e-4)
    assert not torch.equal(stacked[0][0].classifier.weight, stacked[1][0].classifier.weight)


def test_each_stacked_run_stops_by_its_own_history():
    """Runs of one stack stop at different epochs; each keeps its own best epoch
    (ties: the later) and history, under the rule of probe.train_probe."""
    from ctxbench.probe import MIN_STEPS, effective_batch_size
    data, k = shifted_data(seed=3)
    p = {**PROTOCOL_DEFAULTS, "epochs": 300, "patience": 4, "batch_size": 8}
    runs = train_heads(data, k, p, [1, 2, 3, 4], [(0.0, 0.0), (1.0, 0.5), (0.0, 0.0), (1.0, 0.5)], "cpu")
    n = len(data.ys) + data.n_target
    steps_per_epoch = -(-n // effective_batch_size(n, p["batch_size"]))
    min_epochs = -(-MIN_STEPS // steps_per_epoch)
    for _, res in runs:
        h = np.array(res.history)
        best = max(i for i in range(len(h)) if h[i] >= h.max() - 1e-9)
        assert res.best_epoch == best and res.best_val == pytest.approx(h.max())
        assert len(h) >= min_epochs
        assert len(h) == 300 or (len(h) - 1 - _last_strict_gain(h) >= p["patience"])
    assert len({len(res.history) for _, res in runs}) > 1, "all runs stopped together: not a test"


def _last_strict_gain(h: np.ndarray) -> int:
    best, at = -np.inf, -1
    for i, v in enumerate(h):
        if v > best + 1e-9:
            best, at = v, i
    return at


def test_rows_do_not_depend_on_their_stack_mates():
    """A run trained in a stack of several equals, bit for bit, the same run trained in
    a stack of its own, also with few target items per batch (batches without any)."""
    data, k = shifted_data(seed=4, n_tgt=1)
    p = {**PROTOCOL_DEFAULTS, "epochs": 30, "batch_size": 16}
    seeds, lambdas = [3, 3, 4, 5], [(0.0, 0.0), (1.0, 0.5), (1.0, 0.5), (0.0, 2.0)]
    together = train_heads(data, k, p, seeds, lambdas, "cpu")
    for (model, res), seed, lam in zip(together, seeds, lambdas):
        ((alone, res_alone),) = train_heads(data, k, p, [seed], [lam], "cpu")
        assert res.history == res_alone.history and res.best_epoch == res_alone.best_epoch
        for name, value in alone.state_dict().items():
            if lam == (0.0, 0.0) and name.startswith("projector"):
                continue   # unused by source_only; decays beside adapt rows (stacked_loss)
            assert torch.equal(model.state_dict()[name], value), (lam, name)


def test_zero_weights_in_a_stack_give_the_source_only_run_exactly():
    data, k = shifted_data(seed=1)
    p = {**PROTOCOL_DEFAULTS, "epochs": 30}
    (a, _), (b, _), (c, _) = train_heads(data, k, p, [5, 5, 6], [(0.0, 0.0), (0.0, 0.0), (1.0, 0.5)], "cpu")
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


class DictStore:
    def __init__(self):
        self.data, self.puts = {}, 0

    def get(self, key):
        return self.data.get(key)

    def put(self, key, arrays):
        self.puts += 1
        self.data[key] = arrays


def test_memo_restores_runs_one_by_one():
    """A rerun restores every run; a rerun with one more run trains only that one."""
    data, k = shifted_data(seed=2)
    p = {**PROTOCOL_DEFAULTS, "epochs": 20}
    memo = ProbeMemo(DictStore(), ("test",))
    first = train_heads(data, k, p, [1, 2], [(0.0, 0.0), (1.0, 0.5)], "cpu", memo=memo)
    assert memo.store.puts == 2
    again = train_heads(data, k, p, [1, 2, 3], [(0.0, 0.0), (1.0, 0.5), (1.0, 0.5)], "cpu", memo=memo)
    assert memo.store.puts == 3
    for (m1, r1), (m2, r2) in zip(first, again):
        assert r1.best_epoch == r2.best_epoch
        for name, value in m1.state_dict().items():
            assert torch.equal(value, m2.state_dict()[name])
    # another loss weight is another run: not restored from the (0, 0) entry
    train_heads(data, k, p, [1], [(0.5, 0.0)], "cpu", memo=memo)
    assert memo.store.puts == 4
