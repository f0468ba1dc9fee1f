"""domain_adaptation: classification under style / geographic shift (SPEC §4; TRUST,
seeds/003_*: Litrico, Giuffrida, Battiato & Tuia, "TRUST: Leveraging Text Robustness
for Unsupervised Domain Adaptation", AAAI 2026; official code
github.com/MattiaLitrico/TRUST-Leveraging-Text-Robustness-for-Unsupervised-Domain-Adaptation).

A task names one source->target pair (``source``/``target``) or several (``pairs``:
``all`` = every ordered pair of the dataset's domains, or a list of ``"a->b"``), all
evaluated in one cell. Every protocol is scored on the *target test* split:

``zero_shot``
    argmax_k cos(f(x), e_k), e_k the L2-normalised mean of the prompt-template
    embeddings of class k (CLIP's prompt ensembling, Radford et al. 2021).
``source_only``
    a linear probe trained on the source train split.
``adapt`` (text-guided adaptation in the spirit of TRUST)
    1. pseudo-labels: each target *train* image's caption (or, lacking one, its
       tags) is embedded by the backend's text encoder, u_j, and scored against the
       class prompts: p_j = softmax_k(cos(u_j, e_k) / tau), yhat_j = argmax p_j
       (``pseudo_labels: prompt``, as SPEC §4). TRUST itself classifies captions with
       a DistilBERT fine-tuned on *source* captions; ``pseudo_labels: caption_probe``
       is that idea on frozen embeddings: a linear probe on source caption
       embeddings gives p_j.
    2. tau is fitted on the *source* captions and labels by temperature scaling
       (minimum NLL over a log grid; Guo et al., ICML 2017) - never on target labels.
       With uninformative captions tau grows and every pseudo-label loses its weight.
    3. certainty c_j in [0, 1] of each pseudo-label: ``entropy`` 1 - H(p_j)/log K
       (default), ``margin`` p_(1) - p_(2), ``clip`` TRUST's normalised CLIP similarity
       (official models.py ClipBERT.forward: the diagonal of the softmax over a batch
       of captions of the image-caption logits 100 cos(x_j, u_i) / 3, in fixed random
       batches of ``clip_batch``; only meaningful for a backend whose image and text
       spaces are aligned), or ``none`` (c_j = 1).
    4. model on frozen image embeddings x (L2-normalised): h = x + A x (a residual
       linear adapter, A initialised at 0), class logits W h + b, and a learned
       projection z = normalise(P h) of image features into the caption space.
       Per step, with a source batch S and a target batch T (items drawn together):

         L = mean_{i in S} CE(W h_i, y_i)
           + lambda_pseudo * mean_{j in T} c_j CE(W h_j, yhat_j)          (TRUST: loss_t)
           + lambda_contrastive * sum_{j in T} c_j l_j / |T|

       with the soft-contrastive term of TRUST (official supcontrast.py: soft positives
       weighted by caption similarity, negatives by 1 - similarity) taken cross-modally,
       image projection -> captions of the batch:

         S_jk = max(0, cos(u_j, u_k)),  s_jk = cos(z_j, u_k) / tau_c,
         l_j  = - sum_k (S_jk / sum_m S_jm) [ s_jk - log sum_m (1 - S_jm) exp(s_jm) ].

       Each image is pulled toward its own caption (S_jj = 1) and toward images whose
       captions resemble its caption, and pushed from the others in proportion to
       their caption dissimilarity. Deviations from TRUST, for a frozen backbone: the
       contrastive anchors are image projections and the candidates captions (TRUST
       contrasts two augmented image views under caption-similarity weights); the
       contrastive term is certainty-weighted too (TRUST weights only the
       classification loss), so a caption that cannot be trusted moves nothing.
       ``source_only`` is exactly this model with lambda_pseudo = lambda_contrastive = 0.

Selection: nothing is selected on the target test split. The epoch (early stopping)
is chosen on the *source validation* split's top-1 accuracy (the dataset's ``val``
split, or ``val_fraction`` of source train held out per class, seeded); target
train labels are never read except for a reported diagnostic (pseudo-label accuracy).

Metrics (target test): ``top1`` overall top-1 accuracy (TRUST's figure), ``mpca`` mean
per-class accuracy (GeoNet's official figure), ``source_top1`` the same model's
in-domain accuracy on the source test split, ``drop`` = source_top1 - top1, and for
``adapt`` ``gain`` = adapt top1 - source_only top1 (paired, with p-value). Names are
``"<source>-><target>/<protocol>/<metric>"``; with several pairs, ``mean/...`` averages
over pairs (the papers' "average"). 95% CIs: ``top1`` and ``source_top1`` by the item
bootstrap (core/bootstrap.cluster_means), ``mpca`` by the within-class bootstrap
(metrics/domain.class_stratified_bootstrap); all predictors scored on the same target
test set share one set of resamples (paired), distinct test sets are resampled
independently (seeded by domain name). Paper figures (top-1, %): GeoNet average 63.20
(GeoImNet U->A 65.77, A->U 67.02; GeoPlaces U->A 59.89, A->U 60.14); DomainNet
average 74.95.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...bootstrap import cluster_means, two_sided_p
from ...hooks import hookimpl
from .metrics import class_stratified_bootstrap, mean_per_class_accuracy, top1_accuracy
from ...probe import ProbeConfig, train_probe
from ...results import MetricValue
from ...registrations import FamilySpec, LoaderSpec, MetricSpec
from ..contract import EvalRequest, FamilyOutput

PROTOCOLS = ("zero_shot", "source_only", "adapt")
CERTAINTIES = ("entropy", "margin", "clip", "none")
PSEUDO_LABELERS = ("prompt", "caption_probe")
TAU_GRID = np.logspace(-3, 2, 61)
CALIBRATION_MAX_ITEMS = 20_000

PROTOCOL_DEFAULTS: dict[str, Any] = {
    "source": None,                 # one pair: source and target domain names
    "target": None,
    "pairs": None,                  # or "all" (every ordered pair) or ["a->b", ...]
    "protocols": list(PROTOCOLS),
    "prompt_templates": ["a photo of a {}."],
    "pseudo_labels": "prompt",      # prompt | caption_probe (TRUST-like, source captions)
    "certainty": "entropy",         # entropy | margin | clip | none
    "calibrate_temperature": True,  # fit tau on source captions (temperature scaling)
    "temperature": 0.01,            # tau when not calibrated (CLIP's logit scale 100)
    "clip_batch": 32,               # batch of captions for certainty: clip (TRUST: 32)
    "lambda_pseudo": 1.0,
    "lambda_contrastive": 0.5,
    "contrastive_temperature": 0.1,
    "val_fraction": 0.1,            # source val held out of source train when no val split
    "epochs": 100,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "batch_size": 256,
    "patience": 10,
    "bootstrap_resamples": 10_000,
}


# ----------------------------------------------------------------------------- protocol
def resolve_pairs(p: dict, domains: list[str]) -> list[tuple[str, str]]:
    """The (source, target) pairs a task asks for, validated against the dataset."""
    pairs_opt = p.get("pairs")
    if pairs_opt is not None and (p.get("source") or p.get("target")):
        raise ValueError("protocol: give either 'pairs' or 'source'/'target', not both")
    if pairs_opt == "all":
        pairs = [(s, t) for s in domains for t in domains if s != t]
    elif isinstance(pairs_opt, list):
        pairs = []
        for item in pairs_opt:
            if not isinstance(item, str) or item.count("->") != 1:
                raise ValueError(f"protocol.pairs: entry {item!r} must look like 'source->target'")
            s, t = (x.strip() for x in item.split("->"))
            pairs.append((s, t))
    elif pairs_opt is None:
        if not p.get("source") or not p.get("target"):
            raise ValueError("protocol: set 'source' and 'target' (e.g. usa, asia) or 'pairs: all'")
        pairs = [(str(p["source"]), str(p["target"]))]
    else:
        raise ValueError(f"protocol.pairs must be 'all' or a list of 'a->b', got {pairs_opt!r}")
    for s, t in pairs:
        for d in (s, t):
            if d not in domains:
                raise ValueError(f"protocol: domain {d!r} is not in the dataset "
                                 f"(domains: {', '.join(domains)})")
        if s == t:
            raise ValueError(f"protocol: pair {s}->{t} has the same source and target")
    if not pairs:
        raise ValueError("protocol: no pairs (the dataset needs at least two domains for 'pairs: all')")
    return list(dict.fromkeys(pairs))


def _check_protocol(p: dict) -> None:
    bad = [x for x in p["protocols"] if x not in PROTOCOLS]
    if bad or not p["protocols"]:
        raise ValueError(f"protocol.protocols: unknown {bad}; allowed {list(PROTOCOLS)}")
    if p["certainty"] not in CERTAINTIES:
        raise ValueError(f"protocol.certainty must be one of {CERTAINTIES}, got {p['certainty']!r}")
    if p["pseudo_labels"] not in PSEUDO_LABELERS:
        raise ValueError(f"protocol.pseudo_labels must be one of {PSEUDO_LABELERS}")
    if not p["prompt_templates"] or not all("{}" in t for t in p["prompt_templates"]):
        raise ValueError("protocol.prompt_templates: a non-empty list of strings with '{}' "
                         "for the class name")
    if not 0 < float(p["val_fraction"]) < 1:
        raise ValueError("protocol.val_fraction must be in (0, 1)")


# ----------------------------------------------------------------------------- text side
def class_prompt_embeddings(encoder, classes: list[str], templates: list[str]) -> torch.Tensor:
    """[K, D]: per class, the normalised mean of its normalised template embeddings."""
    names = [c.replace("_", " ") for c in classes]
    texts = [t.format(n) for n in names for t in templates]
    emb = F.normalize(encoder.texts(texts), dim=-1).view(len(names), len(templates), -1)
    return F.normalize(emb.mean(1), dim=-1)


def fit_temperature(cos: torch.Tensor, labels: np.ndarray, seed: int = 0) -> float:
    """Temperature scaling (Guo et al. 2017): tau minimising the NLL of
    softmax(cos / tau) for the true labels, over ``TAU_GRID`` (source items only)."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) > CALIBRATION_MAX_ITEMS:
        keep = torch.from_numpy(np.random.default_rng(seed).choice(len(labels), CALIBRATION_MAX_ITEMS,
                                                                   replace=False))
        cos, labels = cos[keep], labels[keep]
    nll = [float(F.cross_entropy(cos.double() / tau, labels)) for tau in TAU_GRID]
    return float(TAU_GRID[int(np.argmin(nll))])


