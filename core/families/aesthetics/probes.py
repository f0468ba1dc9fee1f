"""Fitting and applying the aesthetics probes on cached embeddings.

Both trained probes (:mod:`ctxbench.families.aesthetics.heads`) learn from (image,
tag) pairs, the training unit of Sugiura & Yamauchi ("Proposal of an image quality
assessment model using text tags", the tag-aware aesthetics paper), with their loss
(Eq. 1): a RankNet term over pairs of images sharing a tag plus ``mse_weight``
(lambda) times the MSE; ``loss: mse`` keeps the MSE only. With
``distribution_head: true`` a 10-bin vote distribution is also learned with NIMA's
EMD loss (Talebi & Milanfar, "NIMA: Neural Image Assessment", IEEE TIP 2018).
Training uses :func:`ctxbench.probe.train_probe`; the epoch and the ``lr`` /
``weight_decay`` / ``hidden`` grid are chosen on the validation split only
(``select_metric``).

An image's score is the mean of its (image, tag) pair scores (the paper scores
pairs; averaging puts both probes on the same test images).

``zero_shot`` (a reference, not in the paper): ``cos(x, "a beautiful photo") -
cos(x, "an ugly photo")``; it is not on the MOS scale.
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn.functional import normalize

from ...cache import digest
from ...probe import ProbeConfig, ProbeMemo, select_on_validation, train_probe
from . import metrics as Q
from .data import AestheticsDataset
from .features import Features, image_tag_pairs
from .heads import HEADS, emd_loss, paper_loss
from .protocol import as_list


#: Bump when the heads, their losses or the training pairs change: stored probes miss.
MEMO_VERSION = 1

#: The memo :func:`fit_probe` uses when it is given none: set by the family's evaluator
#: for one evaluation (:func:`using_memo`), so quality and sweep code need not pass it.
_MEMO: ContextVar[ProbeMemo | None] = ContextVar("aesthetics_probe_memo", default=None)


@contextmanager
def using_memo(memo: ProbeMemo | None):
    token = _MEMO.set(memo)
    try:
        yield
    finally:
        _MEMO.reset(token)


@dataclass
class Fitted:
    kind: str
    model: torch.nn.Module
    info: dict[str, Any]


def pair_tensors(ds: AestheticsDataset, feats: Features, idx: np.ndarray,
                 device: str) -> dict[str, Any]:
    """Training tensors of the (image, tag) pairs of the images ``idx``."""
    img_idx, tag_id = image_tag_pairs(ds.tags, idx)
    img = feats.image[img_idx]
    tag = feats.tag[feats.tag_row[tag_id]]
    return {"img": img.to(device), "tag": tag.to(device),
            "tag_id": torch.as_tensor(tag_id, device=device),
            "img_idx": img_idx,
            "mos": torch.as_tensor(ds.mos[img_idx], dtype=torch.float32, device=device),
            "dist": torch.as_tensor(ds.distribution[img_idx], dtype=torch.float32, device=device),
            "sim": (img * tag).sum(-1).to(device)}


def predict(model: torch.nn.Module, ds: AestheticsDataset, feats: Features, idx: np.ndarray,
            device: str = "cpu", chunk: int = 8192) -> dict[str, Any]:
    """Scores of the images ``idx`` (mean over their pairs), pair scores and, with a
    distribution head, the mean predicted distribution per image."""
    img_idx, tag_id = image_tag_pairs(ds.tags, idx)
    scores, dists, attn = [], [], []
    model.eval()
    with torch.no_grad():
        for s in range(0, len(img_idx), chunk):
            sl = slice(s, s + chunk)
            out, logits = model(feats.image[img_idx[sl]].to(device),
                                feats.tag[feats.tag_row[tag_id[sl]]].to(device))
            scores.append(out.float().cpu())
            if logits is not None:
                dists.append(torch.softmax(logits, -1).float().cpu())
            if getattr(model, "last_attention", None) is not None:
                attn.append(model.last_attention[:, 1].float().cpu())
    pair_scores = torch.cat(scores).numpy().astype(np.float64)
    if len(idx) > 1 and (np.diff(idx) <= 0).any():
        raise ValueError("predict needs sorted, distinct image indices")
    pos = np.searchsorted(idx, img_idx)
    counts = np.bincount(pos, minlength=len(idx))
    image_scores = np.bincount(pos, weights=pair_scores, minlength=len(idx)) / counts
    out = {"image": image_scores, "pair": pair_scores, "pair_image": img_idx, "pair_tag": tag_id,
           "dist": None, "tag_attention": float(torch.cat(attn).mean()) if attn else None}
    if dists:
        d = torch.cat(dists).numpy().astype(np.float64)
        summed = np.zeros((len(idx), d.shape[1]))
        np.add.at(summed, pos, d)
        out["dist"] = summed / counts[:, None]
    return out


def validation_score(pred: np.ndarray, mos: np.ndarray, metric: str) -> float:
    """Higher is better: SRCC, LCC or minus the mean absolute error (nan -> -1)."""
    if metric == "neg_mae":
        return -Q.abs_error(pred, mos)[0]
    value = Q.srcc(pred, mos) if metric == "srcc" else Q.lcc(pred, mos)
    return -1.0 if not np.isfinite(value) else float(value)


def _loss_text(protocol: dict[str, Any]) -> str:
    ranking = protocol["loss"] == "paper"
    return (("ranking among same-tag pairs + lambda*MSE (Eq. 1), lambda="
             f"{protocol['mse_weight']}, tie_margin={protocol['tie_margin']}"
             if ranking else "MSE only")
            + (f" + {protocol['emd_weight']}*EMD(r={protocol['emd_r']}) distribution head"
               if protocol["distribution_head"] else ""))


def fit_probe(kind: str, ds: AestheticsDataset, feats: Features, splits: dict[str, np.ndarray],
              protocol: dict[str, Any], seed: int, device: str = "cpu",
              memo: ProbeMemo | None = None) -> Fitted:
    """Train one probe on the train pairs; epoch and grid chosen on validation only.

    ``memo`` (default: the one of :func:`using_memo`): trained probes are restored
    from it when the pairs, features, protocol and grid point match."""
    memo = memo if memo is not None else _MEMO.get()
    train = pair_tensors(ds, feats, splits["train"], device)
    val_idx, val_mos = splits["val"], ds.mos[splits["val"]]
    mos_train = ds.mos[splits["train"]]
    dist_head = bool(protocol["distribution_head"])
    ranking = protocol["loss"] == "paper"

    def batch_loss(model, b):
        b = b.to(train["img"].device) if isinstance(b, torch.Tensor) else b
        pred, logits = model(train["img"][b], train["tag"][b])
        loss = paper_loss(pred, train["mos"][b], train["tag_id"][b], train["sim"][b],
                          float(protocol["tie_margin"]), float(protocol["mse_weight"]), ranking)
        if dist_head:
            loss = loss + float(protocol["emd_weight"]) * emd_loss(logits, train["dist"][b],
                                                                  float(protocol["emd_r"]))
        return loss

    def val_score(model):
        return validation_score(predict(model, ds, feats, val_idx, device)["image"], val_mos,
                                protocol["select_metric"])

    inputs_key = None
    if memo is not None:   # everything batch_loss, val_score and the head read
        val_pairs = image_tag_pairs(ds.tags, val_idx)
        inputs_key = ("fit_probe", kind, digest(
            {k: v for k, v in train.items()}, val_pairs, val_idx, val_mos, mos_train,
            feats.image, feats.tag, feats.tag_row, protocol, int(seed)))
    grid = [dict(zip(("lr", "weight_decay", "hidden"), combo)) for combo in itertools.product(
        as_list(protocol["lr"]), as_list(protocol["weight_decay"]), as_list(protocol["hidden"]))]

    def fit(params):
        torch.manual_seed(seed)
        model = HEADS[kind](feats.image.shape[1], hidden=int(params["hidden"]),
                            dropout=float(protocol["dropout"]), dist_head=dist_head,
                            mos_mean=float(mos_train.mean()), mos_std=float(mos_train.std()),
                            attn_dim=int(protocol["attn_dim"]), attn_heads=int(protocol["attn_heads"]))
        config = ProbeConfig(epochs=int(protocol["epochs"]), lr=float(params["lr"]),
                             weight_decay=float(params["weight_decay"]),
                             batch_size=int(protocol["batch_size"]), patience=int(protocol["patience"]),
                             seed=seed)
        return train_probe(model, len(train["mos"]), batch_loss, val_score, config, device,
                           memo=memo, key=None if inputs_key is None else (inputs_key, params))

    best_params, result, scored = select_on_validation(grid, fit)
    info = {"best_params": best_params, "best_epoch": result.best_epoch,
            f"best_val_{protocol['select_metric']}": result.best_val,
            "epochs_run": len(result.history), "n_train_pairs": int(len(train["mos"])),
            "grid": [{**p, "val": v} for p, v in scored], "loss": _loss_text(protocol)}
    return Fitted(kind, result.model, info)


def zero_shot_scores(enc, images: torch.Tensor, protocol: dict[str, Any]) -> np.ndarray:
    """``cos(x, mean positive prompt) - cos(x, mean negative prompt)`` (normalised)."""
    prompts = protocol["zero_shot_prompts"]
    pos = normalize(normalize(enc.texts(list(prompts["positive"])), dim=-1).mean(0), dim=0)
    neg = normalize(normalize(enc.texts(list(prompts["negative"])), dim=-1).mean(0), dim=0)
    return ((images @ pos) - (images @ neg)).double().numpy()
