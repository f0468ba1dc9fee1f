"""The quality task: probes on AVA or the embedded set, scored against the MOS.

Per probe (``protocol.probes``): Error (mean absolute error) with Error_var and
Error_std (variance and std of the absolute errors), LCC (optionally
LCC_logistic), SRCC, KL and EMD between the test-set histograms of predicted and
true scores, NIMA_EMD with a distribution head (definitions in
:mod:`ctxbench.families.aesthetics.metrics`); ``gain/*`` = tag_aware - image_only
with paired-bootstrap CIs and p-values. The per-tag table uses the tag-aware pair
score under that tag.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...bootstrap import two_sided_p
from ...results import MetricValue
from ..contract import EvalRequest, FamilyOutput
from . import metrics as Q
from .features import encode, make_splits
from .probes import fit_probe, predict, zero_shot_scores
from .protocol import GAIN_METRICS, LOWER_IS_BETTER, SCALE_METRICS
from .scoring import bootstrap_metrics, metric_value, tag_table

PREDICTION_SAMPLE = 5000


def run_probes(req: EvalRequest, feats, splits) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Each probe's test predictions, and the validation selection of the trained ones."""
    p, ds, test = req.protocol, req.dataset, splits["test"]
    results: dict[str, dict[str, Any]] = {}
    selection: dict[str, Any] = {}
    for kind in p["probes"]:
        if kind == "zero_shot":
            results[kind] = {"image": zero_shot_scores(req.encoder, feats.image[test], p)}
            continue
        fitted = fit_probe(kind, ds, feats, splits, p, req.seed, req.device)
        results[kind] = predict(fitted.model, ds, feats, test, req.device)
        selection[kind] = fitted.info
        if results[kind]["tag_attention"] is not None:
            selection[kind]["mean_attention_on_tag_token"] = results[kind]["tag_attention"]
    return results, selection


def probe_metrics(p: dict[str, Any], preds, point, samples, mos, defs, seed) -> dict[str, MetricValue]:
    """``<probe>/<metric>`` values with their CIs (zero-shot: scale metrics not applicable)."""
    n = len(mos)
    metrics: dict[str, MetricValue] = {}
    for kind in preds:
        on_scale = kind != "zero_shot"
        for m, v in point[kind].items():
            note = defs[m]
            if m == "Error":
                note += (f"; var = {float(point[kind]['Error_var']):.4f} (Error_var), "
                         f"std = {float(point[kind]['Error_std']):.4f} (Error_std)")
            metrics[f"{kind}/{m}"] = metric_value(v, samples[kind][m], n, note)
        if not on_scale:
            for m in SCALE_METRICS:
                metrics[f"{kind}/{m}"] = MetricValue.not_applicable(
                    "zero-shot prompt scores are not on the MOS scale")
        if p["logistic_fit"] and on_scale:
            params, ok = Q.logistic4_fit(preds[kind], mos)
            mapped = Q.logistic4(preds[kind], params)
            rng = np.random.default_rng([seed, 0x1061])
            idx = rng.integers(0, n, size=(int(p["n_resamples"]), n))
            metrics[f"{kind}/LCC_logistic"] = metric_value(
                Q.lcc(mapped, mos), np.asarray(Q.lcc(mapped[idx], mos[idx])), n,
                defs["LCC_logistic"] + f" (params {np.round(params, 4).tolist()}, "
                f"{'converged' if ok else 'fit failed: start values used'}; CI with the fit fixed)")
    return metrics


def gain_metrics(p: dict[str, Any], point, samples, n: int) -> dict[str, MetricValue]:
    """``gain/<metric>`` = tag_aware - image_only, paired bootstrap CI and p-value."""
    out = {}
    for m in GAIN_METRICS + (("NIMA_EMD",) if p["distribution_head"] else ()):
        diff = samples["tag_aware"][m] - samples["image_only"][m]
        better = "lower" if m in LOWER_IS_BETTER else "higher"
        out[f"gain/{m}"] = metric_value(point["tag_aware"][m] - point["image_only"][m], diff, n,
                                        f"tag_aware - image_only {m} ({better} is better), paired "
                                        f"bootstrap over test images", float(two_sided_p(diff)[0]))
    return out