def certainty(probs: torch.Tensor, kind: str, *, image: torch.Tensor | None = None,
              text: torch.Tensor | None = None, clip_batch: int = 32, seed: int = 0) -> torch.Tensor:
    """Certainty in [0, 1] of each pseudo-label (see module docstring)."""
    n, k = probs.shape
    if kind == "none":
        return torch.ones(n)
    if kind == "entropy":
        h = -(probs * probs.clamp_min(1e-12).log()).sum(1)
        return (1 - h / math.log(k)).clamp(0, 1)
    if kind == "margin":
        top = probs.topk(min(2, k), dim=1).values
        return (top[:, 0] - top[:, 1]).clamp(0, 1) if k > 1 else torch.ones(n)
    if kind == "clip":
        if image is None or text is None:
            raise ValueError("certainty 'clip' needs image and caption embeddings")
        if image.shape[1] != text.shape[1]:
            raise ValueError(f"certainty 'clip' needs a shared image-text space, but images have "
                             f"{image.shape[1]} dims and captions {text.shape[1]}; use 'entropy'")
        order = torch.from_numpy(np.random.default_rng(seed).permutation(n))
        out = torch.empty(n)
        # TRUST: softmax over the captions of the batch of 100 * cos / 3
        for start in range(0, n, clip_batch):
            idx = order[start:start + clip_batch]
            logits = (100.0 / 3.0) * image[idx] @ text[idx].T
            out[idx] = torch.softmax(logits, dim=1).diagonal()
        return out
    raise ValueError(f"unknown certainty {kind!r}")


