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
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...probe import ProbeConfig, ProbeMemo, train_probe

#: Bump when the head, its losses or the data it trains on change: stored heads miss.
MEMO_VERSION = 1


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
                          tau: float) -> torch.Tensor:
    """Certainty-weighted cross-modal soft-contrastive loss (module docstring; after
    TRUST's supcontrast.py). ``z`` [n, Dt] image projections, ``u`` [n, Dt] caption
    embeddings (both L2-normalised), ``weights`` [n] certainties."""
    n = z.shape[0]
    if n < 2:
        return z.sum() * 0.0
    with torch.no_grad():
        sim = (u @ u.T).clamp(0.0, 1.0)
        pos = sim / sim.sum(1, keepdim=True).clamp_min(1e-12)
        log_neg_w = torch.log((1.0 - sim).clamp_min(1e-6))
    logits = z @ u.T / tau
    log_den = torch.logsumexp(logits + log_neg_w, dim=1, keepdim=True)
    per_anchor = -(pos * (logits - log_den)).sum(1)
    return (weights * per_anchor).sum() / n


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


def train_head(data: TrainData, n_classes: int, p: dict, seed: int, device: str, *,
               lambda_pseudo: float, lambda_contrastive: float,
               memo: ProbeMemo | None = None) -> tuple[AdaptHead, Any]:
    """Train the head on ``data``; epoch chosen on source val.

    ``source_only`` is this very run with ``lambda_pseudo = lambda_contrastive = 0``:
    the same model (same initialisation, same caption-space projector), the same
    index space of Ns + Nt items, hence the same batches in the same order for the
    same seed; the target items of a batch then carry no loss. So with both weights
    at 0 the adapt run *is* the source_only run, and their difference measures the
    adaptation terms, not training-run variance.

    ``memo``: a trained head is restored from it when every input below matches."""
    if (lambda_pseudo or lambda_contrastive) and (data.yt is None or data.ct is None):
        raise ValueError("train_head: adaptation weights > 0 need pseudo-labels and certainties")
    torch.manual_seed(seed)
    text_dim = data.ut.shape[1] if data.ut is not None else 1
    model = AdaptHead(data.xs.shape[1], n_classes, text_dim)
    ns, nt = len(data.ys), data.n_target
    lam_pl, lam_con = float(lambda_pseudo), float(lambda_contrastive)
    tau_c = float(p["contrastive_temperature"])
    dev = lambda t: None if t is None else t.to(device)  # noqa: E731
    xs, ys, xv, yv = dev(data.xs), dev(data.ys), dev(data.xv), dev(data.yv)
    xt, yt, ct, ut = dev(data.xt), dev(data.yt), dev(data.ct), dev(data.ut)

    def batch_loss(m: AdaptHead, idx: torch.Tensor) -> torch.Tensor:
        src = idx[idx < ns]
        tgt = idx[idx >= ns] - ns
        # a batch without source items: a zero loss still tied to the model
        loss = F.cross_entropy(m(xs[src]), ys[src]) if len(src) else m.classifier.bias.sum() * 0.0
        if len(tgt) and (lam_pl or lam_con):
            h = m.features(xt[tgt])
            w = ct[tgt]
            if lam_pl:
                ce = F.cross_entropy(m.classifier(h), yt[tgt], reduction="none")
                loss = loss + lam_pl * (w * ce).mean()
            if lam_con:
                z = F.normalize(m.projector(h), dim=-1)
                loss = loss + lam_con * soft_contrastive_loss(z, ut[tgt], w, tau_c)
        return loss

    def val_score(m: AdaptHead) -> float:
        return float((m(xv).argmax(1) == yv).float().mean())

    key = ("train_head", data.xs, data.ys, data.xv, data.yv, data.xt, data.yt, data.ct, data.ut,
           int(n_classes), lam_pl, lam_con, tau_c)
    result = train_probe(model, ns + nt, batch_loss, val_score, probe_config(p, seed), device,
                         memo=memo, key=key)
    return result.model.cpu(), result


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
