"""aesthetics: tag-aware image quality assessment (SPEC §5; Sugiura & Yamauchi,
"テキストタグを併用した画像の品質評価モデルの提案", seeds/004_*).

Two kinds of task share this evaluator:

Quality (an :class:`~ctxbench.families.aesthetics.data.AestheticsDataset`: AVA or the embedded
set). Protocols on the frozen backend's cached, L2-normalised embeddings:

- ``image_only``: MLP on the image embedding -> score (the paper's "Ours (w/o Text)");
- ``tag_aware``: image and tag-text embeddings -> cross-attention -> MLP -> score
  (the paper's model, §3), see :mod:`ctxbench.families.aesthetics.heads`;
- ``zero_shot`` (a reference, not in the paper): ``cos(x, "a beautiful photo") -
  cos(x, "an ugly photo")``; it is not on the MOS scale, so only LCC and SRCC.

Both probes are trained on (image, tag) pairs, the paper's training unit, with the
paper's loss (Eq. 1): a RankNet term over pairs of images sharing a tag (ranked by
MOS, near ties within ``tie_margin`` broken by image-tag cosine similarity) plus
``mse_weight`` (lambda) times the MSE; ``loss: mse`` keeps the MSE only. With
``distribution_head: true`` a 10-bin vote distribution is also learned (NIMA's EMD
loss, weight ``emd_weight``) and NIMA's per-image EMD is reported. Training uses
:func:`ctxbench.probe.train_probe`; the epoch and the ``lr`` / ``weight_decay`` /
``hidden`` grid are chosen on the validation split only (``select_metric``).

An image's score is the mean of its (image, tag) pair scores (the paper scores
pairs; averaging puts both probes on the same test images). The per-tag table uses
the pair score under that tag.

Metrics (definitions in :mod:`ctxbench.families.aesthetics.metrics`; each MetricValue's ``note``
says which is used): Error (+ Error_std), LCC (optionally LCC_logistic), SRCC, KL
and EMD between the test-set histograms of predicted and true scores, NIMA_EMD with a
distribution head, and ``gain/*`` = tag_aware - image_only with paired-bootstrap
CIs and p-values. CIs: percentile bootstrap over test images (``n_resamples``).

Splits: the dataset's official test list when it has one (AVA ``generic_test.jpgl``;
the paper itself drew 1,350 test images) else a seeded split stratified by the first
tag (``test_fraction``); the validation split (``val_fraction`` of the rest,
stratified the same way) is the only one used for selection.

Parameter sweep (a :class:`~ctxbench.families.aesthetics.data.ParamSweepDataset`; the paper's
§4.2 CFG experiment): every image is scored and the Spearman correlation between
score and parameter is reported per prompt and averaged over prompts. Scorers:

- ``zero_shot``: the prompt pair above (no training data needed);
- probes (``scorer_probes``) trained exactly as above on the train/val splits of the
  task named by ``scorer_task`` (a task file of this family found in the same tasks
  tree, e.g. ``scorer_task: aesthetics_synthetic``; its own protocol sets the
  training options). The tag-aware probe uses the prompt text as the tag.

``scorer: auto`` runs zero-shot always and the probes when ``scorer_task`` is set;
``probe`` / ``zero_shot`` / ``both`` force a choice. ``agreement`` = Spearman x the
expected sign (``param_direction``: +1 for CFG scale, -1 for a degradation level;
``auto`` takes the dataset's own, else +1).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.functional import normalize

from ...bootstrap import two_sided_p
from .data import (AVA_OPTIONS, SWEEP_OPTIONS, AestheticsDataset, ParamSweepDataset,
                            load_ava, load_param_sweep)
from ...errors import CtxbenchError, TaskConfigError
from ...hooks import hookimpl
from . import metrics as Q
from ...probe import ProbeConfig, select_on_validation, train_probe
from ...results import MetricValue
from ...registrations import FamilySpec, LoaderSpec, MetricSpec
from .heads import HEADS, emd_loss, paper_loss
from ..contract import EvalRequest, FamilyOutput

FAMILY = "aesthetics"
PROBES = ("image_only", "tag_aware", "zero_shot")
REF = "Sugiura & Yamauchi (seeds/004), Table 1; NIMA (Talebi & Milanfar, TIP 2018)"

PROTOCOL_DEFAULTS: dict[str, Any] = {
    "probes": ["image_only", "tag_aware", "zero_shot"],
    "loss": "paper",                 # "paper": ranking + mse_weight * MSE (Eq. 1); "mse"
    "mse_weight": 1.0,               # lambda of Eq. 1
    "tie_margin": 0.05,              # |MOS_i - MOS_j| <= this: order by image-tag similarity
    "distribution_head": False,      # also learn a 10-bin vote distribution (EMD loss)
    "emd_weight": 1.0,
    "hidden": 256,                   # MLP width (a list makes it part of the grid)
    "attn_dim": 256,
    "attn_heads": 4,
    "dropout": 0.1,
    "epochs": 100,
    "lr": 1e-3,                      # scalar or list (grid, selected on validation)
    "weight_decay": 1e-4,            # scalar or list
    "batch_size": 256,
    "patience": 10,
    "select_metric": "srcc",         # validation score: srcc | lcc | neg_mae
    "val_fraction": 0.1,
    "test_fraction": 0.2,            # only without an official test list
    "tag_template": "{tag}",         # text encoded for a tag (the paper: the tag word)
    "no_tag_text": "a photo",        # tag text of images without any tag
    "hist_bins": 10,
    "hist_range": [0.5, 10.5],
    "kl_epsilon": 1e-4,
    "emd_r": 2.0,
    "logistic_fit": False,           # also report LCC after a 4-parameter logistic fit
    "n_resamples": 1000,
    "min_tag_test": 5,               # per-tag table: tags with at least this many test images
    "scorer": "auto",                # sweeps: auto | probe | zero_shot | both
    "scorer_task": None,             # sweeps: task whose train/val splits train the probes
    "scorer_probes": ["tag_aware", "image_only"],
    "zero_shot_prompts": {"positive": ["a beautiful photo"], "negative": ["an ugly photo"]},
    "param_direction": "auto",       # sweeps: +1, -1 or auto
}


def _check_protocol(p: dict[str, Any], where: Any = "task") -> None:
    """Refuse unknown choices, naming the task file and the protocol field."""
    bad = [x for x in _as_list(p["probes"]) if x not in PROBES]
    if bad:
        raise TaskConfigError(where, "protocol.probes", f"unknown probe(s) {bad}",
                              f"allowed: {list(PROBES)}")
    bad = [x for x in _as_list(p["scorer_probes"]) if x not in HEADS]
    if bad:
        raise TaskConfigError(where, "protocol.scorer_probes", f"unknown probe(s) {bad}",
                              f"allowed: {list(HEADS)}")
    choices = {"loss": ("paper", "mse"), "select_metric": ("srcc", "lcc", "neg_mae"),
               "scorer": ("auto", "probe", "zero_shot", "both")}
    for key, allowed in choices.items():
        if p[key] not in allowed:
            raise TaskConfigError(where, f"protocol.{key}", f"{p[key]!r} is not allowed",
                                  f"one of {allowed}")
    if p["param_direction"] not in ("auto", 1, -1):
        raise TaskConfigError(where, "protocol.param_direction", f"{p['param_direction']!r}",
                              "use 1, -1 or auto")
    for key in ("val_fraction", "test_fraction"):
        if not 0 < float(p[key]) < 1:
            raise TaskConfigError(where, f"protocol.{key}", f"{p[key]!r} must be in (0, 1)")


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


# ----------------------------------------------------------------------------- features
@dataclass
class Features:
    """L2-normalised embeddings: images [N, D]; tag texts [T, D] with row 0 = no tag."""

    image: torch.Tensor
    tag: torch.Tensor
    tag_row: np.ndarray            # tag id -> row of ``tag`` (0 for unknown / none)
    tag_text: dict[int, str]


def tag_texts(tag_names: dict[int, str], protocol: dict[str, Any]) -> dict[int, str]:
    out = {0: str(protocol["no_tag_text"])}
    out.update({int(k): str(protocol["tag_template"]).format(tag=v) for k, v in tag_names.items()})
    return out


def encode(enc, ds: AestheticsDataset, protocol: dict[str, Any]) -> Features:
    texts = tag_texts(ds.tag_names, protocol)
    ids = sorted(texts)
    row = np.zeros(max(ids) + 1, dtype=np.int64)
    row[ids] = np.arange(len(ids))
    return Features(normalize(enc.images(ds.refs), dim=-1),
                    normalize(enc.texts([texts[i] for i in ids]), dim=-1), row, texts)


def image_tag_pairs(tags: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image index, tag id) for each tag of each image in ``idx``; an image without
    tags gives one pair with tag 0."""
    t = tags[idx]
    has = t > 0
    none = ~has.any(axis=1)
    rows, slots = np.nonzero(has | np.stack([none, np.zeros_like(none)], axis=1))
    return idx[rows], t[rows, slots]