# ----------------------------------------------------------------------------- model
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
    xs: torch.Tensor                 # source train image embeddings [Ns, D]
    ys: torch.Tensor                 # source labels [Ns]
    xv: torch.Tensor                 # source val embeddings
    yv: torch.Tensor
    xt: torch.Tensor | None = None   # target train images with a usable caption [Nt, D]
    yt: torch.Tensor | None = None   # pseudo-labels
    ct: torch.Tensor | None = None   # certainties
    ut: torch.Tensor | None = None   # caption embeddings (normalised) [Nt, Dt]


def train_head(data: TrainData, n_classes: int, p: dict, seed: int, device: str,
               adapt: bool) -> tuple[AdaptHead, Any]:
    """Train the head (source_only when ``adapt`` is False); epoch chosen on source val."""
    torch.manual_seed(seed)
    text_dim = data.ut.shape[1] if (adapt and data.ut is not None) else 1
    model = AdaptHead(data.xs.shape[1], n_classes, text_dim)
    ns = len(data.ys)
    nt = len(data.yt) if adapt and data.yt is not None else 0
    lam_pl, lam_con = float(p["lambda_pseudo"]), float(p["lambda_contrastive"])
    tau_c = float(p["contrastive_temperature"])
    dev = lambda t: None if t is None else t.to(device)  # noqa: E731
    xs, ys, xv, yv = dev(data.xs), dev(data.ys), dev(data.xv), dev(data.yv)
    xt, yt, ct, ut = (dev(data.xt), dev(data.yt), dev(data.ct), dev(data.ut)) if nt else (None,) * 4

    def batch_loss(m: AdaptHead, idx: torch.Tensor) -> torch.Tensor:
        src = idx[idx < ns]
        tgt = idx[idx >= ns] - ns
        loss = F.cross_entropy(m(xs[src]), ys[src]) if len(src) else xs.sum() * 0.0
        if len(tgt):
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

    result = train_probe(model, ns + nt, batch_loss, val_score, probe_config(p, ns + nt, seed), device)
    return result.model.cpu(), result


