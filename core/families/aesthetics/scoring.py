"""Metric values with bootstrap intervals, and the per-tag table, of a quality task.

Definitions of the metrics are in :mod:`ctxbench.families.aesthetics.metrics`.
CIs: percentile bootstrap over test images (``n_resamples``), the same resamples for
every probe so that ``gain/*`` differences are paired.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...results import MetricValue
from . import metrics as Q
from .data import AestheticsDataset


def quality_stats(pred: np.ndarray, true: np.ndarray, p: dict[str, Any], on_scale: bool,
                  dist_pred=None, dist_true=None) -> dict[str, np.ndarray]:
    """All metrics along the last axis (so [B, n] resamples give [B] values)."""
    out = {"LCC": np.asarray(Q.lcc(pred, true)), "SRCC": np.asarray(Q.srcc(pred, true))}
    if on_scale:
        lo, hi = (float(x) for x in p["hist_range"])
        bins = int(p["hist_bins"])
        err, std = Q.abs_error(pred, true)
        out.update({"Error": np.asarray(err),
                    "Error_var": np.asarray(Q.abs_error_variance(pred, true)),
                    "Error_std": np.asarray(std),
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
    point = {k: quality_stats(v, mos, p, on_scale[k], dists.get(k), true_dist)
             for k, v in preds.items()}
    samples: dict[str, dict[str, list]] = {k: {m: [] for m in point[k]} for k in preds}
    rng = np.random.default_rng([seed, 0xB007])
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, b_total, chunk):
        idx = rng.integers(0, n, size=(min(chunk, b_total - start), n))
        for k, v in preds.items():
            d = dists.get(k)
            res = quality_stats(v[idx], mos[idx], p, on_scale[k], None if d is None else d[idx],
                                None if d is None else true_dist[idx])
            for m, arr in res.items():
                samples[k][m].append(arr)
    return point, {k: {m: np.concatenate(a) for m, a in ms.items()} for k, ms in samples.items()}


def percentile_ci(samples: np.ndarray) -> tuple[float, float] | None:
    """2.5 % and 97.5 % quantiles of the finite bootstrap samples (None if none)."""
    s = samples[np.isfinite(samples)]
    if s.size == 0:
        return None
    lo, hi = np.quantile(s, [0.025, 0.975])
    return float(lo), float(hi)


def metric_value(value, samples, n, note, p_value=None) -> MetricValue:
    """A MetricValue with its percentile CI; not applicable when ``value`` is not finite."""
    value = float(value)
    if not np.isfinite(value):
        return MetricValue.not_applicable(f"undefined on this test set ({note})")
    return MetricValue(value, percentile_ci(samples), n, p_value, note)


def json_number(x):
    """numpy scalars as Python numbers, non-finite floats as None."""
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
                row[f"{kind}/SRCC"] = json_number(Q.srcc(pred, mos[members]))
                continue
            sel = res["pair_tag"] == tag_id
            pred, who = res["pair"][sel], res["pair_image"][sel]
            if kind == "image_only":
                pred = res["image"][np.searchsorted(test, who)]
            row[f"{kind}/SRCC"] = json_number(Q.srcc(pred, mos[who]))
            row[f"{kind}/Error"] = json_number(Q.abs_error(pred, mos[who])[0])
        rows.append(row)
    return rows
