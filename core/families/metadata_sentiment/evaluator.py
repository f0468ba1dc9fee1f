"""metadata_sentiment: image sentiment helped by metadata (SPEC §2; SentiFormer,
Feng et al. 2025, arXiv:2502.15322, seeds/001_*).

SentiFormer CLIP-encodes the image and each metadata field (a BLIP caption, object
tags with detector score >= 0.4 and a Places365 scene label; scene and objects go
through the prompt "the scene or background of image is {place}, and the image
contains the following objects: {o1}, {o2}, "), weights the metadata by *adaptive
relevance learning* so that unreliable fields count less, fuses image and metadata
with cross-modal attention, and classifies. For a *frozen* backend this family runs
three protocols on the backend's cached embeddings:

``zero_shot``
    CLIP's recipe (Radford et al. 2021): each class is described by every template
    (``"a photo that evokes {}."``, ...); the L2-normalised text embeddings are
    averaged over templates and re-normalised; an image takes the class of highest
    cosine. Probabilities for the KL figure are softmax(``zero_shot_logit_scale`` *
    cos), CLIP's logit scale 100 by default.
``image_probe``
    a linear classifier (multinomial logistic regression) on the L2-normalised,
    train-standardised image embedding.
``fusion_probe``
    :class:`RelevanceFusionHead`: image and per-field text embeddings are projected
    per source (as SentiFormer's ``proj_v0/proj_a0/proj_l0``); a relevance gate per
    metadata field, g = softmax over the fields present for the item of ``b_f +
    <W_q h_image, W_k h_f> / sqrt(d)`` (a learned per-field prior plus an
    image-conditioned term: relevance of each field *to this image*); the gated sum
    of the field tokens is the metadata token; a small attention block fuses the
    image token and the metadata token; a classifier reads the fused image token.
    Missing fields are masked out of the gate softmax (and the metadata token out of
    the attention when an item has none). The learned relevance of each field is its
    mean gate over the test items that have every field (so all fields are compared on
    the same items; details, the "field relevance" table, and
    ``fusion_probe/relevance/<field>``); a uniform gate would give 1 / #fields.

    Where this differs from the official code (models/sentiformer/model/met.py,
    met_layer.py): SentiFormer's adaptive relevance learning follows ALMT's
    hyper-modality learning (the caption's tokens attend to the prompt and image
    tokens through several layers, with 8 learned tokens per modality) and has no
    scalar gate per field. A frozen-backend probe needs something small, trained in
    seconds, whose field weights can be read off; the softmax gate above is that
    (the same learned, image-conditioned down-weighting of unreliable fields), and
    the paper's single prompt field is the default ``fields`` setting.

Training: cross-entropy against one-hot labels, or against the label distribution
when the dataset has one (Twitter_LDL; label distribution learning), AdamW,
mini-batches, early stopping; the epoch and the weight decay (``weight_decays``
grid) are selected on the validation split only (:mod:`ctxbench.probe`). Splits:
the dataset's own train/val/test when it has them (a dataset with train and test
only gets a stratified validation part carved from train), else a seeded
stratified split (``split_fractions``). Deterministic given the seed.

Metrics on the test split (:mod:`ctxbench.families.metadata_sentiment.metrics`): accuracy,
weighted and macro F1, per-class accuracy, and with label distributions the mean
KL(true || predicted). 95% CIs: bootstrap over test items, n =
``bootstrap_resamples``; every metric and protocol uses the *same* resamples, so the
fusion gain (fusion minus image-only) is a paired bootstrap with a two-sided p-value.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.functional import log_softmax, normalize

from ...bootstrap import CHUNK, BootstrapSamples, two_sided_p
from ...hooks import hookimpl
from .metrics import (confusion_matrix, kl_divergence, macro_f1, mean_kl_divergence,
                                      per_class_accuracy, scores_from_confusion, weighted_f1)
from .metrics import accuracy as accuracy_metric
from ...probe import ProbeConfig, ProbeResult, select_on_validation, stratified_split, train_probe
from ...results import MetricValue
from ...registrations import FamilySpec, LoaderSpec, MetricSpec
from ..contract import EvalRequest, FamilyOutput

FAMILY = "metadata_sentiment"
PROTOCOLS = ("zero_shot", "image_probe", "fusion_probe")
#: SentiFormer's prompt for the scene label and the detected objects (objects are
#: rendered as "o1, o2, ", each followed by ", " as in the paper).
PAPER_PROMPT = ("the scene or background of image is {scene}, and the image contains the "
                "following objects: {objects}")
PROTOCOL_DEFAULTS: dict[str, Any] = {
    "protocols": list(PROTOCOLS),
    "templates": ["a photo that evokes {}.", "an image that makes people feel {}.",
                  "a picture full of {}."],
    "class_prompts": {},            # class name -> words used in the templates
    "zero_shot_logit_scale": 100.0,
    "zero_shot_on": "auto",         # auto | test | all  (auto: all items when no probe runs
                                    # and the dataset has no own split)
    "fields": {"caption": "{caption}", "scene_objects": PAPER_PROMPT},
    "split_fractions": [0.6, 0.2, 0.2],
    "val_fraction_of_train": 0.1,
    "epochs": 100,
    "patience": 10,
    "batch_size": 256,
    "linear_lr": 0.01,
    "fusion_lr": 0.001,
    "weight_decays": [0.0001, 0.01],
    "fusion_dim": 128,
    "fusion_heads": 4,
    "dropout": 0.1,
    "bootstrap_resamples": 1000,
}
HEADLINE = ("zero_shot/accuracy", "image_probe/accuracy", "fusion_probe/accuracy",
            "fusion_probe/macro_f1", "fusion_gain/accuracy")


# ----------------------------------------------------------------------------- heads
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


# ----------------------------------------------------------------------------- training
@dataclass
class ProbeFit:
    """A trained probe with its selection record."""

    model: nn.Module
    params: dict
    best_epoch: int
    best_val: float
    grid: list[tuple[dict, float]]
    epochs_run: int = 0


#: An epoch makes at least this many optimiser steps (small training sets get
#: smaller batches, so early stopping does not act on a handful of steps).
MIN_STEPS_PER_EPOCH = 8


def effective_batch_size(n_train: int, requested: int) -> int:
    """``min(requested, ceil(n_train / MIN_STEPS_PER_EPOCH))`` (at least 1)."""
    return max(1, min(int(requested), math.ceil(n_train / MIN_STEPS_PER_EPOCH)))


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of -sum_k t_k log softmax(logits)_k (one-hot t: the usual cross-entropy)."""
    return -(target * log_softmax(logits, dim=-1)).sum(-1).mean()