def probe_config(p: dict, n_train: int, seed: int) -> ProbeConfig:
    """Probe settings from the protocol; the batch is capped at a quarter of the training
    set (at least 8 items) so that a small set still gets >= 4 steps per epoch (early
    stopping counts epochs)."""
    batch = min(int(p["batch_size"]), max(8, math.ceil(n_train / 4)))
    return ProbeConfig(epochs=int(p["epochs"]), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]),
                       batch_size=batch, patience=int(p["patience"]), seed=seed)


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


# ----------------------------------------------------------------------------- evaluation
def _domain_seed(seed: int, name: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**32)


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
    tr, va = holdout_val(splits["train"].labels, float(p["val_fraction"]), _domain_seed(seed, "val/" + dom))
    return tr, va, "train"


def evaluate(req: EvalRequest) -> FamilyOutput:
    p = req.protocol
    _check_protocol(p)
    ds = req.dataset
    domains = list(ds.domains)
    pairs = resolve_pairs(p, domains)
    for s, t in pairs:
        for d, need in ((s, ("train", "test")), (t, ("train", "test"))):
            missing = [x for x in need if x not in ds.domains[d] or not len(ds.domains[d][x])]
            if missing:
                raise ValueError(f"dataset {ds.name}: domain {d!r} has no {'/'.join(missing)} split")
    k = len(ds.classes)
    protocols = [x for x in PROTOCOLS if x in p["protocols"]]
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

    metrics, tables = _score(pairs, protocols, preds, labels_test, p, seed, ds.classes)
    headline = _headline(pairs, protocols)
    details["test_sizes"] = {d: int(len(v)) for d, v in labels_test.items()}
    details["bootstrap"] = {"top1": "item bootstrap (cluster_means)",
                            "mpca": "within-class bootstrap (class_stratified_bootstrap)",
                            "resamples": int(p["bootstrap_resamples"])}
    details.update({key: v for key, v in ds.meta.items() if key in ("generator_version", "quality_mix",
                                                                   "seed", "root")})
    n = int(sum(len(labels_test[t]) for _, t in pairs))
    return FamilyOutput(metrics, headline, tables, details, n)


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
                     seed=_domain_seed(seed, "clip/" + t))
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
    tr, va = holdout_val(labels, float(p["val_fraction"]), _domain_seed(seed, "capval/" + s))
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