def headline_of(preds, metrics) -> list[str]:
    """Leaderboard columns: the tag-aware / image-only comparison, else each probe's."""
    if "image_only" in preds and "tag_aware" in preds:
        return ["tag_aware/SRCC", "tag_aware/LCC", "tag_aware/Error", "tag_aware/KL",
                "tag_aware/EMD", "image_only/SRCC", "image_only/LCC", "gain/SRCC"]
    headline = []
    for kind in preds:
        headline += [f"{kind}/{m}" for m in ("SRCC", "LCC", "Error", "KL", "EMD")
                     if metrics.get(f"{kind}/{m}") is not None
                     and metrics[f"{kind}/{m}"].value is not None]
    return headline[:8]


def prediction_sample(mos: np.ndarray, preds: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-image test predictions for the report's scatter plot: all of them, or an
    evenly spaced subset of PREDICTION_SAMPLE images for large test sets."""
    keep = np.arange(len(mos))
    if len(keep) > PREDICTION_SAMPLE:
        keep = np.linspace(0, len(mos) - 1, PREDICTION_SAMPLE).round().astype(int)
    out: dict[str, Any] = {"mos": np.round(mos[keep], 4).tolist()}
    out.update({k: np.round(v[keep], 4).tolist() for k, v in preds.items()})
    out["sampled"] = f"{len(keep)} of {len(mos)} test images"
    return out


def quality_details(p, ds, splits, selection, defs, feats, mos, preds) -> dict[str, Any]:
    """What the result's ``details`` hold (splits, selection, histograms, predictions)."""
    bins, (lo, hi) = int(p["hist_bins"]), (float(x) for x in p["hist_range"])
    details = {
        "dataset": ds.name, "dataset_report": ds.report.to_json(),
        "splits": {k: int(len(v)) for k, v in splits.items()},
        "split_source": "official list" if (ds.split != "").any() else
                        f"seeded split stratified by tag 1 (test_fraction={p['test_fraction']})",
        "selection": selection, "definitions": defs,
        "tag_texts": {str(k): v for k, v in feats.tag_text.items()},
        "scoring": "image score = mean of its (image, tag) pair scores",
        "test_mos": {"mean": float(mos.mean()), "std": float(mos.std())},
        "predicted_histograms": {k: Q.score_histogram(v, bins, lo, hi).tolist()
                                 for k, v in preds.items() if k != "zero_shot"},
        "true_histogram": Q.score_histogram(mos, bins, lo, hi).tolist(),
    }
    if "zero_shot" in preds:
        details["zero_shot_prompts"] = p["zero_shot_prompts"]
    details["predictions"] = prediction_sample(mos, preds)
    return details


def evaluate_quality(req: EvalRequest) -> FamilyOutput:
    """Train and score every probe of ``protocol.probes`` on the dataset's splits."""
    p, ds, seed = req.protocol, req.dataset, req.seed
    feats = encode(req.encoder, ds, p)
    splits = make_splits(ds, p, seed)
    test = splits["test"]
    mos = ds.mos[test]
    results, selection = run_probes(req, feats, splits)
    preds = {k: r["image"] for k, r in results.items()}
    on_scale = {k: k != "zero_shot" for k in preds}
    dists = {k: r.get("dist") for k, r in results.items()}
    point, samples = bootstrap_metrics(preds, mos, p, seed, on_scale, dists, ds.distribution[test])
    defs = Q.definitions(int(p["hist_bins"]), *(float(x) for x in p["hist_range"]),
                         float(p["kl_epsilon"]), float(p["emd_r"]))
    n = len(test)
    metrics = probe_metrics(p, preds, point, samples, mos, defs, seed)
    if "image_only" in preds and "tag_aware" in preds:
        metrics.update(gain_metrics(p, point, samples, n))
    details = quality_details(p, ds, splits, selection, defs, feats, mos, preds)
    tables = {"per_tag": tag_table(ds, test, results, int(p["min_tag_test"]))}
    return FamilyOutput(metrics=metrics, headline=headline_of(preds, metrics), tables=tables,
                        details=details, n=n)
