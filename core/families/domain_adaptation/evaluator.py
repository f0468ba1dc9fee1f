"""domain_adaptation: classification under style / geographic shift, after TRUST
(Litrico, Giuffrida, Battiato & Tuia, "TRUST: Leveraging Text Robustness for
Unsupervised Domain Adaptation", AAAI 2026; official code
github.com/MattiaLitrico/TRUST-Leveraging-Text-Robustness-for-Unsupervised-Domain-Adaptation).

Every protocol is scored on the *target test* split (protocol.py lists the options):

``zero_shot``
    argmax_k cos(f(x), e_k), e_k the class prompt embedding (text.py).
``source_only``
    the head of model.py trained on the source train split alone.
``adapt`` (text-guided adaptation in the spirit of TRUST)
    1. pseudo-labels: each target *train* image's caption (or, lacking one, its
       tags) is embedded by the backend's text encoder, u_j, and scored against the
       class prompts: p_j = softmax_k(cos(u_j, e_k) / tau), yhat_j = argmax p_j
       (``pseudo_labels: prompt``). TRUST itself classifies captions with a
       DistilBERT fine-tuned on *source* captions; ``pseudo_labels: caption_probe``
       is that idea on frozen embeddings: a linear probe on source caption
       embeddings gives p_j.
    2. tau is fitted on the *source* captions and labels by temperature scaling
       (text.fit_temperature) - never on target labels. With uninformative
       captions tau grows and every pseudo-label loses its weight.
    3. certainty c_j in [0, 1] of each pseudo-label (text.certainty).
    4. the head of model.py trained on source and target batches with the
       certainty-weighted pseudo-label and soft-contrastive terms.

Selection: nothing is selected on the target test split. The epoch (early stopping)
is chosen on the *source validation* split's top-1 accuracy (the dataset's ``val``
split, or ``val_fraction`` of source train held out per class, seeded); target
train labels are never read except for a reported diagnostic (pseudo-label accuracy).

Metrics and intervals: scoring.py. Paper figures (top-1, %): GeoNet average 63.20
(GeoImNet U->A 65.77, A->U 67.02; GeoPlaces U->A 59.89, A->U 60.14); DomainNet
average 74.95.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...probe import train_probe
from ..contract import EvalRequest, FamilyOutput
from .model import TrainData, holdout_val, predict, probe_config, train_head
from .protocol import check_protocol, ordered_protocols, resolve_pairs
from .scoring import domain_seed, headline, score
from .text import certainty, class_prompt_embeddings, fit_temperature


class _Embeddings:
    """Lazily encoded, L2-normalised embeddings per (domain, split)."""

    def __init__(self, req: EvalRequest):
        self.req, self.ds = req, req.dataset
        self._img: dict[tuple[str, str], torch.Tensor] = {}
        self._txt: dict[tuple[str, str], tuple[np.ndarray, torch.Tensor | None]] = {}

    def images(self, dom: str, split: str) -> torch.Tensor:
        key = (dom, split)
        if key not in self._img:
            refs = self.ds.domains[dom][split].refs
            self._img[key] = F.normalize(self.req.encoder.images(refs), dim=-1)
        return self._img[key]

    def captions(self, dom: str, split: str) -> tuple[np.ndarray, torch.Tensor | None]:
        """(indices of items with text, their normalised text embeddings)."""
        key = (dom, split)
        if key not in self._txt:
            texts = self.ds.domains[dom][split].texts()
            idx = np.array([i for i, t in enumerate(texts) if t], dtype=np.int64)
            emb = F.normalize(self.req.encoder.texts([texts[i] for i in idx]), dim=-1) if len(idx) else None
            self._txt[key] = (idx, emb)
        return self._txt[key]


def _source_split(ds, dom: str, p: dict, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices (into the split named by the 3rd element) of source train and val items."""
    splits = ds.domains[dom]
    if "val" in splits and len(splits["val"]):
        return np.arange(len(splits["train"])), np.arange(len(splits["val"])), "val"
    tr, va = holdout_val(splits["train"].labels, float(p["val_fraction"]), domain_seed(seed, "val/" + dom))
    return tr, va, "train"


