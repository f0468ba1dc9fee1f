"""metadata_sentiment: image sentiment helped by metadata (SentiFormer, Feng et al.,
"SentiFormer: Metadata Enhanced Transformer for Image Sentiment Analysis", 2025,
arXiv:2502.15322).

SentiFormer CLIP-encodes the image and each metadata field (a BLIP caption, object
tags with detector score >= 0.4 and a Places365 scene label; scene and objects go
through the prompt "the scene or background of image is {place}, and the image
contains the following objects: {o1}, {o2}, "), weights the metadata by *adaptive
relevance learning* so that unreliable fields count less, fuses image and metadata
with cross-modal attention, and classifies. For a *frozen* backend this family runs
three protocols on the backend's cached embeddings:

``zero_shot``
    CLIP's recipe (Radford et al., "Learning Transferable Visual Models From Natural
    Language Supervision", ICML 2021): each class is described by every template
    (``"a photo that evokes {}."``, ...); the L2-normalised text embeddings are
    averaged over templates and re-normalised; an image takes the class of highest
    cosine. Probabilities for the KL figure are softmax(``zero_shot_logit_scale`` *
    cos), CLIP's logit scale 100 by default.
``image_probe``
    a linear classifier (multinomial logistic regression) on the L2-normalised,
    train-standardised image embedding (:class:`.heads.LinearHead`).
``fusion_probe``
    :class:`.heads.RelevanceFusionHead`: image and per-field text embeddings are
    projected per source; a relevance gate per metadata field, g = softmax over the
    fields present for the item of ``b_f + <W_q h_image, W_k h_f> / sqrt(d)``; the
    gated sum of the field tokens is the metadata token; a small attention block
    fuses the image token and the metadata token; a classifier reads the fused image
    token. Missing fields are masked out of the gate softmax (and the metadata token
    out of the attention when an item has none).

    Per metadata field (the "field contribution" table, :mod:`.scoring`): its
    *contribution*, the test-accuracy drop when the trained model sees the field as
    absent on every test item, with a paired-bootstrap CI and p-value
    (``fusion_probe/contribution/<field>``); and its learned gate, the mean gate over
    the test items that have every field (``fusion_probe/gate_mean/<field>``; a
    uniform gate would give 1 / #fields). The gate is a weight, not a contribution: a
    field can keep a large gate while masking it changes nothing (on the embedded
    task with toy_clip the pure-noise scene field's gate exceeds the caption's, and
    masking either costs no significant accuracy; the objects field carries it).

Training (:mod:`.training`): cross-entropy against one-hot labels or the label
distribution, the epoch and the weight decay (``weight_decays`` grid) selected on the
validation split only. Splits: the dataset's own train/val/test when it has them (a
dataset with train and test only gets a stratified validation part carved from
train), else a seeded stratified split (``split_fractions``).

Metrics on the test split (:mod:`.metrics`, :mod:`.scoring`): ``accuracy``,
``weighted_F1`` and ``macro_F1`` (scikit-learn's averages), for binary tasks the
positive-class ``F1_positive``, per-class accuracy, and with label distributions the
mean KL(true || predicted), ``kl``. 95% CIs: bootstrap over test items, n = ``bootstrap_resamples``, the same
resamples for every metric and protocol (the fusion gain is a paired bootstrap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch.nn.functional import normalize

from ...probe import probe_memo, stratified_split
from ...results import MetricValue
from ..contract import EvalRequest, FamilyOutput
from .heads import LinearHead, RelevanceFusionHead
from .metrics import confusion_matrix, kl_divergence
from .protocol import HEADLINE, PROTOCOLS, SCORES, check_protocol, field_placeholders
from .scoring import WITHOUT, field_rows, gain_values, metric_values, paired_bootstrap
from .training import MEMO_VERSION, ProbeFit, fit_probe, predict, standardise

#: Dataset meta keys copied into the result's details.
META_KEYS = ("source", "generator_version", "reliability", "tag_threshold", "polarity",
             "limited_to", "limit", "metadata_matched", "metadata_unmatched", "hf_splits")


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
        keys = field_placeholders(name, template)
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


def _splits_for(ds, p: dict, probes: list[str], seed: int) -> tuple[dict[str, np.ndarray], dict]:
    """The train/val/test split, or every item as test for zero-shot on all items."""
    zs_on_all = p["zero_shot_on"] == "all" or (p["zero_shot_on"] == "auto" and not probes
                                               and ds.splits is None)
    if probes or not zs_on_all:
        return resolve_splits(ds, p, seed)
    splits = {"train": np.zeros(0, np.int64), "val": np.zeros(0, np.int64), "test": np.arange(len(ds))}
    return splits, {"split_source": "none (zero-shot on every item)", "split_seed": seed,
                    "split_sizes": {"train": 0, "val": 0, "test": len(ds)}, "split_fractions": None}


def _image_embeddings(encoder, ds, idx: np.ndarray) -> torch.Tensor:
    """[N, D] L2-normalised image embeddings, filled for items ``idx`` (0 elsewhere)."""
    raw = encoder.images([ds.images[i] for i in idx])
    emb = torch.zeros(len(ds), raw.shape[1])
    emb[torch.as_tensor(idx)] = normalize(raw, dim=-1)
    return emb


def _selection(fit: ProbeFit) -> dict:
    return {"weight_decay": fit.params["weight_decay"], "best_epoch": int(fit.best_epoch),
            "epochs_run": int(fit.epochs_run),
            "val_accuracy": float(fit.best_val),
            "grid": [{"weight_decay": prm["weight_decay"], "val_accuracy": float(v)} for prm, v in fit.grid]}


def _field_stack(encoder, image_emb: torch.Tensor, texts: dict[str, list], field_names: list[str]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, 1 + F, D] image and field embeddings and the [N, 1 + F] presence mask."""
    n, d = image_emb.shape
    stack = torch.zeros(n, 1 + len(field_names), d)
    mask = torch.zeros(n, 1 + len(field_names), dtype=torch.bool)
    stack[:, 0] = image_emb
    mask[:, 0] = True
    for j, name in enumerate(field_names, start=1):
        rows = [i for i, t in enumerate(texts[name]) if t is not None]
        if rows:
            emb = normalize(encoder.texts([texts[name][i] for i in rows]), dim=-1)
            if emb.shape[1] != d:
                raise ValueError(f"backend text embeddings have dimension {emb.shape[1]} but "
                                 f"image embeddings {d}; the fusion probe needs one space")
            stack[rows, j] = emb
            mask[rows, j] = True
    return stack, mask


