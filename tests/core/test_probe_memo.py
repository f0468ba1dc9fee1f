"""Trained probes remembered across runs (issue 18: evaluator work cached by its
inputs): a rerun with the same memo trains nothing and gives identical results; a
changed hyper-parameter, input or backend identity misses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ctxbench import probe
from ctxbench.cache import ArtifactMemo
from ctxbench.encoder import CachedEncoder
from ctxbench.families.contract import EvalRequest
from ctxbench.probe import ProbeConfig, ProbeMemo, train_probe
from ctxbench_plugins.random_backend import RandomBackend


@pytest.fixture
def trainings(monkeypatch):
    """Counts the probes really trained, one per plain training loop and one per run
    of a stacked loop (a memo hit trains none)."""
    calls = []
    real_loop, real_stack = probe._train_loop, probe.train_probe_stack

    def counting(*args, **kwargs):
        calls.append(1)
        return real_loop(*args, **kwargs)

    def counting_stack(stack, n_train, batch_loss, val_scores, configs, *args, **kwargs):
        calls.extend([1] * len(configs))
        return real_stack(stack, n_train, batch_loss, val_scores, configs, *args, **kwargs)
    monkeypatch.setattr(probe, "_train_loop", counting)
    monkeypatch.setattr(probe, "train_probe_stack", counting_stack)
    return calls


def _equal(a, b, where="") -> None:
    """Deep equality, floats to 1e-12 (nan == nan)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            _equal(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, where
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-12, (where, a, b)
    elif isinstance(a, np.ndarray):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg=where)
    else:
        assert a == b, (where, a, b)


def _as_plain(out) -> dict:
    return {"metrics": {k: v.to_json() for k, v in out.metrics.items()}, "tables": out.tables,
            "details": out.details, "headline": out.headline, "n": out.n}


def _request(dataset, protocol, memo, identity="random|x", seed=0):
    enc = CachedEncoder(RandomBackend(dim=16), None, progress=False)
    return EvalRequest(task=None, dataset=dataset, encoder=enc, protocol=dict(protocol), seed=seed,
                       memo=memo, cache_identity=identity)


def _domain_adaptation():
    from ctxbench.families.domain_adaptation import synthetic
    from ctxbench.families.domain_adaptation.evaluator import evaluate
    from ctxbench.families.domain_adaptation.protocol import PROTOCOL_DEFAULTS
    ds = synthetic.build(domains=("flat", "photo"), per_class={"train": 6, "val": 3, "test": 4}, size=32)
    p = {**PROTOCOL_DEFAULTS, "pairs": "all", "bootstrap_resamples": 100, "training_seeds": 2,
         "epochs": 15, "pseudo_labels": "caption_probe"}
    return evaluate, ds, p, "lr"


def _metadata_sentiment():
    from ctxbench.families.metadata_sentiment import synthetic
    from ctxbench.families.metadata_sentiment.evaluator import evaluate
    from ctxbench.families.metadata_sentiment.protocol import PROTOCOL_DEFAULTS
    ds = synthetic.build(n_per_class=12, seed=0, size=32)
    p = {**PROTOCOL_DEFAULTS, "bootstrap_resamples": 100, "epochs": 15,
         "fields": {"caption": "{caption}", "objects": "objects: {objects}"}}
    return evaluate, ds, p, "linear_lr"


def _aesthetics():
    from ctxbench.families.aesthetics import synthetic
    from ctxbench.families.aesthetics.evaluator import evaluate
    ds = synthetic.build_quality(n_images=120, seed=0, size=32)
    return evaluate, ds, {"n_resamples": 100, "epochs": 15}, "emd_weight"


