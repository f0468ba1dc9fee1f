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
    full_key, restored = _recall(memo, key, model, n_train, config, device)
    if restored is not None:
        return restored
    n_params = sum(p.numel() for p in model.parameters())
    with small_model_threads(device, n_params):
        result = _train_loop(model, n_train, batch_loss, val_score, config, device)
    if full_key is not None:
        _remember(memo, full_key, result, device)
    return result


def _recall(memo: ProbeMemo | None, key: Any, model: nn.Module, n_train: int, config: ProbeConfig,
            device: str) -> tuple[str | None, ProbeResult | None]:
    """(the memo key of this fit, its stored result restored into ``model`` or None)."""
    full_key = _memo_key(memo, key, model, n_train, config, device) if memo is not None else None
    entry = memo.store.get(full_key) if full_key is not None else None
    return full_key, (_restore(model, entry, device) if entry is not None else None)


def _remember(memo: ProbeMemo, full_key: str, result: ProbeResult, device: str) -> None:
    """Store a trained probe: its state, selection, history and the RNG state left."""
    state = _state_arrays(result.model)
    if state is not None:
        memo.store.put(full_key, {**{f"state/{k}": v for k, v in state.items()},
                                  "best_epoch": np.int64(result.best_epoch),
                                  "best_val": np.float64(result.best_val),
                                  "history": np.asarray(result.history, dtype=np.float64),
                                  **_rng_states(device)})


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


class _BestState:
    """Early-stopping bookkeeping of one run: :meth:`update` after each epoch says
    whether this epoch's state is the one to keep (the best validation score; on a
    tie the later, more trained state); :meth:`done` whether to stop (``patience``
    epochs without a strict improvement, but not before ``min_epochs``)."""

    def __init__(self, patience: int, min_epochs: int):
        self.patience, self.min_epochs = patience, min_epochs
        self.best_val, self.best_epoch, self.since = -float("inf"), -1, 0
        self.history: list[float] = []

    def update(self, epoch: int, score: float) -> bool:
        self.history.append(score)
        keep = score >= self.best_val - 1e-9
        if keep:
            if score > self.best_val + 1e-9:
                self.since = -1
            self.best_val, self.best_epoch = max(self.best_val, score), epoch
        self.since += 1
        return keep

    def done(self, epoch: int) -> bool:
        return self.since >= self.patience and epoch + 1 >= self.min_epochs


def _schedule(n_train: int, config: ProbeConfig) -> tuple[int, int]:
    """(batch size, fewest epochs) of a fit (:data:`MIN_STEPS`)."""
    batch = effective_batch_size(n_train, config.batch_size)
    return batch, math.ceil(MIN_STEPS / max(1, math.ceil(n_train / batch)))


def _train_loop(model, n_train, batch_loss, val_score, config, device) -> ProbeResult:
    """AdamW over shuffled batches; after each epoch the validation score; the state
    :class:`_BestState` picks is returned."""
    gen = torch.Generator().manual_seed(config.seed)
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batch, min_epochs = _schedule(n_train, config)
    best, best_state = _BestState(config.patience, min_epochs), None
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
            if best.update(epoch, float(val_score(model))):
                best_state = copy.deepcopy(model.state_dict())
        if best.done(epoch):
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return ProbeResult(model, best.best_epoch, best.best_val, best.history)


@dataclass
class StackedRun:
    """One run of :func:`train_probe_stack`: its best state (the stack's parameters
    at its row), best epoch, best validation score and validation history."""

    state: dict[str, torch.Tensor]
    best_epoch: int
    best_val: float
    history: list[float]