@dataclass
class FusionRun:
    """The trained fusion probe on the test items: probabilities, gates [n, F], field
    presence [n, F], and the probabilities with each field masked on every item."""

    probs: np.ndarray
    gates: np.ndarray
    field_names: list[str]
    test_mask: np.ndarray
    without: dict[str, np.ndarray]
    fit: ProbeFit


def _fusion_probe(req: EvalRequest, image_emb, targets, splits, labels, common: dict,
                  details: dict) -> FusionRun | None:
    """Train and apply the fusion head, then re-apply it with each field masked as
    absent (drop-one-field ablation, :mod:`.scoring`). None when no protocol field has
    data."""
    p = req.protocol
    texts = field_texts(req.dataset, p["fields"])
    empty = [name for name, col in texts.items() if all(t is None for t in col)]
    field_names = [name for name in texts if name not in empty]
    if empty:
        details["fields_without_data"] = empty
    if not field_names:
        return None
    stack, mask = _field_stack(req.encoder, image_emb, texts, field_names)
    d, k = stack.shape[2], targets.shape[1]
    x = standardise(stack, splits["train"], mask)
    fit = fit_probe(lambda: RelevanceFusionHead(d, stack.shape[1], k, int(p["fusion_dim"]),
                                                int(p["fusion_heads"]), float(p["dropout"])),
                    [x, mask], targets, splits["train"], splits["val"], labels[splits["val"]],
                    lr=p["fusion_lr"], key=("fusion", d, stack.shape[1], k, int(p["fusion_dim"]),
                                            int(p["fusion_heads"]), float(p["dropout"])), **common)
    test = splits["test"]
    probs, gates = predict(fit.model, [x, mask], test)
    without = {}
    for j, name in enumerate(field_names, start=1):
        masked = mask.clone()
        masked[:, j] = False
        without[name], _ = predict(fit.model, [x, masked], test)
    details["fields"] = {name: p["fields"][name] for name in field_names}
    return FusionRun(probs, gates, field_names, mask[torch.as_tensor(test)][:, 1:].numpy(), without, fit)


def _round(x):
    return None if x is None else round(float(x), 4)


