"""The probe heads of the metadata_sentiment family: a linear probe on the image
embedding, and the relevance-gated metadata fusion head.

:class:`RelevanceFusionHead` follows SentiFormer (Feng et al., "SentiFormer: Metadata
Enhanced Transformer for Image Sentiment Analysis", 2025, arXiv:2502.15322): image and
per-field text embeddings are projected per source (as SentiFormer's ``proj_v0 /
proj_a0 / proj_l0``), metadata fields are weighted by an adaptive relevance, and image
and metadata are fused by attention before the classifier.

Where this differs from the official code (models/sentiformer/model/met.py,
met_layer.py): SentiFormer's adaptive relevance learning follows ALMT's hyper-modality
learning (Zhang et al., "Learning Language-guided Adaptive Hyper-modality
Representation for Multimodal Sentiment Analysis", EMNLP 2023: the caption's tokens
attend to the prompt and image tokens through several layers, with 8 learned tokens
per modality) and has no scalar gate per field. A frozen-backend probe needs
something small, trained in seconds, whose field weights can be read off; the
softmax gate below is that (the same learned, image-conditioned down-weighting of
unreliable fields).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LinearHead(nn.Module):
    """Multinomial logistic regression on one embedding."""

    def __init__(self, d_in: int, n_classes: int):
        super().__init__()
        self.fc = nn.Linear(d_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class RelevanceFusionHead(nn.Module):
    """Per-source projection -> relevance gates -> attention fusion -> classifier.

    Inputs ``x`` [B, S, D] (source 0 = image, 1.. = metadata fields) and ``mask``
    [B, S] (True = present; the image is always present). ``forward`` returns
    (logits [B, K], gates [B, S-1]): one gate per metadata field, summing to 1 over
    the fields present for the item (all 0 when none is).

    1. h_s = LayerNorm(W_s x_s + c_s): one projection per source (SentiFormer's
       proj_v0 / proj_a0 / proj_l0 to a common width);
    2. relevance: g_f = softmax over present fields of b_f + <W_q h_image, W_k h_f> /
       sqrt(d), a learned per-field prior plus the field's relevance to this image;
    3. metadata token m = sum_f g_f h_f: the only path from a field to the classifier
       goes through its gate, so a noisy field is down-weighted by lowering g_f;
    4. fusion: one pre-norm multi-head self-attention + feed-forward block over the
       two tokens (image, m) with type embeddings, m masked when no field is present;
    5. a linear classifier on the fused image token.
    """

    def __init__(self, d_in: int, n_sources: int, n_classes: int, dim: int = 128, heads: int = 4,
                 dropout: float = 0.1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"protocol.fusion_dim ({dim}) must be divisible by fusion_heads ({heads})")
        if n_sources < 2:
            raise ValueError("the fusion head needs the image and at least one metadata field")
        self.dim = dim
        bound = 1.0 / math.sqrt(d_in)
        self.proj_w = nn.Parameter(torch.empty(n_sources, d_in, dim).uniform_(-bound, bound))
        self.proj_b = nn.Parameter(torch.zeros(n_sources, dim))
        self.norm_in = nn.LayerNorm(dim)
        self.rel_bias = nn.Parameter(torch.zeros(n_sources - 1))   # per-field prior relevance
        self.rel_q = nn.Linear(dim, dim, bias=False)
        self.rel_k = nn.Linear(dim, dim, bias=False)
        nn.init.zeros_(self.rel_q.weight)    # gates start at the learned prior (uniform)
        self.type_emb = nn.Parameter(torch.zeros(2, dim))
        self.norm_att = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(2 * dim, dim))
        self.norm_out = nn.LayerNorm(dim)
        self.cls = nn.Linear(dim, n_classes)

    def relevance(self, h: torch.Tensor, field_mask: torch.Tensor) -> torch.Tensor:
        """[B, F] gates (softmax over present fields; rows without fields are 0)."""
        score = torch.einsum("bd,bfd->bf", self.rel_q(h[:, 0]), self.rel_k(h[:, 1:])) / math.sqrt(self.dim)
        logits = (self.rel_bias + score).masked_fill(~field_mask, float("-inf"))
        return torch.softmax(logits, dim=-1).nan_to_num(0.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm_in(torch.einsum("bsi,sio->bso", x, self.proj_w) + self.proj_b)
        field_mask = mask[:, 1:]
        gates = self.relevance(h, field_mask)
        meta = torch.einsum("bf,bfd->bd", gates, h[:, 1:])
        tokens = torch.stack([h[:, 0], meta], dim=1) + self.type_emb
        pad = torch.stack([torch.zeros_like(field_mask[:, 0]), ~field_mask.any(1)], dim=1)
        a = self.norm_att(tokens)
        fused, _ = self.attn(a, a, a, key_padding_mask=pad, need_weights=False)
        z = tokens[:, 0] + fused[:, 0]
        z = z + self.ff(self.norm_ff(z))
        return self.cls(self.norm_out(z)), gates