def train_probe_stack(stack: nn.Module, n_train: int,
                      batch_loss: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                      val_scores: Callable[[nn.Module], torch.Tensor],
                      configs: Sequence[ProbeConfig], device: str = "cpu") -> list[StackedRun]:
    """Train R independent probes in one loop, R = ``len(configs)``: every parameter of
    ``stack`` has a leading run axis of length R (row r = run r), ``batch_loss(stack,
    idx)`` takes index batches ``[R, B]`` and returns the R losses, ``val_scores``
    the R validation scores.

    Run r gets what :func:`train_probe` gives it with ``configs[r]``: its own
    shuffling generator (``configs[r].seed``), its own early stopping, and AdamW,
    which is element-wise, so the summed loss updates each row as that run alone
    would. One difference: a parameter that a one-run loss leaves out of a batch's
    graph (its ``grad`` stays None) is skipped by that step of AdamW, while in a
    stack it gets a zero gradient (some other row uses it), so AdamW's momentum
    and weight decay still move it; write a one-run loss so that it always touches
    its parameters to compare the two exactly. A run that has stopped keeps stepping
    with the others until all stop; its kept state is the one of its best epoch (or
    its last, if no epoch's score could be compared, e.g. NaN). R small fits thus
    cost one fit's Python and dispatch overhead, which is what small fits spend their
    time on. The configs must agree on everything but the seed."""
    if not configs:
        raise ValueError("train_probe_stack: no runs")
    shared = {**asdict(configs[0]), "seed": None}
    if any({**asdict(c), "seed": None} != shared for c in configs):
        raise ValueError("train_probe_stack: the runs' configs may differ in the seed only")
    config, runs = configs[0], len(configs)
    gens = [torch.Generator().manual_seed(c.seed) for c in configs]
    stack = stack.to(device)
    opt = torch.optim.AdamW(stack.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batch, min_epochs = _schedule(n_train, config)
    best = [_BestState(config.patience, min_epochs) for _ in range(runs)]
    states: list[dict[str, torch.Tensor]] = [{} for _ in range(runs)]
    active = list(range(runs))
    n_params = sum(p.numel() for p in stack.parameters())
    with small_model_threads(device, n_params):
        for epoch in range(config.epochs):
            stack.train()
            order = torch.stack([torch.randperm(n_train, generator=g) for g in gens])
            for start in range(0, n_train, batch):
                loss = batch_loss(stack, order[:, start:start + batch].to(device)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            stack.eval()
            with torch.no_grad():
                scores = val_scores(stack).tolist()
                for r in active:
                    if best[r].update(epoch, float(scores[r])):
                        states[r] = {k: v[r].detach().clone() for k, v in stack.state_dict().items()}
            active = [r for r in active if not best[r].done(epoch)]
            if not active:
                break
    final = stack.state_dict()
    return [StackedRun(states[r] or {k: v[r].detach().clone() for k, v in final.items()},
                       b.best_epoch, b.best_val, b.history) for r, b in enumerate(best)]


def train_probe_runs(models: Sequence[nn.Module], n_train: int,
                     stack: Callable[[list[int]], nn.Module],
                     batch_loss: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                     val_scores: Callable[[nn.Module], torch.Tensor],
                     configs: Sequence[ProbeConfig], device: str = "cpu",
                     memo: ProbeMemo | None = None,
                     keys: Sequence[Any] | None = None) -> list[ProbeResult]:
    """R runs of one probe, trained together by :func:`train_probe_stack` and
    memoised one by one as :func:`train_probe` memoises one.

    ``models[r]``: run r's model as the run starts (initialised under its seed; its
    initial state is part of its memo key). ``stack(runs)``: the stacked module of
    those runs (state-dict keys of a single model, each with a leading run axis),
    carrying whatever per-run constants ``batch_loss`` reads. ``keys[r]``: as
    train_probe's ``key``, everything run r's loss and validation read (its per-run
    constants included). Runs found in the memo are restored; the others are trained
    in one stack. Returns one result per run, its model being ``models[r]`` with the
    trained state."""
    if memo is not None and (keys is None or len(keys) != len(models)):
        raise ValueError("train_probe_runs: a memo needs one key of the training inputs per run")
    rng_before = torch.get_rng_state()
    recalled = [_recall(memo, k, m, n_train, c, device)
                for k, m, c in zip(keys or [None] * len(models), models, configs)]
    keys = [full_key for full_key, _ in recalled]
    results: list[ProbeResult | None] = [restored for _, restored in recalled]
    todo = [r for r, res in enumerate(results) if res is None]
    if todo:   # train from the caller's RNG state, not from a restored run's
        torch.set_rng_state(rng_before)
        trained = train_probe_stack(stack(todo), n_train, batch_loss, val_scores,
                                    [configs[r] for r in todo], device)
        for r, run in zip(todo, trained):
            model = models[r].to(device)
            model.load_state_dict(run.state)
            model.eval()
            results[r] = ProbeResult(model, run.best_epoch, run.best_val, run.history)
            if keys[r] is not None:
                _remember(memo, keys[r], results[r], device)
    return [res for res in results if res is not None]


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