def _score(ds, probs: dict[str, np.ndarray], fusion: FusionRun | None, test: np.ndarray,
           classes: list[str], p: dict, seed: int, metrics: dict, details: dict, tables: dict) -> None:
    """Confusion matrices, the paired bootstrap (the drop-one-field predictions on the
    same resamples), every protocol's metrics, the gain, the per-field figures."""
    y_test = ds.labels[test]
    preds = {name: pr.argmax(1) for name, pr in probs.items()}
    details["confusion"] = {name: confusion_matrix(y_test, pred, len(classes)).astype(int).tolist()
                            for name, pred in preds.items()}   # rows: true, columns: predicted
    kl = None
    if ds.distributions is not None:
        kl = {name: kl_divergence(ds.distributions[test], pr) for name, pr in probs.items()}
    n_resamples = int(p["bootstrap_resamples"])
    ablated = {} if fusion is None else {WITHOUT.format(f): pr.argmax(1) for f, pr in fusion.without.items()}
    boot = paired_bootstrap(y_test, {**preds, **ablated}, len(classes), n_resamples, seed, kl) if preds else {}
    for name in probs:
        metrics.update(metric_values(boot[name], len(test), classes, name))
    metrics.update(gain_values(boot, len(test)))
    if fusion is not None:
        rows, per_field = field_rows(boot, fusion.gates, fusion.test_mask, fusion.field_names, len(test))
        metrics.update(per_field)
        tables["field contribution"] = rows
        details["field_contribution"] = {r["source"]: r for r in rows}
    details["bootstrap"] = {"kind": "items (paired across protocols)", "resamples": n_resamples,
                            "seed": seed}


def evaluate(req: EvalRequest) -> FamilyOutput:
    p = req.protocol
    check_protocol(p)
    ds = req.dataset
    classes = list(ds.classes)
    k = len(classes)
    seed = int(req.seed)
    protocols = [x for x in PROTOCOLS if x in p["protocols"]]
    probes = [x for x in protocols if x != "zero_shot"]
    metrics: dict[str, MetricValue] = {}
    details: dict[str, Any] = {"classes": classes, "label_distributions": ds.distributions is not None,
                               "protocols": protocols}
    details.update({key: v for key, v in ds.meta.items() if key in META_KEYS})
    splits, split_info = _splits_for(ds, p, probes, seed)
    details.update(split_info)
    test = splits["test"]
    targets = (torch.from_numpy(ds.distributions).float() if ds.distributions is not None
               else torch.eye(k)[torch.from_numpy(ds.labels)])
    image_emb = _image_embeddings(req.encoder, ds, np.arange(len(ds)) if probes else test)

    probs: dict[str, np.ndarray] = {}
    if "zero_shot" in protocols:
        cos = zero_shot_scores(req.encoder, image_emb[test], classes, p["templates"], p["class_prompts"])
        probs["zero_shot"] = torch.softmax(float(p["zero_shot_logit_scale"]) * cos.double(), -1).numpy()
        details["zero_shot"] = {"templates": list(p["templates"]),
                                "class_prompts": {c: p["class_prompts"].get(c, c) for c in classes},
                                "logit_scale": float(p["zero_shot_logit_scale"])}
    common = dict(epochs=p["epochs"], patience=p["patience"], batch_size=p["batch_size"], seed=seed,
                  weight_decays=p["weight_decays"], device=req.device or "cpu",
                  memo=probe_memo(req, "metadata_sentiment", MEMO_VERSION))
    selection: dict[str, Any] = {}
    if "image_probe" in protocols:
        x = standardise(image_emb, splits["train"])
        fit = fit_probe(lambda: LinearHead(x.shape[1], k), [x], targets, splits["train"], splits["val"],
                        ds.labels[splits["val"]], lr=p["linear_lr"], key=("linear", x.shape[1], k),
                        **common)
        probs["image_probe"], _ = predict(fit.model, [x], test)
        selection["image_probe"] = _selection(fit)
    fusion = None
    if "fusion_probe" in protocols:
        fusion = _fusion_probe(req, image_emb, targets, splits, ds.labels, common, details)
        if fusion is None:
            why = "the dataset has no metadata for any protocol field " + str(list(p["fields"]))
            for metric in SCORES:
                metrics[f"fusion_probe/{metric}"] = MetricValue.not_applicable(why)
                if "image_probe" in protocols:
                    metrics[f"fusion_gain/{metric}"] = MetricValue.not_applicable(why)
        else:
            probs["fusion_probe"] = fusion.probs
            selection["fusion_probe"] = _selection(fusion.fit)
    details["selection"] = selection
    tables: dict[str, list[dict]] = {}
    _score(ds, probs, fusion, test, classes, p, seed, metrics, details, tables)
    tables["summary"] = [{"protocol": name, **{m: _round(metrics[f"{name}/{m}"].value)
                                               for m in (*SCORES, "F1_positive", "kl")
                                               if f"{name}/{m}" in metrics}}
                         for name in probs]
    tables["per-class accuracy"] = [{"class": c, **{name: _round(metrics[f"{name}/class_accuracy/{c}"].value)
                                                    for name in probs}} for c in classes]
    tables = {name: tables[name] for name in ("summary", "per-class accuracy", "field contribution")
              if name in tables}
    headline = [h for h in HEADLINE if h in metrics and metrics[h].value is not None]
    return FamilyOutput(metrics, headline, tables, details, int(len(test)))
