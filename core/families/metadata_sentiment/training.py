"""Training and applying the probes: train-split standardisation, soft-label
cross-entropy, validation-only selection of the epoch and weight decay, prediction.

Cross-entropy is taken against one-hot labels, or against the label distribution
when the dataset has one (label distribution learning, as for Twitter_LDL; Geng,
"Label Distribution Learning", TKDE 2016). AdamW, mini-batches, early stopping on
validation accuracy (:mod:`ctxbench.probe`); the test split is never an argument.
Deterministic given the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.functional import log_softmax

from ...probe import ProbeConfig, ProbeMemo, ProbeResult, select_on_validation, train_probe

#: Bump when the heads, the loss or the training inputs change: stored probes miss.
MEMO_VERSION = 1


@dataclass
class ProbeFit:
    """A trained probe with its selection record."""

    model: nn.Module
    params: dict
    best_epoch: int
    best_val: float
    grid: list[tuple[dict, float]]
    epochs_run: int = 0


#: An epoch makes at least this many optimiser steps (small training sets get
#: smaller batches, so early stopping does not act on a handful of steps).
MIN_STEPS_PER_EPOCH = 8


def effective_batch_size(n_train: int, requested: int) -> int:
    """``min(requested, ceil(n_train / MIN_STEPS_PER_EPOCH))`` (at least 1)."""
    return max(1, min(int(requested), math.ceil(n_train / MIN_STEPS_PER_EPOCH)))


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of -sum_k t_k log softmax(logits)_k (one-hot t: the usual cross-entropy)."""
    return -(target * log_softmax(logits, dim=-1)).sum(-1).mean()


def standardise(x: torch.Tensor, train_idx: np.ndarray, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(x - mean) / std with statistics of the training rows (present rows only for
    masked inputs, per source); masked-out rows become 0."""
    if x.ndim == 2:
        ref = x[train_idx]
        return (x - ref.mean(0)) / ref.std(0).clamp_min(1e-6)
    out = torch.zeros_like(x)
    for s in range(x.shape[1]):
        present = mask[:, s]
        rows = x[train_idx, s][present[train_idx]]
        if len(rows) < 2:
            continue
        out[:, s] = torch.where(present[:, None], (x[:, s] - rows.mean(0)) / rows.std(0).clamp_min(1e-6), 0.0)
    return out


def fit_probe(make_model, inputs: Sequence[torch.Tensor], targets: torch.Tensor, train_idx: np.ndarray,
              val_idx: np.ndarray, val_labels: np.ndarray, *, lr: float, weight_decays: Sequence[float],
              epochs: int, patience: int, batch_size: int, seed: int, device: str = "cpu",
              memo: ProbeMemo | None = None, key: object = ()) -> ProbeFit:
    """Train ``make_model()`` on ``inputs[..][train_idx]`` against ``targets`` (rows are
    distributions), one run per weight decay; the epoch and the weight decay with the
    best validation accuracy win (the test split is not an argument).

    ``memo``: trained probes are restored from it (:func:`ctxbench.probe.train_probe`);
    ``key`` names the model ``make_model`` builds (its constructor arguments)."""
    tr = torch.as_tensor(train_idx, dtype=torch.long)
    va = torch.as_tensor(val_idx, dtype=torch.long)
    val_y = torch.as_tensor(val_labels, dtype=torch.long).to(device)
    train_inputs = [t[tr].to(device) for t in inputs]
    val_inputs = [t[va].to(device) for t in inputs]
    train_targets = targets[tr].to(device)
    inputs_key = None
    if memo is not None:
        from ...cache import digest
        inputs_key = ("fit_probe", key, digest(train_inputs, train_targets, val_inputs, val_y))

    def logits_of(model, xs):
        out = model(*xs)
        return out[0] if isinstance(out, tuple) else out

    def fit(params: dict) -> ProbeResult:
        torch.manual_seed(seed)               # initialisation and dropout
        model = make_model()

        def batch_loss(m, idx):
            return soft_cross_entropy(logits_of(m, [t[idx] for t in train_inputs]), train_targets[idx])

        def val_score(m):
            return float((logits_of(m, val_inputs).argmax(-1) == val_y).double().mean())

        cfg = ProbeConfig(epochs=int(epochs), lr=float(lr), weight_decay=float(params["weight_decay"]),
                          batch_size=effective_batch_size(len(tr), int(batch_size)),
                          patience=int(patience), seed=int(seed))
        result = train_probe(model, len(tr), batch_loss, val_score, cfg, device=device,
                             memo=memo, key=inputs_key)
        result.model.to("cpu")
        return result

    candidates = [{"weight_decay": float(wd)} for wd in weight_decays]
    params, best, grid = select_on_validation(candidates, fit)
    return ProbeFit(best.model, params, best.best_epoch, best.best_val, grid, len(best.history))


@torch.no_grad()
def predict(model: nn.Module, inputs: Sequence[torch.Tensor], idx: np.ndarray,
            batch: int = 4096) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities [n, K], gates [n, S] or None) for items ``idx``."""
    model.eval()
    probs, gates = [], []
    idx = torch.as_tensor(idx, dtype=torch.long)
    for start in range(0, len(idx), batch):
        part = idx[start:start + batch]
        out = model(*[t[part] for t in inputs])
        logits, g = out if isinstance(out, tuple) else (out, None)
        probs.append(torch.softmax(logits, -1).double().numpy())
        if g is not None:
            gates.append(g.double().numpy())
    return np.concatenate(probs), (np.concatenate(gates) if gates else None)