def evaluate(req: EvalRequest) -> FamilyOutput:
    p = req.protocol
    check_protocol(p)
    ds = req.dataset
    domains = list(ds.domains)
    pairs = resolve_pairs(p, domains)
    for s, t in pairs:
        for d, need in ((s, ("train", "test")), (t, ("train", "test"))):
            missing = [x for x in need if x not in ds.domains[d] or not len(ds.domains[d][x])]
            if missing:
                raise ValueError(f"dataset {ds.name}: domain {d!r} has no {'/'.join(missing)} split")
    k = len(ds.classes)
    protocols = ordered_protocols(p)
    emb = _Embeddings(req)
    seed = int(req.seed)
    labels_test = {d: ds.domains[d]["test"].labels for d in {x for pr in pairs for x in pr}}

    # predictions[(model key, domain)] -> test predictions; model keys: "zs", ("so", s), ("ad", s, t)
    preds: dict[Any, np.ndarray] = {}
    details: dict[str, Any] = {"pairs": [f"{s}->{t}" for s, t in pairs], "per_pair": {},
                               "n_classes": k, "selection": "epoch by source-validation top-1"}
    prompts = None
    if "zero_shot" in protocols or "adapt" in protocols and p["pseudo_labels"] == "prompt":
        prompts = class_prompt_embeddings(req.encoder, ds.classes, list(p["prompt_templates"]))
    if "zero_shot" in protocols:
        for d in labels_test:
            preds[("zs", d)] = (emb.images(d, "test") @ prompts.T).argmax(1).numpy()

    source_data: dict[str, TrainData] = {}
    for s in dict.fromkeys(s for s, _ in pairs):
        tr, va, val_split = _source_split(ds, s, p, seed)
        ys_all = torch.from_numpy(ds.domains[s]["train"].labels)
        x_train = emb.images(s, "train")
        x_val = emb.images(s, val_split)
        yv_all = torch.from_numpy(ds.domains[s][val_split].labels)
        source_data[s] = TrainData(x_train[tr], ys_all[tr], x_val[va], yv_all[va])
        details.setdefault("source_val", {})[s] = {"split": "val" if val_split == "val" else
                                                   f"held out of train ({p['val_fraction']})",
                                                   "n_train": int(len(tr)), "n_val": int(len(va))}
        if "source_only" in protocols:
            model, res = train_head(source_data[s], k, p, seed, req.device, adapt=False)
            for d in labels_test:
                preds[(("so", s), d)] = predict(model, emb.images(d, "test"))
            details["source_val"][s].update(source_only_best_epoch=res.best_epoch,
                                            source_only_val_top1=round(res.best_val, 4))

    if "adapt" in protocols:
        for s, t in pairs:
            info, model = _adapt_pair(req, emb, ds, source_data[s], s, t, prompts, p, seed, k)
            details["per_pair"][f"{s}->{t}"] = info
            if model is not None:
                for d in (s, t):
                    preds[(("ad", s, t), d)] = predict(model, emb.images(d, "test"))

    metrics, tables = score(pairs, protocols, preds, labels_test, p, seed, ds.classes)
    heads = headline(pairs, protocols)
    details["test_sizes"] = {d: int(len(v)) for d, v in labels_test.items()}
    details["bootstrap"] = {"top1": "item bootstrap (cluster_means)",
                            "mpca": "within-class bootstrap (class_stratified_bootstrap)",
                            "resamples": int(p["bootstrap_resamples"])}
    details.update({key: v for key, v in ds.meta.items() if key in ("generator_version", "quality_mix",
                                                                   "seed", "root")})
    n = int(sum(len(labels_test[t]) for _, t in pairs))
    return FamilyOutput(metrics, heads, tables, details, n)