FAMILIES = {"domain_adaptation": _domain_adaptation, "metadata_sentiment": _metadata_sentiment,
            "aesthetics": _aesthetics}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_rerun_restores_probes_exactly(family, tmp_path, trainings):
    evaluate, ds, p, knob = FAMILIES[family]()
    plain = _as_plain(evaluate(_request(ds, p, None)))
    n_trained = len(trainings)
    assert n_trained > 0 and not (tmp_path / "artifacts").exists()

    memo = ArtifactMemo(tmp_path / "artifacts")
    first = _as_plain(evaluate(_request(ds, p, memo)))
    assert len(trainings) == 2 * n_trained, "a miss trains as often as no memo"
    stored = len(list((tmp_path / "artifacts").glob("*.npz")))
    assert stored == n_trained
    second = _as_plain(evaluate(_request(ds, p, memo)))
    assert len(trainings) == 2 * n_trained, "the rerun trained something"
    _equal(first, plain)
    _equal(second, plain)

    # one hyper-parameter changed: misses (and stores new entries)
    changed = dict(p)
    changed[knob] = float(p.get(knob, 0.0) or 0.0) * 0.5 + 1e-4 if knob != "emd_weight" else 0.25
    if knob == "emd_weight":
        changed["distribution_head"] = True
    evaluate(_request(ds, changed, memo))
    assert len(trainings) > 2 * n_trained
    # another backend identity: misses too
    before = len(trainings)
    evaluate(_request(ds, p, memo, identity="random|other"))
    assert len(trainings) == before + n_trained


def _toy_problem(seed=0, n=80, d=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] > 0).long()
    return x, y


def _fit(x, y, memo, key, config=ProbeConfig(epochs=20, batch_size=16, patience=5), hidden=None):
    torch.manual_seed(0)
    model = nn.Linear(x.shape[1], 2) if hidden is None else nn.Sequential(
        nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 2))
    tr, va = torch.arange(60), torch.arange(60, len(y))

    def batch_loss(m, idx):
        return F.cross_entropy(m(x[tr][idx]), y[tr][idx])

    def val_score(m):
        return float((m(x[va]).argmax(1) == y[va]).float().mean())
    return train_probe(model, len(tr), batch_loss, val_score, config, memo=memo, key=key)


def test_hit_restores_state_epoch_history_and_rng(tmp_path, trainings):
    x, y = _toy_problem()
    memo = ProbeMemo(ArtifactMemo(tmp_path), ("test", 1, "id"))
    a = _fit(x, y, memo, ("toy", x, y))
    rng_after_training = torch.get_rng_state().clone()
    torch.manual_seed(123)   # a hit must leave the generator where training left it
    b = _fit(x, y, memo, ("toy", x, y))
    assert len(trainings) == 1
    assert torch.equal(torch.get_rng_state(), rng_after_training)
    assert (a.best_epoch, a.best_val, a.history) == (b.best_epoch, b.best_val, b.history)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert not b.model.training


@pytest.mark.parametrize("change", ["config", "key", "inputs", "architecture", "scope"])
def test_anything_that_shapes_the_model_misses(tmp_path, trainings, change):
    x, y = _toy_problem()
    memo = ProbeMemo(ArtifactMemo(tmp_path), ("test", 1, "id"))
    _fit(x, y, memo, ("toy", x, y), hidden=4)
    assert len(trainings) == 1
    if change == "config":
        _fit(x, y, memo, ("toy", x, y), ProbeConfig(epochs=20, batch_size=16, patience=5, lr=2e-3), hidden=4)
    elif change == "key":
        _fit(x, y, memo, ("toy", x, y, "weight 0.5"), hidden=4)
    elif change == "inputs":
        x2 = x.clone()
        x2[0, 0] += 1e-6
        _fit(x2, y, memo, ("toy", x2, y), hidden=4)
    elif change == "architecture":
        _fit(x, y, memo, ("toy", x, y), hidden=5)
    else:
        _fit(x, y, ProbeMemo(memo.store, ("test", 2, "id")), ("toy", x, y), hidden=4)
    assert len(trainings) == 2


def test_corrupt_entry_trains_again(tmp_path, trainings):
    x, y = _toy_problem()
    memo = ProbeMemo(ArtifactMemo(tmp_path), ("test", 1, "id"))
    a = _fit(x, y, memo, ("toy", x, y))
    for f in tmp_path.glob("*.npz"):
        f.write_bytes(b"not a zip")
    b = _fit(x, y, memo, ("toy", x, y))
    assert len(trainings) == 2 and a.best_val == b.best_val


def test_memo_without_key_is_refused(tmp_path):
    x, y = _toy_problem()
    with pytest.raises(ValueError, match="key"):
        _fit(x, y, ProbeMemo(ArtifactMemo(tmp_path)), None)
