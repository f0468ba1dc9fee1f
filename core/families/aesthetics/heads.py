"""Probe heads and losses of the aesthetics family (Sugiura & Yamauchi, the tag-aware
image quality model, section 3).

The paper's model: CLIP image and tag-text embeddings (512-d) -> cross-attention ->
512-d fused vector -> MLP -> quality score, trained on (image, tag) pairs with

    L = -E_{(T, x_i, x_j)} log sigmoid(f(T, x_i) - f(T, x_j))
        + lambda * 1/D sum_i (f(T, x_i) - s_i)^2                      (Eq. 1)

where (x_i, x_j) share the tag T and x_i ranks above x_j: by MOS, and when the two
MOS are within ``tie_margin`` of each other, by the CLIP image-tag similarity
(section 3.2; RankNet: Burges et al., "Learning to rank using gradient descent",
ICML 2005). Here the backbone is frozen and its cached,
L2-normalised embeddings are the inputs:

- :class:`ImageOnlyHead` ("Ours (w/o Text)"): MLP on the image embedding;
- :class:`TagAwareHead`: the image embedding is the query of a multi-head
  cross-attention over the tokens {image, tag text} (the image token is kept among
  the keys so that attention is a real choice between two tokens, not a fixed
  copy of the single tag token), residual + LayerNorm, then the MLP.

Both may carry a 10-bin distribution head (softmax over scores 1..10) trained with
NIMA's EMD loss (Talebi & Milanfar 2018, Eq. 1, r = 2). Scores are produced in MOS
units as ``mean_train + std_train * raw`` so the MSE term starts well scaled.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _ScoreMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float, dist_head: bool):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.score = nn.Linear(hidden, 1)
        self.dist = nn.Linear(hidden, 10) if dist_head else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.body(x)
        return self.score(h).squeeze(-1), (self.dist(h) if self.dist is not None else None)


class _Scaled(nn.Module):
    """Holds the training-set MOS mean/std used to express scores in MOS units."""

    def __init__(self, mos_mean: float, mos_std: float):
        super().__init__()
        self.register_buffer("mos_mean", torch.tensor(float(mos_mean)))
        self.register_buffer("mos_std", torch.tensor(max(float(mos_std), 1e-3)))

    def scale(self, raw: torch.Tensor) -> torch.Tensor:
        return self.mos_mean + self.mos_std * raw


class ImageOnlyHead(_Scaled):
    """``f(x)``: MLP on the image embedding (the tag is ignored)."""

    uses_tag = False

    def __init__(self, dim: int, hidden: int = 256, dropout: float = 0.1, dist_head: bool = False,
                 mos_mean: float = 5.0, mos_std: float = 1.0, **_: object):
        super().__init__(mos_mean, mos_std)
        self.mlp = _ScoreMLP(dim, hidden, dropout, dist_head)

    def forward(self, image: torch.Tensor, tag: torch.Tensor | None = None):
        raw, dist = self.mlp(image)
        return self.scale(raw), dist


class TagAwareHead(_Scaled):
    """``f(T, x)``: cross-attention of the image over {image, tag} tokens, then the MLP."""

    uses_tag = True

    def __init__(self, dim: int, hidden: int = 256, dropout: float = 0.1, dist_head: bool = False,
                 mos_mean: float = 5.0, mos_std: float = 1.0, attn_dim: int = 256,
                 attn_heads: int = 4, **_: object):
        super().__init__(mos_mean, mos_std)
        if attn_dim % attn_heads:
            raise ValueError(f"attn_dim {attn_dim} is not divisible by attn_heads {attn_heads}")
        self.img_in = nn.Linear(dim, attn_dim)
        self.tag_in = nn.Linear(dim, attn_dim)
        self.type_emb = nn.Parameter(torch.zeros(2, attn_dim))  # image / tag token types
        self.attn = nn.MultiheadAttention(attn_dim, attn_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(attn_dim)
        self.mlp = _ScoreMLP(attn_dim, hidden, dropout, dist_head)
        self.last_attention: torch.Tensor | None = None

    def forward(self, image: torch.Tensor, tag: torch.Tensor):
        q = self.img_in(image) + self.type_emb[0]
        kv = torch.stack([q, self.tag_in(tag) + self.type_emb[1]], dim=1)   # [B, 2, A]
        out, weights = self.attn(q[:, None, :], kv, kv, need_weights=True)
        self.last_attention = weights.detach()[:, 0, :]                    # [B, 2]
        fused = self.norm(q + out[:, 0, :])
        raw, dist = self.mlp(fused)
        return self.scale(raw), dist


HEADS = {"image_only": ImageOnlyHead, "tag_aware": TagAwareHead}


def rank_pairs(mos: torch.Tensor, tag: torch.Tensor, sim: torch.Tensor,
               tie_margin: float) -> torch.Tensor:
    """Boolean ``[B, B]``: True where item i ranks above item j under the same tag
    (tag ids > 0). Order: MOS; within ``tie_margin`` of MOS, image-tag similarity."""
    diff = mos[:, None] - mos[None, :]
    same = (tag[:, None] == tag[None, :]) & (tag[:, None] > 0)
    near = diff.abs() <= tie_margin
    above = torch.where(near, sim[:, None] > sim[None, :], diff > 0)
    return same & above


def ranking_loss(pred: torch.Tensor, above: torch.Tensor) -> torch.Tensor:
    """``-mean log sigmoid(f_i - f_j)`` over the pairs (i above j); 0 without pairs."""
    if not bool(above.any()):
        return pred.sum() * 0.0
    delta = pred[:, None] - pred[None, :]
    return F.softplus(-delta[above]).mean()


def emd_loss(logits: torch.Tensor, target: torch.Tensor, r: float = 2.0) -> torch.Tensor:
    """Mean over images of NIMA's EMD between softmax(logits) and ``target`` [B, 10]."""
    cdf_p = torch.cumsum(torch.softmax(logits, dim=-1), dim=-1)
    cdf_t = torch.cumsum(target, dim=-1)
    return ((cdf_p - cdf_t).abs().pow(r).mean(dim=-1) + 1e-12).pow(1.0 / r).mean()


def paper_loss(pred: torch.Tensor, mos: torch.Tensor, tag: torch.Tensor, sim: torch.Tensor,
               tie_margin: float, mse_weight: float, ranking: bool = True) -> torch.Tensor:
    """Eq. (1): ranking term among same-tag pairs + ``mse_weight`` (lambda) * MSE.
    ``ranking=False`` leaves the MSE term only (a plain regression baseline)."""
    mse = F.mse_loss(pred, mos)
    if not ranking:
        return mse
    return ranking_loss(pred, rank_pairs(mos, tag, sim, tie_margin)) + mse_weight * mse
