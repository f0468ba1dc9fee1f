"""Training small heads on frozen, cached embeddings (shared by the metadata_sentiment,
domain_adaptation and aesthetics families).

Rules every family gets from here:
- train / validation / test are separate; the epoch (and any hyper-parameter
  grid) is selected on the validation score only; the test split is never seen
  during training or selection;
- deterministic given ``seed`` (torch generator for init and shuffling);
- full tensors in memory, mini-batches by index: seconds on a CPU for 10k items;
- small heads train on one CPU thread (see :func:`small_model_threads`).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn


@dataclass
class ProbeConfig:
    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    patience: int = 10          # stop after this many epochs without validation gain
    seed: int = 0


@dataclass
class ProbeResult:
    model: nn.Module
    best_epoch: int
    best_val: float
    history: list[float] = field(default_factory=list)  # validation score per epoch


SMALL_MODEL_PARAMS = 2_000_000


@contextmanager
def small_model_threads(device: str, n_params: int = 0):
    """Train small heads on one CPU thread, then restore the process setting.

    Their steps are tiny and dominated by per-op overhead; intra-op threads only add
    synchronisation (measured on a loaded 2-core machine: a 1 s fit took 45 s with
    two threads). No effect on GPUs or for models above SMALL_MODEL_PARAMS."""
    if not str(device).startswith("cpu") or n_params > SMALL_MODEL_PARAMS:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_probe(model: nn.Module, n_train: int,
                batch_loss: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                val_score: Callable[[nn.Module], float],
                config: ProbeConfig = ProbeConfig(), device: str = "cpu") -> ProbeResult:
    """Generic loop: AdamW on ``batch_loss(model, idx)`` over shuffled index batches of
    the training set; after each epoch ``val_score(model)`` (higher is better) picks
    the best state (early stopping with ``patience``). Returns the best model in
    eval mode."""
    n_params = sum(p.numel() for p in model.parameters())
    with small_model_threads(device, n_params):
        return _train_loop(model, n_train, batch_loss, val_score, config, device)


def _train_loop(model, n_train, batch_loss, val_score, config, device) -> ProbeResult:
    gen = torch.Generator().manual_seed(config.seed)
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best_state, best_val, best_epoch, since = None, -float("inf"), -1, 0
    history: list[float] = []
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(n_train, generator=gen)
        for start in range(0, n_train, config.batch_size):
            idx = order[start:start + config.batch_size].to(device)
            loss = batch_loss(model, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            score = float(val_score(model))
        history.append(score)
        if score > best_val + 1e-9:
            best_val, best_epoch, since = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since += 1
            if since >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return ProbeResult(model, best_epoch, best_val, history)


def select_on_validation(candidates: Sequence[dict], fit: Callable[[dict], ProbeResult]
                         ) -> tuple[dict, ProbeResult, list[tuple[dict, float]]]:
    """Fit one probe per hyper-parameter dict and keep the best validation score.
    Returns (best params, best result, [(params, val score) ...])."""
    scored = []
    best = None
    for params in candidates:
        result = fit(params)
        scored.append((params, result.best_val))
        if best is None or result.best_val > best[1].best_val:
            best = (params, result)
    assert best is not None, "no hyper-parameter candidates"
    return best[0], best[1], scored


def stratified_split(labels: np.ndarray, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded stratified split of item indices into train / val / test.

    Every class with >= 3 items has at least one item in each part."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n = len(idx)
        n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
        n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
        n_train = n - n_val - n_test
        parts["train"].extend(idx[:n_train])
        parts["val"].extend(idx[n_train:n_train + n_val])
        parts["test"].extend(idx[n_train + n_val:])
    return {k: np.sort(np.array(v, dtype=np.int64)) for k, v in parts.items()}
