"""domain_adaptation: classification under style / geographic shift, after TRUST
(Litrico, Giuffrida, Battiato & Tuia, "TRUST: Leveraging Text Robustness for
Unsupervised Domain Adaptation", AAAI 2026; official code
github.com/MattiaLitrico/TRUST-Leveraging-Text-Robustness-for-Unsupervised-Domain-Adaptation).

Every protocol is scored on the *target test* split (protocol.py lists the options):

``zero_shot``
    argmax_k cos(f(x), e_k), e_k the class prompt embedding (text.py).
``source_only``
    the control of ``adapt``: the very same training run of the head of model.py
    (same initialisation, same batches over source + captioned target train items,
    same order, same seeds) with both adaptation weights at 0, so that target items
    carry no loss and only source labels train it. It is trained once per pair (its
    batches depend on the target's captioned items), and adapt - source_only
    measures the adaptation terms alone (model.train_heads). All runs of a pair
    (both protocols, every training seed) train side by side in one stack.
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

Both trained protocols are trained ``training_seeds`` times (seeds vary the head's
initialisation and batch order; splits, pseudo-labels and certainties are fixed);
every figure is the mean over those runs, and the gain is reported with its spread
over them as well as its CI over test items (scoring.py).

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

from ...probe import probe_memo, train_probe
from ..contract import EvalRequest, FamilyOutput
from .model import MEMO_VERSION, TrainData, holdout_val, predict, probe_config, train_heads
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


def training_seed(seed: int, r: int) -> int:
    """The seed of training run ``r`` (of ``training_seeds``) under run seed ``seed``."""
    return domain_seed(seed, f"training/{r}")


def _check_splits(ds, pairs) -> None:
    for s, t in pairs:
        for d in (s, t):
            missing = [x for x in ("train", "test") if x not in ds.domains[d] or not len(ds.domains[d][x])]
            if missing:
                raise ValueError(f"dataset {ds.name}: domain {d!r} has no {'/'.join(missing)} split")


def evaluate(req: EvalRequest) -> FamilyOutput:
    p = req.protocol
    check_protocol(p)
    ds = req.dataset
    pairs = resolve_pairs(p, list(ds.domains))
    _check_splits(ds, pairs)
    k = len(ds.classes)
    protocols = ordered_protocols(p)
    emb = _Embeddings(req)
    seed = int(req.seed)
    labels_test = {d: ds.domains[d]["test"].labels for d in {x for pr in pairs for x in pr}}

    # preds[(model key, domain)] -> [runs, N] test predictions; model keys: "zs",
    # ("so", s, t), ("ad", s, t) (one row per training seed)
    preds: dict[Any, np.ndarray] = {}
    details: dict[str, Any] = {"pairs": [f"{s}->{t}" for s, t in pairs], "per_pair": {},
                               "n_classes": k, "selection": "epoch by source-validation top-1",
                               "training_seeds": int(p["training_seeds"])}
    prompts = None
    if "zero_shot" in protocols or "adapt" in protocols and p["pseudo_labels"] == "prompt":
        prompts = class_prompt_embeddings(req.encoder, ds.classes, list(p["prompt_templates"]))
    if "zero_shot" in protocols:
        for d in labels_test:
            preds[("zs", d)] = (emb.images(d, "test") @ prompts.T).argmax(1).numpy()[None]

    source_data: dict[str, TrainData] = {}
    for s in dict.fromkeys(s for s, _ in pairs):
        tr, va, val_split = _source_split(ds, s, p, seed)
        ys_all = torch.from_numpy(ds.domains[s]["train"].labels)
        yv_all = torch.from_numpy(ds.domains[s][val_split].labels)
        source_data[s] = TrainData(emb.images(s, "train")[tr], ys_all[tr],
                                   emb.images(s, val_split)[va], yv_all[va])
        details.setdefault("source_val", {})[s] = {"split": "val" if val_split == "val" else
                                                   f"held out of train ({p['val_fraction']})",
                                                   "n_train": int(len(tr)), "n_val": int(len(va))}
    for s, t in pairs:
        if "source_only" in protocols or "adapt" in protocols:
            info = _train_pair(req, emb, ds, source_data[s], s, t, prompts, p, seed, k, protocols, preds)
            details["per_pair"][f"{s}->{t}"] = info

    metrics, tables = score(pairs, protocols, preds, labels_test, p, seed, k)
    heads = headline(pairs, protocols)
    details["test_sizes"] = {d: int(len(v)) for d, v in labels_test.items()}
    details["bootstrap"] = {"top1": "item bootstrap (cluster_means)",
                            "mpca": "within-class bootstrap (class_stratified_bootstrap)",
                            "resamples": int(p["bootstrap_resamples"]),
                            "seeds": "t-interval over training seeds (gain_seeds)"}
    details.update({key: v for key, v in ds.meta.items() if key in ("generator_version", "quality_mix",
                                                                   "seed", "root", "limit")})
    n = int(sum(len(labels_test[t]) for _, t in pairs))
    return FamilyOutput(metrics, heads, tables, details, n)


def _train_pair(req, emb: _Embeddings, ds, src: TrainData, s: str, t: str, prompts, p, seed, k,
                protocols, preds) -> dict[str, Any]:
    """Train the pair's heads, ``training_seeds`` times each: adapt, and its control
    source_only (the same run with both adaptation weights at 0, model.train_heads).
    Writes their test predictions on both domains into ``preds``; returns the
    pair's details."""
    tidx, u = emb.captions(t, "train")
    info: dict[str, Any] = {"target_train": int(len(ds.domains[t]["train"])),
                            "target_with_text": int(len(tidx))}
    run_adapt = "adapt" in protocols and u is not None
    if "adapt" in protocols and u is None:
        info["note"] = "no captions or tags on the target train split: adapt is n/a"
    xt = emb.images(t, "train")[tidx] if u is not None else None
    data = TrainData(src.xs, src.ys, src.xv, src.yv, xt, None, None, u)
    if run_adapt:
        yhat, conf = _pseudo_label(emb, ds, s, t, prompts, p, seed, k, info)
        data = TrainData(src.xs, src.ys, src.xv, src.yv, xt, yhat, conf, u)
    runs: dict[str, list] = {"so": [], "ad": []}
    lambdas = {"so": (0.0, 0.0), "ad": (float(p["lambda_pseudo"]), float(p["lambda_contrastive"]))}
    wanted = (["so"] if "source_only" in protocols else []) + (["ad"] if run_adapt else [])
    memo = probe_memo(req, "domain_adaptation", MEMO_VERSION)
    plan = [(kind, training_seed(seed, r)) for r in range(int(p["training_seeds"])) for kind in wanted]
    trained = train_heads(data, k, p, [s for _, s in plan], [lambdas[kind] for kind, _ in plan],
                          req.device, memo=memo)
    for (kind, _), run in zip(plan, trained):
        runs[kind].append(run)
    test_x = {d: emb.images(d, "test") for d in (s, t)}
    for kind in wanted:
        for d in (s, t):
            preds[((kind, s, t), d)] = np.stack([predict(m, test_x[d]) for m, _ in runs[kind]])
        name = {"so": "source_only", "ad": "adapt"}[kind]
        info[f"{name}_best_epochs"] = [res.best_epoch for _, res in runs[kind]]
        info[f"{name}_source_val_top1"] = [round(res.best_val, 4) for _, res in runs[kind]]
    return info