# ----------------------------------------------------------------------------- scoring
def _score(pairs, protocols, preds, labels_test, p, seed, classes):
    B = int(p["bootstrap_resamples"])
    keyname = {"zero_shot": lambda s, t: "zs", "source_only": lambda s, t: ("so", s),
               "adapt": lambda s, t: ("ad", s, t)}
    metrics: dict[str, MetricValue] = {}
    pair_rows: list[dict] = []
    # per test domain: every predictor scored on it, bootstrapped together (paired)
    boot_top1: dict[tuple, tuple[np.ndarray, float]] = {}   # (model key, domain) -> (samples, point)
    boot_mpca: dict[tuple, tuple[np.ndarray, float]] = {}
    for d, y in labels_test.items():
        keys = [key for (key, dom) in preds if dom == d]
        if not keys:
            continue
        correct = np.stack([preds[(key, d)] == y for key in keys], axis=1)
        dseed = _domain_seed(seed, "test/" + d)
        top = cluster_means(correct.astype(np.float64), None, B, dseed)
        for j, key in enumerate(keys):
            boot_top1[(key, d)] = (top.samples[:, j], float(top.point[j]))
        for start in range(0, len(keys), 10):   # at most 10 predictors per stratified call
            part = keys[start:start + 10]
            _, mp = class_stratified_bootstrap(correct[:, start:start + 10], y, B, dseed)
            for j, key in enumerate(part):
                boot_mpca[(key, d)] = (mp.samples[:, j], float(mp.point[j]))

    def mv(samples: np.ndarray, point: float, n: int, note: str = "", p_value=None) -> MetricValue:
        with np.errstate(all="ignore"):
            lo, hi = np.nanquantile(samples, [0.025, 0.975])
        return MetricValue(float(point), (float(lo), float(hi)), n, p_value, note)

    collected: dict[tuple[str, str], list[tuple[np.ndarray, float]]] = {}
    for s, t in pairs:
        pre = f"{s}->{t}"
        nt, ns = len(labels_test[t]), len(labels_test[s])
        for proto in protocols:
            key = keyname[proto](s, t)
            if (key, t) not in boot_top1:
                for m in ("top1", "mpca", "source_top1", "drop"):
                    metrics[f"{pre}/{proto}/{m}"] = MetricValue.not_applicable(
                        "no captions or tags on the target train split")
                continue
            t_samp, t_pt = boot_top1[(key, t)]
            m_samp, m_pt = boot_mpca[(key, t)]
            s_samp, s_pt = boot_top1[(key, s)]
            vals = {"top1": (t_samp, t_pt, nt), "mpca": (m_samp, m_pt, nt),
                    "source_top1": (s_samp, s_pt, ns), "drop": (s_samp - t_samp, s_pt - t_pt, nt)}
            for m, (samp, pt, n) in vals.items():
                metrics[f"{pre}/{proto}/{m}"] = mv(samp, pt, n)
                collected.setdefault((proto, m), []).append((samp, pt))
            pair_rows.append({"source": s, "target": t, "protocol": proto,
                              "top1": round(t_pt, 4), "top1 CI": _ci_text(t_samp),
                              "mpca": round(m_pt, 4), "mpca CI": _ci_text(m_samp),
                              "source_top1": round(s_pt, 4), "drop": round(s_pt - t_pt, 4)})
        if "adapt" in protocols and "source_only" in protocols and (("ad", s, t), t) in boot_top1:
            for m, boot in (("gain", boot_top1), ("gain_mpca", boot_mpca)):
                a_s, a_p = boot[(("ad", s, t), t)]
                b_s, b_p = boot[(("so", s), t)]
                diff = a_s - b_s
                metrics[f"{pre}/adapt/{m}"] = mv(diff, a_p - b_p, nt, "adapt - source_only on target test, "
                                                 "paired bootstrap", float(two_sided_p(diff)[0]))
                collected.setdefault(("adapt", m), []).append((diff, a_p - b_p))
    if len(pairs) > 1:
        for (proto, m), items in collected.items():
            samp = np.mean([x for x, _ in items], axis=0)
            pt = float(np.mean([x for _, x in items]))
            pv = float(two_sided_p(samp)[0]) if m.startswith("gain") else None
            metrics[f"mean/{proto}/{m}"] = mv(samp, pt, len(items), f"mean over {len(items)} pairs", pv)
    tables = {"pairs": pair_rows}
    if len(pairs) > 1:
        tables.update(_matrices(pairs, protocols, boot_top1, boot_mpca, keyname))
    return metrics, tables


