"""The adaptation model of the domain_adaptation family and its training.

Model on frozen image embeddings x (L2-normalised): h = x + A x (a residual linear
adapter, A initialised at 0), class logits W h + b, and a learned projection
z = normalise(P h) of image features into the caption space. Per step, with a source
batch S and a target batch T (items drawn together):

  L = mean_{i in S} CE(W h_i, y_i)
    + lambda_pseudo * mean_{j in T} c_j CE(W h_j, yhat_j)          (TRUST: loss_t)
    + lambda_contrastive * sum_{j in T} c_j l_j / |T|

with the soft-contrastive term of TRUST (Litrico et al., AAAI 2026; official code
supcontrast.py: soft positives weighted by caption similarity, negatives by
1 - similarity) taken cross-modally, image projection -> captions of the batch:

  S_jk = max(0, cos(u_j, u_k)),  s_jk = cos(z_j, u_k) / tau_c,
  l_j  = - sum_k (S_jk / sum_m S_jm) [ s_jk - log sum_m (1 - S_jm) exp(s_jm) ].

Each image is pulled toward its own caption (S_jj = 1) and toward images whose
captions resemble its caption, and pushed from the others in proportion to their
caption dissimilarity. Deviations from TRUST, for a frozen backbone: the contrastive
anchors are image projections and the candidates captions (TRUST contrasts two
augmented image views under caption-similarity weights); the contrastive term is
certainty-weighted too (TRUST weights only the classification loss), so a caption
that cannot be trusted moves nothing.

The epoch (early stopping) is chosen on the source validation split's top-1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...probe import ProbeConfig, ProbeMemo, train_probe_runs

#: Bump when the head, its losses or the data it trains on change: stored heads miss.
MEMO_VERSION = 2


class AdaptHead(nn.Module):
    """h = x + A x; class logits W h + b; caption-space projection P h (see docstring)."""

    def __init__(self, dim: int, n_classes: int, text_dim: int):
        super().__init__()
        self.adapter = nn.Linear(dim, dim, bias=False)
        nn.init.zeros_(self.adapter.weight)
        self.classifier = nn.Linear(dim, n_classes)
        self.projector = nn.Linear(dim, text_dim, bias=False)
        if text_dim == dim:   # a shared image-text space (CLIP-like): start from the identity
            nn.init.eye_(self.projector.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.adapter(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def soft_contrastive_loss(z: torch.Tensor, u: torch.Tensor, weights: torch.Tensor,
                          members: torch.Tensor, tau: float) -> torch.Tensor:
    """Certainty-weighted cross-modal soft-contrastive loss (module docstring; after
    TRUST's supcontrast.py) of R batches at once: ``z`` [R, B, Dt] image projections,
    ``u`` [R, B, Dt] caption embeddings (both L2-normalised), ``weights`` [R, B]
    certainties, ``members`` [R, B] the items that take part (the batch's target
    items; the others are neither anchors nor candidates). Returns [R]:
    ``sum_j w_j l_j / n`` over the n members of each batch, 0 where n < 2."""
    pair = members[:, :, None] & members[:, None, :]
    with torch.no_grad():
        sim = (u @ u.transpose(1, 2)).clamp(0.0, 1.0) * pair
        pos = sim / sim.sum(2, keepdim=True).clamp_min(1e-12)
        log_neg_w = torch.log((1.0 - sim).clamp_min(1e-6)).masked_fill(~pair, -float("inf"))
        log_neg_w = log_neg_w.masked_fill(~members[:, :, None], 0.0)   # non-anchors: weight 0 below
    logits = z @ u.transpose(1, 2) / tau
    log_den = torch.logsumexp(logits + log_neg_w, dim=2, keepdim=True)
    per_anchor = -(pos * (logits - log_den)).sum(2)
    n = members.sum(1)
    loss = (weights * members * per_anchor).sum(1) / n.clamp_min(1)
    return torch.where(n >= 2, loss, loss * 0.0)


class _Rows(nn.Module):
    """The weights (and biases) of R linear layers, row r = layer r: x [R, B, in] -> [R, B, out]."""

    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        bias = [layer.bias for layer in layers]
        self.bias = nn.Parameter(torch.stack([b.detach() for b in bias])) if bias[0] is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight.transpose(1, 2)
        return y if self.bias is None else y + self.bias[:, None, :]


class StackedAdaptHeads(nn.Module):
    """R :class:`AdaptHead` side by side for :func:`ctxbench.probe.train_probe_stack`:
    the same state-dict keys with a leading run axis, and each run's two adaptation
    weights (non-persistent buffers, so that a row loads into an AdaptHead)."""

    def __init__(self, heads: list[AdaptHead], lambdas: list[tuple[float, float]]):
        super().__init__()
        self.adapter = _Rows([h.adapter for h in heads])
        self.classifier = _Rows([h.classifier for h in heads])
        self.projector = _Rows([h.projector for h in heads])
        weights = torch.tensor(lambdas, dtype=torch.float32).reshape(len(heads), 2)
        self.register_buffer("lambda_pseudo", weights[:, 0].clone(), persistent=False)
        self.register_buffer("lambda_contrastive", weights[:, 1].clone(), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.adapter(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass
class TrainData:
    """What one training run sees. The index space is source train (0..Ns-1) followed
    by the target train items with a usable caption (Ns..Ns+Nt-1), for the adapt run
    and for its source_only control alike."""

    xs: torch.Tensor                 # source train image embeddings [Ns, D]
    ys: torch.Tensor                 # source labels [Ns]
    xv: torch.Tensor                 # source val embeddings
    yv: torch.Tensor
    xt: torch.Tensor | None = None   # target train images with a usable caption [Nt, D]
    yt: torch.Tensor | None = None   # pseudo-labels (None: no pseudo-labels, control run only)
    ct: torch.Tensor | None = None   # certainties
    ut: torch.Tensor | None = None   # caption embeddings (normalised) [Nt, Dt]

    @property
    def n_target(self) -> int:
        return 0 if self.xt is None else len(self.xt)


def train_heads(data: TrainData, n_classes: int, p: dict, seeds: list[int],
                lambdas: list[tuple[float, float]], device: str,
                memo: ProbeMemo | None = None) -> list[tuple[AdaptHead, Any]]:
    """Train one head per run r, under ``seeds[r]`` with adaptation weights
    ``lambdas[r] = (lambda_pseudo, lambda_contrastive)``, all runs in one stack
    (:func:`ctxbench.probe.train_probe_runs`); epoch chosen on source val per run.

    ``source_only`` is the run with both weights at 0: the same model (same
    initialisation under the same seed, the same caption-space projector), the same
    index space of Ns + Nt items, hence the same batches in the same order; the
    target items of a batch then carry no loss. So with both weights at 0 the adapt
    run *is* the source_only run, and their difference measures the adaptation terms,
    not training-run variance.

    ``memo``: a trained head is restored from it when every input of its run matches."""
    if any(lp or lc for lp, lc in lambdas) and (data.yt is None or data.ct is None):
        raise ValueError("train_heads: adaptation weights > 0 need pseudo-labels and certainties")
    text_dim = data.ut.shape[1] if data.ut is not None else 1
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(AdaptHead(data.xs.shape[1], n_classes, text_dim))
    ns, nt = len(data.ys), data.n_target
    batch_loss = stacked_loss(data, p, [lp for lp, _ in lambdas], [lc for _, lc in lambdas], device)
    xv, yv = data.xv.to(device), data.yv.to(device)

    def val_scores(m: StackedAdaptHeads) -> torch.Tensor:
        logits = m(xv.expand(len(m.lambda_pseudo), -1, -1))
        return (logits.argmax(2) == yv).float().mean(1)

    def stack(runs: list[int]) -> StackedAdaptHeads:
        return StackedAdaptHeads([models[r] for r in runs], [lambdas[r] for r in runs])

    inputs = ("train_heads", data.xs, data.ys, data.xv, data.yv, data.xt, data.yt, data.ct, data.ut,
              int(n_classes), float(p["contrastive_temperature"]))
    keys = [(inputs, float(lp), float(lc)) for lp, lc in lambdas]
    results = train_probe_runs(models, ns + nt, stack, batch_loss, val_scores,
                               [probe_config(p, seed) for seed in seeds], device, memo=memo, keys=keys)
    return [(res.model.cpu(), res) for res in results]


def stacked_loss(data: TrainData, p: dict, lambda_pseudo: list[float], lambda_contrastive: list[float],
                 device: str = "cpu") -> Callable[[StackedAdaptHeads, torch.Tensor], torch.Tensor]:
    """``loss(stack, idx)`` -> [R]: the module docstring's L for each run's batch
    ``idx[r]`` (indices into source train followed by the captioned target items),
    with masks where a one-run loss would select items: the source CE is the mean
    over the batch's source items (0 without any), the pseudo-label term the mean
    over its target items, the contrastive term over its target items alone.
    ``lambda_*`` say which terms any run uses (the per-run weights are the stack's).
    Every row computes every term its stack uses (masked), so a parameter a row's
    batch leaves unused gets a zero gradient, not none; AdamW then still applies its
    momentum and weight decay to it (:func:`ctxbench.probe.train_probe_stack`).
    E.g. a source_only row stacked with adapt rows has its (unused) projector decay;
    its predictions do not read the projector."""
    ns, nt = len(data.ys), data.n_target
    text_dim = data.ut.shape[1] if data.ut is not None else 1
    tau_c = float(p["contrastive_temperature"])
    use_pseudo, use_contrastive = any(lambda_pseudo), any(lambda_contrastive) and data.ut is not None
    # one index space (TrainData): source train items, then the captioned target items;
    # target items without pseudo-labels (a source_only-only stack) get label 0, weight 0
    x = (torch.cat([data.xs, data.xt]) if nt else data.xs).to(device)
    y = torch.cat([data.ys, data.yt if data.yt is not None else torch.zeros(nt, dtype=torch.long)]).to(device)
    c = torch.cat([torch.zeros(ns), data.ct.float() if data.ct is not None else torch.zeros(nt)]).to(device)
    u = torch.cat([torch.zeros(ns, text_dim), data.ut.float()]).to(device) if use_contrastive else None

    def loss(m: StackedAdaptHeads, idx: torch.Tensor) -> torch.Tensor:
        src = idx < ns
        h = m.features(x[idx])
        ce = F.cross_entropy(m.classifier(h).flatten(0, 1), y[idx].flatten(),
                             reduction="none").view(idx.shape)
        total = (ce * src).sum(1) / src.sum(1).clamp_min(1)
        tgt = ~src
        w = c[idx] * tgt
        if use_pseudo:
            total = total + m.lambda_pseudo * (w * ce).sum(1) / tgt.sum(1).clamp_min(1)
        if use_contrastive:
            z = F.normalize(m.projector(h), dim=-1)
            total = total + m.lambda_contrastive * soft_contrastive_loss(z, u[idx], w, tgt, tau_c)
        return total

    return loss


def probe_config(p: dict, seed: int) -> ProbeConfig:
    """Probe settings from the protocol (a small training set still gets several steps
    per epoch: :func:`ctxbench.probe.effective_batch_size`)."""
    return ProbeConfig(epochs=int(p["epochs"]), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]),
                       batch_size=int(p["batch_size"]), patience=int(p["patience"]), seed=seed)


def predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).argmax(1).numpy()


def holdout_val(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class seeded holdout: (train idx, val idx); every class with >= 2 items gives
    max(1, round(fraction * n)) items to val."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]
    lab = labels[order]
    starts = np.searchsorted(lab, lab, side="left")
    rank = np.arange(len(lab)) - starts
    counts = np.bincount(lab, minlength=int(lab.max()) + 1 if len(lab) else 0)
    n_val = np.where(counts >= 2, np.maximum(1, np.round(fraction * counts)), 0).astype(int)
    is_val = rank < n_val[lab]
    return np.sort(order[~is_val]), np.sort(order[is_val])