def _pseudo_label(emb: _Embeddings, ds, s: str, t: str, prompts, p, seed, k, info: dict):
    """Pseudo-labels and certainties of the target train captions (module docstring,
    steps 1-3); diagnostics go into ``info``."""
    tidx, u = emb.captions(t, "train")
    if p["pseudo_labels"] == "prompt":
        logits_t = u @ prompts.T
        sidx, us = emb.captions(s, "train")
        calib = (us @ prompts.T, ds.domains[s]["train"].labels[sidx]) if us is not None else None
        tau = float(p["temperature"])
        where = f"{s} train captions"
    else:
        logits_t, calib, probe_info = _caption_probe(emb.req, emb, ds, s, u, p, seed, k)
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
    true = torch.from_numpy(ds.domains[t]["train"].labels[tidx])
    right = (yhat == true).float()
    weighted_acc = float((conf * right).sum() / conf.sum().clamp_min(1e-12))
    info.update(certainty=p["certainty"], mean_certainty=round(float(conf.mean()), 4),
                pseudo_label_accuracy=round(float(right.mean()), 4),
                weighted_pseudo_label_accuracy=round(weighted_acc, 4),
                note_diagnostic="pseudo-label accuracies read target train labels for reporting only")
    return yhat, conf.float()


def _caption_probe(req, emb: _Embeddings, ds, s: str, u_target: torch.Tensor, p, seed, k):
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

    res = train_probe(model, len(tr), batch_loss, val_score, probe_config(p, seed),
                      memo=probe_memo(req, "domain_adaptation", MEMO_VERSION),
                      key=("caption_probe", x_tr, y_tr, x_va, y_va, int(k)))
    with torch.no_grad():
        return (res.model(u_target), (res.model(x_va), labels[va]),
                {"caption_probe_val_top1": round(res.best_val, 4)})