def _ci_text(samples: np.ndarray) -> str:
    with np.errstate(all="ignore"):
        lo, hi = np.nanquantile(samples, [0.025, 0.975])
    return f"[{lo:.3f}, {hi:.3f}]"


def _matrices(pairs, protocols, boot_top1, boot_mpca, keyname) -> dict[str, list[dict]]:
    """Source x target tables per protocol and metric; the diagonal is the in-domain
    accuracy of the source-trained model (zero_shot: on that domain; adapt: none)."""
    sources = list(dict.fromkeys(s for s, _ in pairs))
    targets = list(dict.fromkeys(t for _, t in pairs))
    cols = list(dict.fromkeys(sources + targets))
    out = {}
    for proto in protocols:
        for mname, boot in (("top1", boot_top1), ("mpca", boot_mpca)):
            rows = []
            for s in sources:
                row: dict[str, Any] = {"source \\ target": s}
                for t in cols:
                    if t == s:
                        key = keyname[proto](s, s) if proto != "adapt" else None
                    elif (s, t) in pairs:
                        key = keyname[proto](s, t)
                    else:
                        key = None
                    val = boot.get((key, t)) if key is not None else None
                    row[t] = None if val is None else round(val[1], 4)
                rows.append(row)
            out[f"matrix {proto} {mname}"] = rows
    return out


def _headline(pairs, protocols) -> list[str]:
    """Leaderboard columns: the method's target top-1 first (TRUST's figure), then mean
    per-class accuracy (GeoNet's), the baselines, the drop and the gain."""
    pre = "mean" if len(pairs) > 1 else f"{pairs[0][0]}->{pairs[0][1]}"
    order = [p for p in ("adapt", "source_only", "zero_shot") if p in protocols]
    names = [f"{pre}/{order[0]}/top1", f"{pre}/{order[0]}/mpca"]
    names += [f"{pre}/{proto}/top1" for proto in order[1:]]
    if "source_only" in protocols:
        names.append(f"{pre}/source_only/mpca")
        names.append(f"{pre}/source_only/drop")
    if "adapt" in protocols and "source_only" in protocols:
        names.append(f"{pre}/adapt/gain")
    return list(dict.fromkeys(names))[:8]


# ----------------------------------------------------------------------------- plugin hooks
def _load_synthetic(options: dict, ctx):
    from .synthetic import build
    opts = dict(options)
    per_class = {split: int(opts.pop(f"per_class_{split}")) for split in ("train", "val", "test")
                 if f"per_class_{split}" in opts}
    ds = build(per_class=per_class, **opts)
    if ctx is not None and ctx.limit:
        from .data import _limit
        for dom, splits in ds.domains.items():
            for name in list(splits):
                splits[name] = _limit(splits[name], ctx.limit, ctx.seed, f"{dom}/{name}")
    return ds