def _adapt_pair(req, emb: _Embeddings, ds, src: TrainData, s: str, t: str, prompts, p, seed, k):
    """Pseudo-label the target train captions, weight them, train; returns (info, model)."""
    tidx, u = emb.captions(t, "train")
    info: dict[str, Any] = {"target_train": int(len(ds.domains[t]["train"])),
                            "target_with_text": int(len(tidx))}
    if u is None:
        info["note"] = "no captions or tags on the target train split: adapt is n/a"
        return info, None
    if p["pseudo_labels"] == "prompt":
        logits_t = u @ prompts.T
        sidx, us = emb.captions(s, "train")
        calib = (us @ prompts.T, ds.domains[s]["train"].labels[sidx]) if us is not None else None
        tau = float(p["temperature"])
        where = f"{s} train captions"
    else:
        logits_t, calib, probe_info = _caption_probe(emb, ds, s, u, p, seed, k)
        info.update(probe_info)
        tau = 1.0
        where = f"{s} held-out (val) captions"
    if p["calibrate_temperature"] and calib is not None and len(calib[1]):
        tau = fit_temperature(calib[0], calib[1], seed)
        info["temperature_calibrated_on"] = f"{where} ({len(calib[1])})"
    probs = torch.softmax(logits_t / tau, dim=1)
    info["temperature"] = tau
    xt = emb.images(t, "train")[tidx]
    conf = certainty(probs, p["certainty"], image=xt, text=u, clip_batch=int(p["clip_batch"]),
                     seed=domain_seed(seed, "clip/" + t))
    yhat = probs.argmax(1)
    data = TrainData(src.xs, src.ys, src.xv, src.yv, xt, yhat, conf.float(), u)
    model, res = train_head(data, k, p, seed, req.device, adapt=True)
    true = torch.from_numpy(ds.domains[t]["train"].labels[tidx])
    right = (yhat == true).float()
    weighted_acc = float((conf * right).sum() / conf.sum().clamp_min(1e-12))
    info.update(certainty=p["certainty"], mean_certainty=round(float(conf.mean()), 4),
                pseudo_label_accuracy=round(float(right.mean()), 4),
                weighted_pseudo_label_accuracy=round(weighted_acc, 4),
                best_epoch=res.best_epoch, source_val_top1=round(res.best_val, 4),
                note_diagnostic="pseudo-label accuracies read target train labels for reporting only")
    return info, model


def _caption_probe(emb: _Embeddings, ds, s: str, u_target: torch.Tensor, p, seed, k):
    """TRUST-style caption classifier on frozen text embeddings (TRUST fine-tunes
    DistilBERT on source captions): a linear probe trained on source train captions,
    epoch chosen on held-out source captions. Returns (target logits, (held-out
    logits, held-out labels) for temperature scaling, info)."""
    sidx, us = emb.captions(s, "train")
    if us is None or len(sidx) < 4:
        raise ValueError(f"pseudo_labels: caption_probe needs captions on the source ({s}) train split")
    labels = ds.domains[s]["train"].labels[sidx]
    tr, va = holdout_val(labels, float(p["val_fraction"]), domain_seed(seed, "capval/" + s))
    x_tr, y_tr = us[tr], torch.from_numpy(labels[tr])
    x_va, y_va = us[va], torch.from_numpy(labels[va])
    torch.manual_seed(seed)
    model = nn.Linear(us.shape[1], k)

    def batch_loss(m, idx):
        return F.cross_entropy(m(x_tr[idx]), y_tr[idx])

    def val_score(m):
        return float((m(x_va).argmax(1) == y_va).float().mean())

    res = train_probe(model, len(tr), batch_loss, val_score, probe_config(p, len(tr), seed))
    with torch.no_grad():
        return (res.model(u_target), (res.model(x_va), labels[va]),
                {"caption_probe_val_top1": round(res.best_val, 4)})