def standardise(x: torch.Tensor, train_idx: np.ndarray, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(x - mean) / std with statistics of the training rows (present rows only for
    masked inputs, per source); masked-out rows become 0."""
    if x.ndim == 2:
        ref = x[train_idx]
        return (x - ref.mean(0)) / ref.std(0).clamp_min(1e-6)
    out = torch.zeros_like(x)
    for s in range(x.shape[1]):
        present = mask[:, s]
        rows = x[train_idx, s][present[train_idx]]
        if len(rows) < 2:
            continue
        out[:, s] = torch.where(present[:, None], (x[:, s] - rows.mean(0)) / rows.std(0).clamp_min(1e-6), 0.0)
    return out


def fit_probe(make_model, inputs: Sequence[torch.Tensor], targets: torch.Tensor, train_idx: np.ndarray,
              val_idx: np.ndarray, val_labels: np.ndarray, *, lr: float, weight_decays: Sequence[float],
              epochs: int, patience: int, batch_size: int, seed: int, device: str = "cpu") -> ProbeFit:
    """Train ``make_model()`` on ``inputs[..][train_idx]`` against ``targets`` (rows are
    distributions), one run per weight decay; the epoch and the weight decay with the
    best validation accuracy win (the test split is not an argument)."""
    tr = torch.as_tensor(train_idx, dtype=torch.long)
    va = torch.as_tensor(val_idx, dtype=torch.long)
    val_y = torch.as_tensor(val_labels, dtype=torch.long).to(device)
    train_inputs = [t[tr].to(device) for t in inputs]
    val_inputs = [t[va].to(device) for t in inputs]
    train_targets = targets[tr].to(device)

    def logits_of(model, xs):
        out = model(*xs)
        return out[0] if isinstance(out, tuple) else out

    def fit(params: dict) -> ProbeResult:
        torch.manual_seed(seed)               # initialisation and dropout
        model = make_model()

        def batch_loss(m, idx):
            return soft_cross_entropy(logits_of(m, [t[idx] for t in train_inputs]), train_targets[idx])

        def val_score(m):
            return float((logits_of(m, val_inputs).argmax(-1) == val_y).double().mean())

        cfg = ProbeConfig(epochs=int(epochs), lr=float(lr), weight_decay=float(params["weight_decay"]),
                          batch_size=effective_batch_size(len(tr), int(batch_size)),
                          patience=int(patience), seed=int(seed))
        result = train_probe(model, len(tr), batch_loss, val_score, cfg, device=device)
        result.model.to("cpu")
        return result

    candidates = [{"weight_decay": float(wd)} for wd in weight_decays]
    params, best, grid = select_on_validation(candidates, fit)
    return ProbeFit(best.model, params, best.best_epoch, best.best_val, grid, len(best.history))


@torch.no_grad()
def predict(model: nn.Module, inputs: Sequence[torch.Tensor], idx: np.ndarray,
            batch: int = 4096) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities [n, K], gates [n, S] or None) for items ``idx``."""
    model.eval()
    probs, gates = [], []
    idx = torch.as_tensor(idx, dtype=torch.long)
    for start in range(0, len(idx), batch):
        part = idx[start:start + batch]
        out = model(*[t[part] for t in inputs])
        logits, g = out if isinstance(out, tuple) else (out, None)
        probs.append(torch.softmax(logits, -1).double().numpy())
        if g is not None:
            gates.append(g.double().numpy())
    return np.concatenate(probs), (np.concatenate(gates) if gates else None)


# ----------------------------------------------------------------------------- bootstrap
def paired_bootstrap(y_true: np.ndarray, preds: dict[str, np.ndarray], n_classes: int,
                     n_resamples: int, seed: int, kl: dict[str, np.ndarray] | None = None
                     ) -> dict[str, dict[str, BootstrapSamples]]:
    """Bootstrap over test items, the same resamples for every prediction set.

    Resamples are drawn exactly as :func:`ctxbench.bootstrap.cluster_means` draws them
    (``default_rng(seed)``, multinomial counts in blocks of ``CHUNK``), so a mean over
    items here equals ``cluster_means(values, None, n_resamples, seed)``. Returns
    name -> metric -> BootstrapSamples (per_class_accuracy has one column per class).
    """
    q = len(y_true)
    rng = np.random.default_rng(seed)
    names = list(preds)
    acc: dict[str, dict[str, list[np.ndarray]]] = {n: {} for n in names}
    for start in range(0, n_resamples, CHUNK):
        b = min(CHUNK, n_resamples - start)
        w = rng.multinomial(q, np.full(q, 1.0 / q), size=b).astype(np.float64)
        for name in names:
            scores = scores_from_confusion(confusion_matrix(y_true, preds[name], n_classes, counts=w))
            for metric in ("accuracy", "macro_f1", "weighted_f1", "per_class_accuracy"):
                acc[name].setdefault(metric, []).append(scores[metric])
            if kl is not None and name in kl:
                acc[name].setdefault("kl", []).append(w @ kl[name] / q)
    out: dict[str, dict[str, BootstrapSamples]] = {}
    for name in names:
        point = scores_from_confusion(confusion_matrix(y_true, preds[name], n_classes))
        out[name] = {}
        for metric, chunks in acc[name].items():
            samples = np.concatenate(chunks, axis=0)
            samples = samples if samples.ndim == 2 else samples[:, None]
            p = np.atleast_1d(kl[name].mean() if metric == "kl" else point[metric]).astype(np.float64)
            out[name][metric] = BootstrapSamples(p, samples)
    return out


# ----------------------------------------------------------------------------- evaluator
def _check_protocol(p: dict) -> None:
    bad = [x for x in p["protocols"] if x not in PROTOCOLS]
    if bad or not p["protocols"]:
        raise ValueError(f"protocol.protocols: unknown {bad}; choose from {list(PROTOCOLS)}")
    if not p["templates"] or any("{}" not in t for t in p["templates"]):
        raise ValueError("protocol.templates: give at least one template, each with a '{}' for the class")
    if p["zero_shot_on"] not in ("auto", "test", "all"):
        raise ValueError("protocol.zero_shot_on must be auto, test or all")
    fr = [float(x) for x in p["split_fractions"]]
    if len(fr) != 3 or min(fr) <= 0 or abs(sum(fr) - 1) > 1e-6:
        raise ValueError(f"protocol.split_fractions must be three positive numbers summing to 1, got {fr}")
    if not p["weight_decays"]:
        raise ValueError("protocol.weight_decays: give at least one value")
    if not isinstance(p["fields"], dict):
        raise ValueError("protocol.fields must map a field name to a template such as '{caption}'")


def resolve_splits(ds, protocol: dict, seed: int) -> tuple[dict[str, np.ndarray], dict]:
    """Own splits when the dataset has them, else a seeded stratified split."""
    if ds.splits is not None:
        splits = {k: np.asarray(v) for k, v in ds.splits.items()}
        source = "dataset"
        if len(splits.get("train", ())) == 0:
            raise ValueError(f"{ds.meta.get('source', ds.name)}: the dataset's own splits have no "
                             "training items; run it with protocol.protocols: [zero_shot], or drop "
                             "the split field to get a seeded stratified split")
        if "val" not in splits or len(splits["val"]) == 0:
            frac = float(protocol["val_fraction_of_train"])
            train = splits["train"]
            inner = stratified_split(ds.labels[train], (1 - frac, frac / 2, frac / 2), seed)
            splits = {"train": np.sort(train[inner["train"]]),
                      "val": np.sort(train[np.concatenate([inner["val"], inner["test"]])]),
                      "test": splits["test"]}
            source = f"dataset (validation: stratified {frac:.0%} of train, seed {seed})"
    else:
        splits = stratified_split(ds.labels, tuple(float(x) for x in protocol["split_fractions"]), seed)
        source = "stratified"
    sizes = {k: int(len(v)) for k, v in splits.items()}
    empty = [k for k in ("train", "val", "test") if sizes.get(k, 0) == 0]
    if empty:
        raise ValueError(f"{ds.meta.get('source', ds.name)}: the {'/'.join(empty)} split is empty "
                         f"({len(ds)} items; a stratified split needs at least 3 items per class): "
                         "use more data (a larger --limit) or other split_fractions")
    return splits, {"split_source": source, "split_seed": int(seed), "split_sizes": sizes,
                    "split_fractions": [float(x) for x in protocol["split_fractions"]]
                    if source == "stratified" else None}


def field_texts(ds, fields: dict[str, str]) -> dict[str, list[str | None]]:
    """Render each protocol field for every item. Placeholders: {caption}, {scene},
    {objects} (rendered "o1, o2, " as SentiFormer's prompt) and extra text fields. A
    field is missing for an item when *all* its placeholders are; a missing
    placeholder alongside present ones renders as an empty string."""
    out = {}
    for name, template in fields.items():
        if not isinstance(template, str):
            raise ValueError(f"protocol.fields.{name} must be a template string")
        keys = [k for _, k, _, _ in string.Formatter().parse(template) if k is not None]
        if not keys:
            raise ValueError(f"protocol.fields.{name} = {template!r} has no placeholder such as {{caption}}")
        unknown = [k for k in keys if k not in ds.field_names]
        if unknown:
            raise ValueError(f"protocol.fields.{name}: placeholders {unknown} are not metadata fields of "
                             f"this dataset (available: {list(ds.field_names)})")
        columns = {k: ds.field_values(k) for k in keys}
        texts = []
        for i in range(len(ds)):
            values = {k: columns[k][i] for k in keys}
            if all(v is None for v in values.values()):
                texts.append(None)
                continue
            rendered = {k: ("" if v is None else "".join(f"{o}, " for o in v) if k == "objects" else v)
                        for k, v in values.items()}
            texts.append(template.format(**rendered))
        out[name] = texts
    return out


def zero_shot_scores(encoder, image_emb: torch.Tensor, classes: Sequence[str], templates: Sequence[str],
                     class_prompts: dict[str, str]) -> torch.Tensor:
    """Cosine of each image to each class's template-averaged text embedding."""
    words = [class_prompts.get(c, c) for c in classes]
    texts = [t.format(w) for w in words for t in templates]
    emb = normalize(encoder.texts(texts), dim=-1).view(len(classes), len(templates), -1)
    prototypes = normalize(emb.mean(1), dim=-1)
    return normalize(image_emb, dim=-1) @ prototypes.T


def _metric_values(boot: dict[str, BootstrapSamples], n: int, classes: Sequence[str],
                   prefix: str) -> dict[str, MetricValue]:
    out = {}
    for metric in ("accuracy", "weighted_f1", "macro_f1", "kl"):
        if metric not in boot:
            continue
        b = boot[metric]
        ci = b.ci()[0]
        out[f"{prefix}/{metric}"] = MetricValue(float(b.point[0]), (float(ci[0]), float(ci[1])), n,
                                                note="mean KL(true || predicted)" if metric == "kl" else "")
    pc = boot["per_class_accuracy"]
    cis = pc.ci()
    point = pc.point
    for k, cls in enumerate(classes):
        if np.isfinite(point[k]):
            out[f"{prefix}/class_accuracy/{cls}"] = MetricValue(float(point[k]),
                                                                (float(cis[k, 0]), float(cis[k, 1])), n)
        else:
            out[f"{prefix}/class_accuracy/{cls}"] = MetricValue.not_applicable("no test item of this class")
    return out


def evaluate(req: EvalRequest) -> FamilyOutput:
    p = req.protocol
    _check_protocol(p)
    ds = req.dataset
    classes = list(ds.classes)
    k = len(classes)
    seed = int(req.seed)
    protocols = [x for x in PROTOCOLS if x in p["protocols"]]
    probes = [x for x in protocols if x != "zero_shot"]
    metrics: dict[str, MetricValue] = {}
    details: dict[str, Any] = {"classes": classes, "label_distributions": ds.distributions is not None,
                               "protocols": protocols}
    details.update({key: v for key, v in ds.meta.items()
                    if key in ("source", "generator_version", "reliability", "tag_threshold", "polarity",
                               "limited_to", "metadata_matched", "metadata_unmatched", "hf_splits")})

    zs_on_all = p["zero_shot_on"] == "all" or (p["zero_shot_on"] == "auto" and not probes
                                               and ds.splits is None)
    if probes or not zs_on_all:
        splits, split_info = resolve_splits(ds, p, seed)
    else:
        splits = {"train": np.zeros(0, np.int64), "val": np.zeros(0, np.int64),
                  "test": np.arange(len(ds))}
        split_info = {"split_source": "none (zero-shot on every item)", "split_seed": seed,
                      "split_sizes": {"train": 0, "val": 0, "test": len(ds)}, "split_fractions": None}
    details.update(split_info)
    test = splits["test"]
    y_test = ds.labels[test]
    targets = (torch.from_numpy(ds.distributions).float() if ds.distributions is not None
               else torch.eye(k)[torch.from_numpy(ds.labels)])

    image_idx = np.arange(len(ds)) if probes else test
    raw_images = req.encoder.images([ds.images[i] for i in image_idx])
    image_emb = torch.zeros(len(ds), raw_images.shape[1])
    image_emb[torch.as_tensor(image_idx)] = normalize(raw_images, dim=-1)

    probs: dict[str, np.ndarray] = {}
    gates_test = None
    field_names: list[str] = []
    field_mask = None

    if "zero_shot" in protocols:
        cos = zero_shot_scores(req.encoder, image_emb[test], classes, p["templates"], p["class_prompts"])
        probs["zero_shot"] = torch.softmax(float(p["zero_shot_logit_scale"]) * cos.double(), -1).numpy()
        details["zero_shot"] = {"templates": list(p["templates"]),
                                "class_prompts": {c: p["class_prompts"].get(c, c) for c in classes},
                                "logit_scale": float(p["zero_shot_logit_scale"])}

    common = dict(epochs=p["epochs"], patience=p["patience"], batch_size=p["batch_size"], seed=seed,
                  weight_decays=p["weight_decays"], device=req.device or "cpu")
    selection: dict[str, Any] = {}
    if "image_probe" in protocols:
        x = standardise(image_emb, splits["train"])
        fit = fit_probe(lambda: LinearHead(x.shape[1], k), [x], targets, splits["train"], splits["val"],
                        ds.labels[splits["val"]], lr=p["linear_lr"], **common)
        probs["image_probe"], _ = predict(fit.model, [x], test)
        selection["image_probe"] = _selection(fit)

    if "fusion_probe" in protocols:
        texts = field_texts(ds, p["fields"])
        empty = [name for name, col in texts.items() if all(t is None for t in col)]
        field_names = [name for name in texts if name not in empty]
        if empty:
            details["fields_without_data"] = empty
        if not field_names:
            why = "the dataset has no metadata for any protocol field " + str(list(p["fields"]))
            for metric in ("accuracy", "weighted_f1", "macro_f1"):
                metrics[f"fusion_probe/{metric}"] = MetricValue.not_applicable(why)
                metrics[f"fusion_gain/{metric}"] = MetricValue.not_applicable(why)
        else:
            n, d = image_emb.shape
            stack = torch.zeros(n, 1 + len(field_names), d)
            field_mask = torch.zeros(n, 1 + len(field_names), dtype=torch.bool)
            stack[:, 0] = image_emb
            field_mask[:, 0] = True
            for j, name in enumerate(field_names, start=1):
                rows = [i for i, t in enumerate(texts[name]) if t is not None]
                if rows:
                    emb = normalize(req.encoder.texts([texts[name][i] for i in rows]), dim=-1)
                    if emb.shape[1] != d:
                        raise ValueError(f"backend text embeddings have dimension {emb.shape[1]} but "
                                         f"image embeddings {d}; the fusion probe needs one space")
                    stack[rows, j] = emb
                    field_mask[rows, j] = True
            x = standardise(stack, splits["train"], field_mask)
            fit = fit_probe(lambda: RelevanceFusionHead(d, stack.shape[1], k, int(p["fusion_dim"]),
                                                        int(p["fusion_heads"]), float(p["dropout"])),
                            [x, field_mask], targets, splits["train"], splits["val"],
                            ds.labels[splits["val"]], lr=p["fusion_lr"], **common)
            probs["fusion_probe"], gates_test = predict(fit.model, [x, field_mask], test)
            selection["fusion_probe"] = _selection(fit)
            details["fields"] = {name: p["fields"][name] for name in field_names}
    details["selection"] = selection

    preds = {name: pr.argmax(1) for name, pr in probs.items()}
    details["confusion"] = {name: confusion_matrix(y_test, pred, k).astype(int).tolist()
                            for name, pred in preds.items()}   # rows: true, columns: predicted
    kl = None
    if ds.distributions is not None:
        kl = {name: kl_divergence(ds.distributions[test], pr) for name, pr in probs.items()}
    n_resamples = int(p["bootstrap_resamples"])
    boot = paired_bootstrap(y_test, preds, k, n_resamples, seed, kl) if preds else {}
    n_test = int(len(test))
    for name in probs:
        metrics.update(_metric_values(boot[name], n_test, classes, name))
    if "image_probe" in boot and "fusion_probe" in boot:
        for metric in ("accuracy", "weighted_f1", "macro_f1"):
            diff = boot["fusion_probe"][metric].samples[:, 0] - boot["image_probe"][metric].samples[:, 0]
            point = float(boot["fusion_probe"][metric].point[0] - boot["image_probe"][metric].point[0])
            ci = BootstrapSamples(np.array([point]), diff[:, None]).ci()[0]
            metrics[f"fusion_gain/{metric}"] = MetricValue(
                point, (float(ci[0]), float(ci[1])), n_test, float(two_sided_p(diff[:, None])[0]),
                note="fusion_probe minus image_probe; paired bootstrap over test items")
    details["bootstrap"] = {"kind": "items (paired across protocols)", "resamples": n_resamples,
                            "seed": seed}

    tables: dict[str, list[dict]] = {}
    tables["summary"] = [{"protocol": name, **{m: _round(metrics[f"{name}/{m}"].value)
                                               for m in ("accuracy", "weighted_f1", "macro_f1", "kl")
                                               if f"{name}/{m}" in metrics}} for name in probs]
    tables["per-class accuracy"] = [{"class": c, **{name: _round(metrics[f"{name}/class_accuracy/{c}"].value)
                                                    for name in probs}} for c in classes]
    if gates_test is not None:
        rows, rel = _relevance(gates_test, field_mask[torch.as_tensor(test)][:, 1:].numpy(), field_names)
        metrics.update(rel)
        tables["field relevance"] = rows
        details["relevance"] = {r["source"]: r for r in rows}
    headline = [h for h in HEADLINE if h in metrics and metrics[h].value is not None]
    return FamilyOutput(metrics, headline, tables, details, n_test)


def _round(x):
    return None if x is None else round(float(x), 4)


def _selection(fit: ProbeFit) -> dict:
    return {"weight_decay": fit.params["weight_decay"], "best_epoch": int(fit.best_epoch),
            "epochs_run": int(fit.epochs_run),
            "val_accuracy": float(fit.best_val),
            "grid": [{"weight_decay": prm["weight_decay"], "val_accuracy": float(v)} for prm, v in fit.grid]}


def _relevance(gates: np.ndarray, mask: np.ndarray, fields: list[str]):
    """Learned relevance of each field on the test items: the mean gate over the items
    where *every* field is present (comparable across fields: same items, gates sum
    to 1; ``uniform_share`` = 1 / number of fields), falling back to the items where
    the field is present when no test item has every field (``uniform_share`` = mean
    of 1 / number of present fields). Rows also give the mean over the items where
    the field is present and its coverage."""
    full = mask.all(1)
    n_present = np.maximum(mask.sum(1), 1)
    rows, metrics = [], {}
    for f, name in enumerate(fields):
        present = mask[:, f]
        if not present.any():
            continue
        when_present = float(gates[present, f].mean())
        items = full if full.any() else present
        value = float(gates[items, f].mean())
        rows.append({"source": name, "relevance": round(value, 4),
                     "relevance_when_present": round(when_present, 4),
                     "uniform_share": round(float((1.0 / n_present[items]).mean()), 4),
                     "coverage": round(float(present.mean()), 4)})
        metrics[f"fusion_probe/relevance/{name}"] = MetricValue(
            value, None, int(items.sum()),
            note="mean learned relevance gate over test items with "
                 + ("every field present" if full.any() else "this field present"))
    return rows, metrics


# ----------------------------------------------------------------------------- loaders
def _path(value, ctx):
    from pathlib import Path
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else ctx.task_file.parent / path


def _common(options: dict) -> dict:
    return {"classes": options.get("classes"),
            "tag_threshold": float(options.get("tag_threshold", 0.4)),
            "polarity": bool(options.get("polarity", False))}


def _load_folders(options: dict, ctx):
    from .data import load_folders, stratified_limit
    if "root" not in options:
        raise ValueError("dataset.options.root is required (the folder holding one folder per class)")
    extra = {k: options[k] for k in ("instructions", "layout") if options.get(k)}
    ds = load_folders(_path(options["root"], ctx),
                      metadata=_path(options["metadata"], ctx) if options.get("metadata") else None,
                      text_fields=options.get("text_fields", ()), name=options.get("name", "fi"),
                      **extra, **_common(options))
    return stratified_limit(ds, ctx.limit, ctx.seed)


def _load_manifest(options: dict, ctx):
    from .data import load_manifest, stratified_limit
    if "path" not in options:
        raise ValueError("dataset.options.path is required (the CSV/JSONL manifest)")
    ds = load_manifest(_path(options["path"], ctx),
                       root=_path(options["root"], ctx) if options.get("root") else None,
                       text_fields=options.get("text_fields", ()), name=options.get("name"),
                       instructions=options.get("instructions", ""), **_common(options))
    return stratified_limit(ds, ctx.limit, ctx.seed)


def _load_hf(options: dict, ctx):
    from .data import load_hf, stratified_limit
    if "path" not in options:
        raise ValueError("dataset.options.path is required (a local folder or a hub id owner/name)")
    local = _path(options["path"], ctx)
    path = str(local) if local.exists() else str(options["path"])
    keys = ("image_column", "label_column", "distribution_column", "caption_column", "scene_column",
            "tags_column", "text_columns", "config", "revision", "splits")
    ds = load_hf(path, **{k: options[k] for k in keys if k in options}, **_common(options))
    return stratified_limit(ds, ctx.limit, ctx.seed)


def _load_synthetic(options: dict, ctx):
    from .data import stratified_limit
    from .synthetic import build
    ds = build(**options)
    return stratified_limit(ds, ctx.limit, ctx.seed)


COMMON_OPTIONS = {
    "classes": "class names in label order (default: the 8 FI emotions)",
    "tag_threshold": "drop object tags scoring below this (default 0.4, SentiFormer's detector cut-off)",
    "polarity": "map the 8 emotions to binary negative/positive (default false)",
}


@hookimpl
def ctxbench_families():
    return [FamilySpec(
        plots=_load_plots, name=FAMILY, evaluate=evaluate,
        description="image sentiment with metadata (SentiFormer): zero-shot, image-only linear probe, "
                    "relevance-gated metadata fusion probe; accuracy, weighted/macro F1, fusion gain",
        protocol_defaults=PROTOCOL_DEFAULTS,
        metrics=("zero_shot/*", "image_probe/*", "fusion_probe/*", "fusion_gain/*"))]


@hookimpl
def ctxbench_dataset_loaders():
    return [
        LoaderSpec("sentiment_folders", _load_folders, FAMILY,
                   "one folder per class (FI layout) with optional sidecar JSONL metadata",
                   {"root": "folder holding one folder per class", "metadata": "sidecar JSONL: image "
                    "path (relative to root) -> caption / tags / scene / extra fields",
                    "text_fields": "extra metadata text fields to read", "name": "dataset name",
                    "layout": "folders (<root>/<class>/*) or prefix (<root>/<class>_*.jpg)",
                    "instructions": "how to obtain the data (shown when absent; {root} and "
                    "{metadata} are filled in)", **COMMON_OPTIONS}),
        LoaderSpec("sentiment_manifest", _load_manifest, FAMILY,
                   "CSV/JSONL manifest: image, label or distribution, split, metadata",
                   {"path": "the manifest (.csv, .tsv or .jsonl)", "root": "image root (default: the "
                    "manifest's folder)", "text_fields": "extra metadata text columns",
                    "name": "dataset name", "instructions": "how to obtain the data (shown when absent)",
                    **COMMON_OPTIONS}),
        LoaderSpec("sentiment_hf", _load_hf, FAMILY,
                   "a Hugging Face datasets source (local folder or hub id)",
                   {"path": "local folder or hub id owner/name", "config": "dataset config name",
                    "revision": "hub revision", "image_column": "image column (default image)",
                    "label_column": "label column (default label)",
                    "distribution_column": "label distribution column",
                    "caption_column": "caption column", "scene_column": "scene column",
                    "tags_column": "object tags column", "text_columns": "extra fields: {name: column}",
                    "splits": "{train|val|test: split name} when not the standard names",
                    **COMMON_OPTIONS}),
        LoaderSpec("synthetic_sentiment", _load_synthetic, FAMILY,
                   "embedded mini dataset from the synthetic world (mood drawn in colour and light)",
                   {"n_per_class": "images per emotion", "seed": "generator seed", "size": "image side",
                    "caption_reliability": "P(caption names the true mood)",
                    "tag_reliability": "P(the mood object tag is the true emotion's)",
                    "polarity_reliability": "P(the picture's colours/light match the polarity)",
                    "shape_reliability": "P(the emotion's signature shape is drawn)",
                    "missing_rate": "share of images without a caption",
                    "tag_threshold": COMMON_OPTIONS["tag_threshold"], "polarity": COMMON_OPTIONS["polarity"]}),
    ]


@hookimpl
def ctxbench_metrics():
    ref = "SentiFormer (arXiv:2502.15322) reports accuracy and F1; sklearn f1_score conventions"
    return [
        MetricSpec("sentiment.accuracy", accuracy_metric, "fraction of test items classified correctly", FAMILY,
                   reference=ref),
        MetricSpec("sentiment.weighted_f1", weighted_f1, "support-weighted mean of per-class F1", FAMILY, reference=ref),
        MetricSpec("sentiment.macro_f1", macro_f1, "unweighted mean of per-class F1 (classes in true or predicted)",
                   FAMILY, reference=ref),
        MetricSpec("sentiment.per_class_accuracy", per_class_accuracy, "recall of each class", FAMILY, reference=ref),
        MetricSpec("sentiment.kl_divergence", mean_kl_divergence, "mean KL(true distribution || predicted)", FAMILY,
                   higher_is_better=False, reference="label distribution learning (Twitter_LDL, Yang et al. 2017)"),
    ]


def _load_plots():
    from .plots import PLOTS
    return PLOTS
