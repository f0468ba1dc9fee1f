"""Training small heads on frozen, cached embeddings (shared by the metadata_sentiment,
domain_adaptation and aesthetics families).

Rules every family gets from here:
- train / validation / test are separate; the epoch (and any hyper-parameter
  grid) is selected on the validation score only; the test split is never seen
  during training or selection;
- deterministic given ``seed`` (torch generator for init and shuffling);
- full tensors in memory, mini-batches by index: seconds on a CPU for 10k items;
- small heads train on one CPU thread (see :func:`small_model_threads`);
- optionally memoised (:class:`ProbeMemo`): a rerun on the same inputs restores the
  trained state instead of training again, with identical results.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

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


#: Bump when the training loop changes what it produces: every stored probe misses.
PROBE_MEMO_VERSION = 2


@dataclass(frozen=True)
class ProbeMemo:
    """Trained probes remembered across runs: an :class:`~ctxbench.cache.ArtifactMemo`
    (``get(key)`` / ``put(key, arrays)``) and a scope every key includes (the family,
    its memo version, the backend's cache identity). Build one with :func:`probe_memo`."""

    store: Any
    scope: tuple = ()

    def key(self, *parts: Any) -> str:
        from .cache import digest
        return digest("ctxbench-probe", PROBE_MEMO_VERSION, self.scope, parts)


def probe_memo(req: Any, family: str, version: int) -> ProbeMemo | None:
    """The memo of an evaluation request (None without one: ``--no-cache``, no cache
    dir). ``version``: the family's training-code version (bump it when the family's
    losses or heads change)."""
    store = getattr(req, "memo", None)
    if store is None:
        return None
    return ProbeMemo(store, (family, int(version), str(getattr(req, "cache_identity", "") or "")))


def _module_identity(model: nn.Module) -> list:
    """Class and plain attributes of every submodule (constructor arguments such as
    ``num_heads`` or ``p`` that the state dict does not show)."""
    def plain(v) -> bool:
        if isinstance(v, tuple):
            return all(plain(x) for x in v)
        return isinstance(v, (bool, int, float, str, type(None)))
    out = []
    for name, m in model.named_modules():
        attrs = {k: v for k, v in vars(m).items()
                 if not k.startswith("_") and k != "training" and plain(v)}
        out.append([name, f"{type(m).__module__}.{type(m).__qualname__}", attrs])
    return out


def _state_arrays(model: nn.Module) -> dict[str, np.ndarray] | None:
    """The state dict as numpy arrays (None when a tensor has no numpy dtype)."""
    out = {}
    for k, v in model.state_dict().items():
        try:
            out[k] = v.detach().cpu().numpy().copy()
        except (TypeError, RuntimeError):
            return None
    return out


def _rng_states(device: str) -> dict[str, np.ndarray]:
    states = {"rng/cpu": torch.get_rng_state().numpy().copy()}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        states["rng/cuda"] = torch.cuda.get_rng_state(torch.device(device)).numpy().copy()
    return states


def _memo_key(memo: ProbeMemo, key: Any, model: nn.Module, n_train: int, config: ProbeConfig,
              device: str) -> str | None:
    initial = _state_arrays(model)
    if initial is None:
        return None
    return memo.key(key, _module_identity(model), sorted(initial.items()), int(n_train),
                    asdict(config), str(device), torch.__version__)


def _restore(model: nn.Module, entry: dict[str, np.ndarray], device: str) -> ProbeResult | None:
    try:
        state = {k[len("state/"):]: torch.from_numpy(v) for k, v in entry.items()
                 if k.startswith("state/")}
        model.load_state_dict(state, strict=True)
        best_epoch = int(entry["best_epoch"])
        best_val = float(entry["best_val"])
        history = [float(x) for x in entry["history"].tolist()]
        rng = {k: entry[k] for k in ("rng/cpu", "rng/cuda") if k in entry}
    except (KeyError, RuntimeError, ValueError, TypeError):
        return None   # an entry of another layout: train again
    model.to(device)
    if "rng/cpu" in rng:   # leave the global generator where training would have
        torch.set_rng_state(torch.from_numpy(rng["rng/cpu"]))
    if "rng/cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.from_numpy(rng["rng/cuda"]), torch.device(device))
    model.eval()
    return ProbeResult(model, best_epoch, best_val, history)


def train_probe(model: nn.Module, n_train: int,
                batch_loss: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                val_score: Callable[[nn.Module], float],
                config: ProbeConfig = ProbeConfig(), device: str = "cpu",
                memo: ProbeMemo | None = None, key: Any = None) -> ProbeResult:
    """Generic loop: AdamW on ``batch_loss(model, idx)`` over shuffled index batches of
    the training set; after each epoch ``val_score(model)`` (higher is better) picks
    the best state (early stopping with ``patience``). Returns the best model in
    eval mode.

    With a ``memo``, ``key`` must name everything ``batch_loss`` and ``val_score``
    read (their tensors, loss weights, ...; :func:`ctxbench.cache.digest` parts): the
    stored entry is keyed by it together with the memo's scope, the model's classes,
    plain attributes and initial state (hence its constructor arguments and seed),
    ``n_train``, ``config``, ``device`` and the torch version. A hit restores the
    trained state, best epoch, best validation score, history and the global RNG
    state training left, so what follows is identical to a trained run."""
    if memo is not None and key is None:
        raise ValueError("train_probe: a memo needs the key of the training inputs")
    full_key = _memo_key(memo, key, model, n_train, config, device) if memo is not None else None
    if full_key is not None:
        entry = memo.store.get(full_key)
        if entry is not None:
            restored = _restore(model, entry, device)
            if restored is not None:
                return restored
    n_params = sum(p.numel() for p in model.parameters())
    with small_model_threads(device, n_params):
        result = _train_loop(model, n_train, batch_loss, val_score, config, device)
    if full_key is not None:
        state = _state_arrays(result.model)
        if state is not None:
            memo.store.put(full_key, {**{f"state/{k}": v for k, v in state.items()},
                                      "best_epoch": np.int64(result.best_epoch),
                                      "best_val": np.float64(result.best_val),
                                      "history": np.asarray(result.history, dtype=np.float64),
                                      **_rng_states(device)})
    return result


#: Small training sets must still get a real fit: every epoch has at least
#: MIN_STEPS_PER_EPOCH optimiser steps (the batch is capped to make room, never below
#: MIN_BATCH items) and early stopping cannot end a fit before MIN_STEPS steps. Without
#: this a 240-item probe with a 256-item batch took one step per epoch and stopped
#: after 11 steps (patience 10), its "best" state the one after the first step.
MIN_STEPS_PER_EPOCH, MIN_STEPS, MIN_BATCH = 4, 200, 8


def effective_batch_size(n_train: int, batch_size: int) -> int:
    """The batch :func:`train_probe` uses: ``batch_size`` capped so that an epoch has
    at least :data:`MIN_STEPS_PER_EPOCH` steps (and at least :data:`MIN_BATCH` items)."""
    return max(1, min(int(batch_size), max(MIN_BATCH, math.ceil(n_train / MIN_STEPS_PER_EPOCH))))


def _train_loop(model, n_train, batch_loss, val_score, config, device) -> ProbeResult:
    """AdamW over shuffled batches; after each epoch the validation score. The best
    state is kept (on a tie the later, more trained one); training stops after
    ``patience`` epochs without a strict improvement, but not before
    :data:`MIN_STEPS` optimiser steps (nor after ``epochs`` epochs)."""
    gen = torch.Generator().manual_seed(config.seed)
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batch = effective_batch_size(n_train, config.batch_size)
    min_epochs = math.ceil(MIN_STEPS / max(1, math.ceil(n_train / batch)))
    best_state, best_val, best_epoch, since = None, -float("inf"), -1, 0
    history: list[float] = []
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(n_train, generator=gen)
        for start in range(0, n_train, batch):
            idx = order[start:start + batch].to(device)
            loss = batch_loss(model, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            score = float(val_score(model))
        history.append(score)
        if score >= best_val - 1e-9:
            if score > best_val + 1e-9:
                since = -1
            best_val, best_epoch = max(best_val, score), epoch
            best_state = copy.deepcopy(model.state_dict())
        since += 1
        if since >= config.patience and epoch + 1 >= min_epochs:
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