def _loader(name: str):
    def load(options: dict, ctx):
        from . import data as domain
        return getattr(domain, name)(options, ctx)
    return load


LIST_OPTIONS = {"root": "dataset folder; list paths are relative to it",
                "lists": "folder holding {domain}_{train,test}.txt (default: root)",
                "domains": "domains to load", "captions": "optional caption JSON/JSONL (see "
                "datasets/domain.read_caption_file)", "name": "dataset name in results"}


@hookimpl
def ctxbench_families():
    metrics = tuple(f"*/{proto}/{m}" for proto in PROTOCOLS
                    for m in ("top1", "mpca", "source_top1", "drop")) + ("*/adapt/gain", "*/adapt/gain_mpca")
    return [FamilySpec(
        plots=_load_plots, name="domain_adaptation", evaluate=evaluate,
        description="classification under domain shift (TRUST): zero-shot, source-only probe and "
                    "caption-guided adaptation; target top-1 and mean per-class accuracy",
        protocol_defaults=PROTOCOL_DEFAULTS, metrics=metrics)]


@hookimpl
def ctxbench_dataset_loaders():
    return [
        LoaderSpec("synthetic_domain", _load_synthetic, "domain_adaptation",
                   "embedded: world shapes drawn in the 4 STYLES, captions of varying quality",
                   {"domains": "styles used as domains", "classes": "shapes used as classes",
                    "per_class_train": "images per class and domain (train)",
                    "per_class_val": "(val)", "per_class_test": "(test)",
                    "caption_quality": "mix {full, partial, wrong, unrelated} or domain -> mix",
                    "size": "image side in pixels", "seed": "generator seed"}),
        LoaderSpec("domainnet_lists", _loader("load_domainnet"), "domain_adaptation",
                   "DomainNet {domain}_{train,test}.txt lists (+ optional captions)", LIST_OPTIONS),
        LoaderSpec("geonet_json", _loader("load_geonet"), "domain_adaptation",
                   "GeoNet (GeoImNet / GeoPlaces) metadata JSON with captions and tags",
                   {"root": "image folder the JSON filenames are relative to",
                    "metadata": "the metadata JSON", "domains": "default [usa, asia]",
                    "text_fields": "metadata fields joined into the caption (default [caption])",
                    "name": "dataset name in results"}),
        LoaderSpec("geonet_lists", _loader("load_geonet_lists"), "domain_adaptation",
                   "GeoNet UniDA lists usa/train/<class>/<id>.jpg <label>", LIST_OPTIONS),
        LoaderSpec("hf_domains", _loader("load_hf_domains"), "domain_adaptation",
                   "a datasets save_to_disk folder with image, label, domain, caption columns",
                   {"path": "save_to_disk folder", "image_column": "default image",
                    "label_column": "default label", "domain_column": "default domain",
                    "caption_column": "default caption", "tags_column": "default tags",
                    "domains": "keep only these", "class_names": "class names (default: label feature)",
                    "name": "dataset name in results"}),
    ]


@hookimpl
def ctxbench_metrics():
    return [
        MetricSpec("top1_accuracy", top1_accuracy, "overall top-1 accuracy on the target test split",
                   family="domain_adaptation",
                   reference="TRUST (Litrico et al., AAAI 2026) reports top-1 accuracy"),
        MetricSpec("mean_per_class_accuracy", mean_per_class_accuracy,
                   "mean over classes of per-class recall",
                   family="domain_adaptation",
                   reference="GeoNet official metric (Kalluri et al., CVPR 2023; ViLab-UCSD/GeoNet "
                             "UDA_trainer/val.py percls_accuracy)"),
    ]


def _load_plots():
    from .plots import PLOTS
    return PLOTS