# ----------------------------------------------------------------------------- splits
def _split_by_label(idx: np.ndarray, labels: np.ndarray, fraction: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (rest, part) with ``round(fraction * n)`` of each label in ``part``
    (at least one when a label has >= 3 items)."""
    part = []
    for lab in np.unique(labels):
        members = idx[labels == lab]
        members = members[rng.permutation(len(members))]
        k = int(round(fraction * len(members)))
        part.append(members[:max(k, 1) if len(members) >= 3 else k])
    part = np.sort(np.concatenate(part)) if part else np.zeros(0, np.int64)
    return np.setdiff1d(idx, part), part


def make_splits(ds: AestheticsDataset, protocol: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """train / val / test image indices (module docstring)."""
    rng = np.random.default_rng([seed, 0xAE5])
    labels = ds.tags[:, 0]
    everything = np.arange(len(ds))
    if (ds.split == "").all():
        pool, test = _split_by_label(everything, labels, float(protocol["test_fraction"]), rng)
    else:
        test = np.flatnonzero(ds.split == "test")
        pool = np.flatnonzero((ds.split == "trainval") | (ds.split == ""))
    train, val = _split_by_label(pool, labels[pool], float(protocol["val_fraction"]), rng)
    for name, part in (("train", train), ("validation", val), ("test", test)):
        if len(part) < 3:
            raise CtxbenchError(f"{ds.name}: the {name} split has {len(part)} images; the "
                                f"aesthetics protocols need at least 3 (more data or other "
                                f"val_fraction / test_fraction)")
    return {"train": train, "val": val, "test": test}


# ----------------------------------------------------------------------------- probes
@dataclass
class Fitted:
    kind: str
    model: torch.nn.Module
    info: dict[str, Any]


def _pair_tensors(ds: AestheticsDataset, feats: Features, idx: np.ndarray, device: str):
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


def _val_score(pred: np.ndarray, mos: np.ndarray, metric: str) -> float:
    if metric == "neg_mae":
        return -Q.abs_error(pred, mos)[0]
    value = Q.srcc(pred, mos) if metric == "srcc" else Q.lcc(pred, mos)
    return -1.0 if not np.isfinite(value) else float(value)


def fit_probe(kind: str, ds: AestheticsDataset, feats: Features, splits: dict[str, np.ndarray],
              protocol: dict[str, Any], seed: int, device: str = "cpu") -> Fitted:
    """Train one probe on the train pairs; epoch and grid chosen on validation only."""
    train = _pair_tensors(ds, feats, splits["train"], device)
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
        return _val_score(predict(model, ds, feats, val_idx, device)["image"], val_mos,
                          protocol["select_metric"])

    grid = [dict(zip(("lr", "weight_decay", "hidden"), combo)) for combo in itertools.product(
        _as_list(protocol["lr"]), _as_list(protocol["weight_decay"]), _as_list(protocol["hidden"]))]

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
        return train_probe(model, len(train["mos"]), batch_loss, val_score, config, device)

    best_params, result, scored = select_on_validation(grid, fit)
    info = {"best_params": best_params, "best_epoch": result.best_epoch,
            f"best_val_{protocol['select_metric']}": result.best_val,
            "epochs_run": len(result.history), "n_train_pairs": int(len(train["mos"])),
            "grid": [{**p, "val": v} for p, v in scored],
            "loss": ("ranking among same-tag pairs + lambda*MSE (Eq. 1), lambda="
                     f"{protocol['mse_weight']}, tie_margin={protocol['tie_margin']}"
                     if ranking else "MSE only")
            + (f" + {protocol['emd_weight']}*EMD(r={protocol['emd_r']}) distribution head"
               if dist_head else "")}
    return Fitted(kind, result.model, info)


def zero_shot_scores(enc, images: torch.Tensor, protocol: dict[str, Any]) -> np.ndarray:
    """``cos(x, mean positive prompt) - cos(x, mean negative prompt)`` (normalised)."""
    prompts = protocol["zero_shot_prompts"]
    pos = normalize(normalize(enc.texts(list(prompts["positive"])), dim=-1).mean(0), dim=0)
    neg = normalize(normalize(enc.texts(list(prompts["negative"])), dim=-1).mean(0), dim=0)
    return ((images @ pos) - (images @ neg)).double().numpy()


# ----------------------------------------------------------------------------- metrics
SCALE_METRICS = ("Error", "Error_std", "KL", "EMD")
LOWER_IS_BETTER = {"Error", "Error_std", "KL", "EMD", "NIMA_EMD"}


def _stats(pred: np.ndarray, true: np.ndarray, p: dict[str, Any], on_scale: bool,
           dist_pred=None, dist_true=None) -> dict[str, np.ndarray]:
    """All metrics along the last axis (so [B, n] resamples give [B] values)."""
    out = {"LCC": np.asarray(Q.lcc(pred, true)), "SRCC": np.asarray(Q.srcc(pred, true))}
    if on_scale:
        lo, hi = (float(x) for x in p["hist_range"])
        bins = int(p["hist_bins"])
        err, std = Q.abs_error(pred, true)
        out.update({"Error": np.asarray(err), "Error_std": np.asarray(std),
                    "KL": np.asarray(Q.histogram_kl(pred, true, bins, lo, hi, float(p["kl_epsilon"]))),
                    "EMD": np.asarray(Q.histogram_emd(pred, true, bins, lo, hi, float(p["emd_r"])))})
        if dist_pred is not None:
            out["NIMA_EMD"] = np.asarray(Q.emd(dist_pred, dist_true, float(p["emd_r"]))).mean(axis=-1)
    return out


def bootstrap_metrics(preds: dict[str, np.ndarray], mos: np.ndarray, p: dict[str, Any], seed: int,
                      on_scale: dict[str, bool], dists: dict[str, np.ndarray | None] | None = None,
                      true_dist: np.ndarray | None = None) -> tuple[dict, dict]:
    """Point values and bootstrap samples (test images resampled with replacement, the
    same resamples for every predictor so differences are paired)."""
    dists = dists or {}
    n, b_total = len(mos), int(p["n_resamples"])
    point = {k: _stats(v, mos, p, on_scale[k], dists.get(k), true_dist) for k, v in preds.items()}
    samples: dict[str, dict[str, list]] = {k: {m: [] for m in point[k]} for k in preds}
    rng = np.random.default_rng([seed, 0xB007])
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, b_total, chunk):
        idx = rng.integers(0, n, size=(min(chunk, b_total - start), n))
        for k, v in preds.items():
            d = dists.get(k)
            res = _stats(v[idx], mos[idx], p, on_scale[k], None if d is None else d[idx],
                         None if d is None else true_dist[idx])
            for m, arr in res.items():
                samples[k][m].append(arr)
    return point, {k: {m: np.concatenate(a) for m, a in ms.items()} for k, ms in samples.items()}


def _ci(samples: np.ndarray) -> tuple[float, float] | None:
    s = samples[np.isfinite(samples)]
    if s.size == 0:
        return None
    lo, hi = np.quantile(s, [0.025, 0.975])
    return float(lo), float(hi)


def _mv(value, samples, n, note, p_value=None) -> MetricValue:
    value = float(value)
    if not np.isfinite(value):
        return MetricValue.not_applicable(f"undefined on this test set ({note})")
    return MetricValue(value, _ci(samples), n, p_value, note)


def _clean(x):
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def tag_table(ds: AestheticsDataset, test: np.ndarray, results: dict[str, dict[str, Any]],
              min_n: int) -> list[dict[str, Any]]:
    """SRCC and Error per tag on the test split (tag-aware: the pair score under that tag)."""
    rows = []
    mos = ds.mos
    for tag_id, name in sorted(ds.tag_names.items()):
        members = test[(ds.tags[test] == tag_id).any(axis=1)]
        if len(members) < min_n:
            continue
        row: dict[str, Any] = {"tag": name, "n": int(len(members)),
                               "MOS_mean": float(mos[members].mean())}
        for kind, res in results.items():
            if kind == "zero_shot":
                pred = res["image"][np.searchsorted(test, members)]
                row[f"{kind}/SRCC"] = _clean(Q.srcc(pred, mos[members]))
                continue
            sel = res["pair_tag"] == tag_id
            pred, who = res["pair"][sel], res["pair_image"][sel]
            if kind == "image_only":
                pred = res["image"][np.searchsorted(test, who)]
            row[f"{kind}/SRCC"] = _clean(Q.srcc(pred, mos[who]))
            row[f"{kind}/Error"] = _clean(Q.abs_error(pred, mos[who])[0])
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- quality task
def evaluate_quality(req: EvalRequest) -> FamilyOutput:
    p, ds, seed = req.protocol, req.dataset, req.seed
    feats = encode(req.encoder, ds, p)
    splits = make_splits(ds, p, seed)
    test = splits["test"]
    mos = ds.mos[test]
    results: dict[str, dict[str, Any]] = {}
    selection: dict[str, Any] = {}
    for kind in p["probes"]:
        if kind == "zero_shot":
            results[kind] = {"image": zero_shot_scores(req.encoder, feats.image[test], p)}
            continue
        fitted = fit_probe(kind, ds, feats, splits, p, seed, req.device)
        results[kind] = predict(fitted.model, ds, feats, test, req.device)
        selection[kind] = fitted.info
        if results[kind]["tag_attention"] is not None:
            selection[kind]["mean_attention_on_tag_token"] = results[kind]["tag_attention"]
    preds = {k: r["image"] for k, r in results.items()}
    on_scale = {k: k != "zero_shot" for k in preds}
    dists = {k: r.get("dist") for k, r in results.items()}
    true_dist = ds.distribution[test]
    point, samples = bootstrap_metrics(preds, mos, p, seed, on_scale, dists, true_dist)
    defs = Q.definitions(int(p["hist_bins"]), *(float(x) for x in p["hist_range"]),
                         float(p["kl_epsilon"]), float(p["emd_r"]))
    n = len(test)
    metrics: dict[str, MetricValue] = {}
    for kind in preds:
        for m, v in point[kind].items():
            note = defs[m]
            if m == "Error":
                note += f"; std = {float(point[kind]['Error_std']):.4f}"
            metrics[f"{kind}/{m}"] = _mv(v, samples[kind][m], n, note)
        if not on_scale[kind]:
            for m in SCALE_METRICS:
                metrics[f"{kind}/{m}"] = MetricValue.not_applicable(
                    "zero-shot prompt scores are not on the MOS scale")
        if p["logistic_fit"] and on_scale[kind]:
            params, ok = Q.logistic4_fit(preds[kind], mos)
            mapped = Q.logistic4(preds[kind], params)
            rng = np.random.default_rng([seed, 0x1061])
            idx = rng.integers(0, n, size=(int(p["n_resamples"]), n))
            metrics[f"{kind}/LCC_logistic"] = _mv(
                Q.lcc(mapped, mos), np.asarray(Q.lcc(mapped[idx], mos[idx])), n,
                defs["LCC_logistic"] + f" (params {np.round(params, 4).tolist()}, "
                f"{'converged' if ok else 'fit failed: start values used'}; CI with the fit fixed)")
    headline = []
    if "image_only" in preds and "tag_aware" in preds:
        for m in ("Error", "LCC", "SRCC", "KL", "EMD") + (("NIMA_EMD",) if p["distribution_head"] else ()):
            diff = samples["tag_aware"][m] - samples["image_only"][m]
            better = "lower" if m in LOWER_IS_BETTER else "higher"
            metrics[f"gain/{m}"] = _mv(point["tag_aware"][m] - point["image_only"][m], diff, n,
                                       f"tag_aware - image_only {m} ({better} is better), paired "
                                       f"bootstrap over test images", float(two_sided_p(diff)[0]))
        headline = ["tag_aware/SRCC", "tag_aware/LCC", "tag_aware/Error", "tag_aware/KL",
                    "tag_aware/EMD", "image_only/SRCC", "image_only/LCC", "gain/SRCC"]
    else:
        for kind in preds:
            headline += [f"{kind}/{m}" for m in ("SRCC", "LCC", "Error", "KL", "EMD")
                         if metrics.get(f"{kind}/{m}") is not None
                         and metrics[f"{kind}/{m}"].value is not None]
        headline = headline[:8]
    details = {
        "dataset": ds.name, "dataset_report": ds.report.to_json(),
        "splits": {k: int(len(v)) for k, v in splits.items()},
        "split_source": "official list" if (ds.split != "").any() else
                        f"seeded split stratified by tag 1 (test_fraction={p['test_fraction']})",
        "selection": selection, "definitions": defs,
        "tag_texts": {str(k): v for k, v in feats.tag_text.items()},
        "scoring": "image score = mean of its (image, tag) pair scores",
        "test_mos": {"mean": float(mos.mean()), "std": float(mos.std())},
        "predicted_histograms": {
            k: Q.score_histogram(v, int(p["hist_bins"]), *(float(x) for x in p["hist_range"])).tolist()
            for k, v in preds.items() if on_scale[k]},
        "true_histogram": Q.score_histogram(mos, int(p["hist_bins"]),
                                            *(float(x) for x in p["hist_range"])).tolist(),
    }
    if "zero_shot" in preds:
        details["zero_shot_prompts"] = p["zero_shot_prompts"]
    details["predictions"] = _prediction_sample(mos, preds)
    tables = {"per_tag": tag_table(ds, test, results, int(p["min_tag_test"]))}
    return FamilyOutput(metrics=metrics, headline=headline, tables=tables, details=details, n=n)


PREDICTION_SAMPLE = 5000


def _prediction_sample(mos: np.ndarray, preds: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-image test predictions for the report's scatter plot: all of them, or an
    evenly spaced subset of PREDICTION_SAMPLE images for large test sets."""
    keep = np.arange(len(mos))
    if len(keep) > PREDICTION_SAMPLE:
        keep = np.linspace(0, len(mos) - 1, PREDICTION_SAMPLE).round().astype(int)
    out: dict[str, Any] = {"mos": np.round(mos[keep], 4).tolist()}
    out.update({k: np.round(v[keep], 4).tolist() for k, v in preds.items()})
    out["sampled"] = f"{len(keep)} of {len(mos)} test images"
    return out


# ----------------------------------------------------------------------------- sweeps
def _quality_loaders():
    from .synthetic import load_quality
    return {"ava": load_ava, "synthetic_aesthetics": load_quality}


def find_task_file(name: str, near: Path) -> Path:
    """The task file named ``name`` in the tasks tree holding ``near`` (its folder and
    the folder above, recursively)."""
    import yaml

    folders = [near.parent, near.parent.parent]
    seen: set[Path] = set()
    for folder in folders:
        for path in sorted(folder.rglob("*.yaml")):
            if path in seen or path.name.startswith("_"):
                continue
            seen.add(path)
            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(doc, dict) and doc.get("task") == name:
                return path
    raise TaskConfigError(near, "protocol.scorer_task", f"no task named {name!r} under "
                          f"{' or '.join(str(f) for f in folders)}",
                          "name a task of the aesthetics family, e.g. aesthetics_synthetic")


def load_scorer_task(name: str, req: EvalRequest):
    """(dataset, protocol, task spec) of the training task named by ``scorer_task``."""
    from ...registrations import LoadContext
    from ...task_config import parse_task

    spec = parse_task(find_task_file(name, Path(req.task.path)))
    loaders = _quality_loaders()
    if spec.family != FAMILY or spec.loader not in loaders:
        raise TaskConfigError(req.task.path, "protocol.scorer_task",
                              f"task {name!r} (loader {spec.loader!r}) is not an aesthetics "
                              f"quality task", f"use one with loader {' or '.join(loaders)}")
    ds = loaders[spec.loader](spec.options, LoadContext(spec.name, spec.path, req.seed))
    protocol = {**PROTOCOL_DEFAULTS, **spec.protocol}
    _check_protocol(protocol, spec.path)
    return ds, protocol, spec


def sweep_rho(scores: np.ndarray, params: np.ndarray, groups: np.ndarray, n_resamples: int,
              seed: int) -> tuple[dict[str, float], float, np.ndarray]:
    """Spearman(score, param) per group, their mean, and bootstrap samples of the mean
    (items resampled within each group)."""
    rng = np.random.default_rng([seed, 0x5EE9])
    per, boots = {}, []
    for g in sorted(set(groups.tolist())):
        sel = np.flatnonzero(groups == g)
        per[g] = float(Q.srcc(scores[sel], params[sel]))
        idx = sel[rng.integers(0, len(sel), size=(n_resamples, len(sel)))]
        boots.append(np.asarray(Q.srcc(scores[idx], params[idx])))
    vals = np.array(list(per.values()))
    with np.errstate(all="ignore"):
        return per, float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan"), \
            np.nanmean(np.stack(boots), axis=0)


def evaluate_sweep(req: EvalRequest) -> FamilyOutput:
    p, ds, seed = req.protocol, req.dataset, req.seed
    enc = req.encoder
    images = normalize(enc.images(ds.refs), dim=-1)
    scores: dict[str, np.ndarray] = {}
    details: dict[str, Any] = {"dataset": ds.name, "dataset_report": ds.report.to_json(),
                               "param_name": ds.param_name, "prompts": dict(ds.prompts)}
    mode, task_name = p["scorer"], p["scorer_task"]
    if mode in ("probe", "both") and not task_name:
        raise TaskConfigError(req.task.path, "protocol.scorer_task",
                              f"scorer: {mode} needs a training task",
                              "set scorer_task (e.g. aesthetics_synthetic) or use scorer: zero_shot")
    if mode in ("auto", "zero_shot", "both"):
        scores["zero_shot"] = zero_shot_scores(enc, images, p)
        details["zero_shot_prompts"] = p["zero_shot_prompts"]
    if task_name and mode in ("auto", "probe", "both"):
        train_ds, tp, spec = load_scorer_task(str(task_name), req)
        feats = encode(enc, train_ds, tp)
        splits = make_splits(train_ds, tp, seed)
        prompt_texts = {pid: str(tp["tag_template"]).format(tag=t) for pid, t in ds.prompts.items()}
        order = sorted(prompt_texts)
        prompt_emb = normalize(enc.texts([prompt_texts[k] for k in order]), dim=-1)
        position = {pid: i for i, pid in enumerate(order)}
        rows = torch.as_tensor([position[pid] for pid in ds.prompt_ids], dtype=torch.long)
        details["scorer_task"] = {"task": spec.name, "task_hash": spec.hash,
                                  "splits": {k: int(len(v)) for k, v in splits.items()},
                                  "prompt_tag_texts": prompt_texts, "selection": {}}
        for kind in p["scorer_probes"]:
            fitted = fit_probe(kind, train_ds, feats, splits, tp, seed, req.device)
            with torch.no_grad():
                out, _ = fitted.model(images.to(req.device), prompt_emb[rows].to(req.device))
            scores[kind] = out.double().cpu().numpy()
            details["scorer_task"]["selection"][kind] = fitted.info
    if not scores:
        raise TaskConfigError(req.task.path, "protocol.scorer", f"{mode!r} selected no scorer",
                              "set scorer_task or use scorer: zero_shot")
    direction = p["param_direction"]
    if direction == "auto":
        direction = int(ds.meta.get("expected_sign", 1))
    details["param_direction"] = direction
    metrics: dict[str, MetricValue] = {}
    per_prompt: dict[str, dict[str, float]] = {}
    n = len(ds)
    for kind, s in scores.items():
        per, mean, boot = sweep_rho(s, ds.params, ds.prompt_ids, int(p["n_resamples"]), seed)
        per_prompt[kind] = per
        note = (f"mean over {len(per)} prompts of Spearman(score, {ds.param_name}); CI: items "
                f"resampled within prompts")
        metrics[f"{kind}/rho"] = _mv(mean, boot, n, note)
        metrics[f"{kind}/agreement"] = _mv(direction * mean, direction * boot, n,
                                           f"{direction:+d} x {kind}/rho (expected direction: "
                                           f"{'higher' if direction > 0 else 'lower'} {ds.param_name}"
                                           f" = better); 1 = perfect ordering")
    table = []
    for pid in sorted(ds.prompts):
        sel = ds.prompt_ids == pid
        row: dict[str, Any] = {"prompt_id": pid, "prompt": ds.prompts[pid], "n": int(sel.sum())}
        row.update({f"{k}/rho": _clean(per_prompt[k][pid]) for k in scores})
        table.append(row)
    by_param = []
    for value in np.unique(ds.params):
        sel = ds.params == value
        row = {ds.param_name: float(value), "n": int(sel.sum())}
        for k, s in scores.items():
            row[f"{k}/mean"] = float(s[sel].mean())
            row[f"{k}/std"] = float(s[sel].std())
        by_param.append(row)
    order = sorted(scores, key=lambda k: k == "zero_shot")     # trained scorers first
    headline = [f"{k}/agreement" for k in order] + [f"{k}/rho" for k in order]
    return FamilyOutput(metrics=metrics, headline=headline[:8],
                        tables={"per_prompt": table, "score_by_param": by_param},
                        details=details, n=n)


def evaluate(req: EvalRequest) -> FamilyOutput:
    protocol = {**PROTOCOL_DEFAULTS, **req.protocol}
    _check_protocol(protocol, getattr(req.task, "path", "task"))
    req.protocol = protocol
    if isinstance(req.dataset, ParamSweepDataset):
        return evaluate_sweep(req)
    if isinstance(req.dataset, AestheticsDataset):
        return evaluate_quality(req)
    raise CtxbenchError(f"aesthetics: unsupported dataset type {type(req.dataset).__name__} "
                        f"(expected AestheticsDataset or ParamSweepDataset)")


# ----------------------------------------------------------------------------- hooks
def _load_synthetic_quality(options, ctx):
    from .synthetic import load_quality
    return load_quality(options, ctx)


def _load_synthetic_sweep(options, ctx):
    from .synthetic import load_sweep
    return load_sweep(options, ctx)


@hookimpl
def ctxbench_families():
    return [FamilySpec(
        plots=_load_plots, name=FAMILY, evaluate=evaluate,
        description="tag-aware image quality: image-only and tag-aware probes (ranking + "
                    "lambda*MSE), Error/LCC/SRCC/KL/EMD, per-tag table; parameter sweeps "
                    "(Spearman with CFG scale / degradation)",
        protocol_defaults=PROTOCOL_DEFAULTS,
        metrics=("*/Error", "*/Error_std", "*/LCC", "*/LCC_logistic", "*/SRCC", "*/KL", "*/EMD",
                 "*/NIMA_EMD", "gain/*", "*/rho", "*/agreement"))]


@hookimpl
def ctxbench_dataset_loaders():
    from .synthetic import QUALITY_OPTIONS, SWEEP_OPTIONS as SYNTH_SWEEP_OPTIONS
    return [
        LoaderSpec("ava", load_ava, FAMILY, "AVA (AVA.txt, tags.txt, challenges.txt, official "
                   "lists; or a Hugging Face datasets copy)", dict(AVA_OPTIONS)),
        LoaderSpec("param_sweep", load_param_sweep, FAMILY, "generated images labelled with a "
                   "generation parameter (<root>/<prompt_id>/<param>/<image> or a manifest CSV)",
                   dict(SWEEP_OPTIONS)),
        LoaderSpec("synthetic_aesthetics", _load_synthetic_quality, FAMILY,
                   "embedded AVA-like set from the synthetic world (quality knobs, votes, tags)",
                   dict(QUALITY_OPTIONS)),
        LoaderSpec("synthetic_degradation_sweep", _load_synthetic_sweep, FAMILY,
                   "embedded stand-in for the CFG experiment: scenes at increasing degradation",
                   dict(SYNTH_SWEEP_OPTIONS)),
    ]


@hookimpl
def ctxbench_metrics():
    return [
        MetricSpec("quality.error", Q.abs_error, "mean absolute error |pred - MOS| and its std",
                   FAMILY, higher_is_better=False, reference=REF),
        MetricSpec("quality.lcc", Q.lcc, "Pearson linear correlation (no logistic fit)", FAMILY,
                   reference=REF),
        MetricSpec("quality.lcc_logistic", Q.lcc_logistic,
                   "Pearson after the VQEG 4-parameter logistic fit", FAMILY,
                   reference="VQEG Phase I final report (2000), 4-parameter logistic"),
        MetricSpec("quality.srcc", Q.srcc, "Spearman rank correlation (average ranks for ties)",
                   FAMILY, reference=REF),
        MetricSpec("quality.hist_kl", Q.histogram_kl,
                   "KL(true || predicted) between test-set score histograms (eps-smoothed)",
                   FAMILY, higher_is_better=False, reference=REF),
        MetricSpec("quality.hist_emd", Q.histogram_emd,
                   "NIMA-form EMD (r=2) between test-set score histograms", FAMILY,
                   higher_is_better=False, reference=REF),
        MetricSpec("quality.nima_emd", Q.nima_emd,
                   "per-image EMD (r=2) between predicted and true 10-bin vote distributions",
                   FAMILY, higher_is_better=False,
                   reference="NIMA (Talebi & Milanfar, IEEE TIP 2018), Eq. 1"),
    ]


def _load_plots():
    from .plots import PLOTS
    return PLOTS
