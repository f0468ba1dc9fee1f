"""Scoring of the domain_adaptation family: metrics, paired bootstrap, seed spread, matrices.

Every trained protocol (source_only, adapt) is trained ``training_seeds`` times per
pair (seeds vary the head's initialisation and batch order; data splits,
pseudo-labels and certainties are fixed). Metrics on the target test split, each
the mean over those training runs:

``top1``          overall top-1 accuracy (TRUST's figure);
``mpca``          GeoNet's official mean per-class accuracy: per-class accuracy of
                  every class of the dataset, 0 for a class absent from the test
                  split, averaged over all classes (Kalluri et al., CVPR 2023,
                  official ``percls_accuracy(num_class).mean()``);
``mpca_present``  the mean over the classes present in the test split
                  (scikit-learn's balanced accuracy); equal to ``mpca`` when every
                  class has a test item;
``source_top1``   the same models' in-domain top-1 on the source test split;
``drop``          source_top1 - top1.

For ``adapt`` against its control ``source_only`` (the same training run with the
adaptation weights at 0, see model.train_heads): ``gain`` = adapt top1 -
source_only top1, 95% CI and p-value over test items (paired bootstrap);
``gain_seeds`` the same mean with a 95% t-interval and a one-sample t-test over the
per-seed gains (the training noise; n = training_seeds); ``gain_significant`` +1 /
-1 when the gain is positive / negative beyond both sources of noise (both p-values
below 0.05; its p-value is the larger one, an intersection-union test), else 0;
``gain_mpca`` and ``gain_mpca_seeds`` the same for ``mpca``.

Names are ``"<source>-><target>/<protocol>/<metric>"``; with several pairs,
``mean/...`` averages over pairs (the papers' "average"). Item CIs: ``top1`` and
``source_top1`` by the item bootstrap (core/bootstrap.cluster_means), ``mpca`` by the
within-class bootstrap (metrics.class_stratified_bootstrap); all predictors scored
on the same test set share one set of resamples (paired), distinct test sets are
resampled independently (seeded by domain name).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...bootstrap import cluster_means, two_sided_p
from ...results import MetricValue
from .metrics import class_stratified_bootstrap, mean_per_class_accuracy, top1_accuracy

ALPHA = 0.05
KIND = {"zero_shot": "zs", "source_only": "so", "adapt": "ad"}


def domain_seed(seed: int, name: str) -> int:
    """A seed for one named random stream (e.g. ``"test/<domain>"``) of run ``seed``."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**32)


def model_key(proto: str, s: str, t: str):
    """The key of a protocol's predictor for pair (s, t): zero_shot has one per run."""
    return "zs" if proto == "zero_shot" else (KIND[proto], s, t)


@dataclass
class Scored:
    """One predictor (its training runs together) on one test domain."""

    top1: np.ndarray          # [B] replicates of the run-mean top-1
    top1_point: float
    mpca: np.ndarray          # [B] official mean per-class accuracy
    mpca_point: float
    present_point: float      # mean over present classes
    present: np.ndarray
    seeds_top1: np.ndarray    # [R] top-1 of each training run (fixed test set)
    seeds_mpca: np.ndarray    # [R] official mpca of each training run


def score_domains(preds: dict, labels_test: dict, n_resamples: int, seed: int,
                  n_classes: int) -> dict[tuple, Scored]:
    """Every predictor on every test domain, bootstrapped together per domain (paired).
    A predictor's per-item score is the share of its training runs right on the item."""
    out: dict[tuple, Scored] = {}
    for d, y in labels_test.items():
        keys = [key for (key, dom) in preds if dom == d]
        if not keys:
            continue
        scores = np.stack([(preds[(key, d)] == y[None]).mean(0) for key in keys], axis=1)  # [N, M]
        dseed = domain_seed(seed, "test/" + d)
        top = cluster_means(scores, None, n_resamples, dseed)
        _, present = class_stratified_bootstrap(scores, y, n_resamples, dseed)
        share = len(np.unique(y)) / n_classes     # official: absent classes count 0
        for j, key in enumerate(keys):
            runs = preds[(key, d)]
            out[(key, d)] = Scored(
                top.samples[:, j], float(top.point[j]), present.samples[:, j] * share,
                float(present.point[j] * share), float(present.point[j]), present.samples[:, j],
                np.array([top1_accuracy(y, r) for r in runs]),
                np.array([mean_per_class_accuracy(y, r, n_classes) for r in runs]))
    return out


def seed_interval(values: np.ndarray) -> tuple[float, tuple[float, float] | None, float | None]:
    """(mean, 95% t-interval, two-sided one-sample t-test p) over training runs;
    no interval for a single run."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None, None
    se = float(values.std(ddof=1)) / math.sqrt(len(values))
    if se == 0.0:
        return mean, (mean, mean), 1.0 if mean == 0.0 else 0.0
    from scipy import stats   # here: importing scipy.stats costs ~1 s and few cells need it

    df = len(values) - 1
    half = float(stats.t.ppf(1 - ALPHA / 2, df)) * se
    return mean, (mean - half, mean + half), float(2 * stats.t.sf(abs(mean) / se, df))


def _mv(samples: np.ndarray, point: float, n: int, note: str = "", p_value=None) -> MetricValue:
    with np.errstate(all="ignore"):
        lo, hi = np.nanquantile(samples, [0.025, 0.975])
    return MetricValue(float(point), (float(lo), float(hi)), n, p_value, note)


def _gain_metrics(prefix: str, diff: np.ndarray, point: float, seed_gains: np.ndarray, n: int,
                  where: str) -> dict[str, MetricValue]:
    """gain (over items), gain_seeds (over training runs), gain_significant (both)."""
    p_items = float(two_sided_p(diff)[0])
    mean, ci, p_seeds = seed_interval(seed_gains)
    r = len(seed_gains)
    out = {prefix: _mv(diff, point, n, f"adapt - source_only {where}, paired bootstrap over test "
                                       f"items; mean over {r} training run(s)", p_items)}
    if ci is None:
        out[f"{prefix}_seeds"] = MetricValue(mean, None, r, None, "one training run: no seed spread "
                                             "(set training_seeds >= 2)")
        if prefix == "gain":
            out["gain_significant"] = MetricValue.not_applicable("needs training_seeds >= 2")
        return out
    out[f"{prefix}_seeds"] = MetricValue(mean, ci, r, p_seeds, f"t-interval over {r} training runs "
                                         f"(per-run gains {[round(float(g), 4) for g in seed_gains]})")
    if prefix == "gain":
        p_both = max(p_items, p_seeds)
        flag = float(np.sign(point)) if p_both < ALPHA else 0.0
        out["gain_significant"] = MetricValue(flag, None, n, p_both, "+1/-1: gain/loss beyond both "
                                              "test-item and training-seed noise (larger p of the two)")
    return out


def score(pairs, protocols, preds, labels_test, p, seed, n_classes):
    """All metrics and tables (module docstring)."""
    boot = score_domains(preds, labels_test, int(p["bootstrap_resamples"]), seed, n_classes)
    metrics: dict[str, MetricValue] = {}
    pair_rows: list[dict] = []
    collected: dict[tuple[str, str], list[tuple[np.ndarray, float]]] = {}
    seed_gains: dict[str, list[np.ndarray]] = {}
    for s, t in pairs:
        pre = f"{s}->{t}"
        nt, ns = len(labels_test[t]), len(labels_test[s])
        for proto in protocols:
            key = model_key(proto, s, t)
            if (key, t) not in boot:
                for m in ("top1", "mpca", "mpca_present", "source_top1", "drop"):
                    metrics[f"{pre}/{proto}/{m}"] = MetricValue.not_applicable(
                        "no captions or tags on the target train split")
                continue
            on_t, on_s = boot[(key, t)], boot[(key, s)]
            vals = {"top1": (on_t.top1, on_t.top1_point, nt), "mpca": (on_t.mpca, on_t.mpca_point, nt),
                    "mpca_present": (on_t.present, on_t.present_point, nt),
                    "source_top1": (on_s.top1, on_s.top1_point, ns),
                    "drop": (on_s.top1 - on_t.top1, on_s.top1_point - on_t.top1_point, nt)}
            for m, (samp, pt, n) in vals.items():
                metrics[f"{pre}/{proto}/{m}"] = _mv(samp, pt, n)
                collected.setdefault((proto, m), []).append((samp, pt))
            pair_rows.append({"source": s, "target": t, "protocol": proto,
                              "top1": round(on_t.top1_point, 4), "top1 CI": _ci_text(on_t.top1),
                              "mpca": round(on_t.mpca_point, 4), "mpca CI": _ci_text(on_t.mpca),
                              "mpca_present": round(on_t.present_point, 4),
                              "source_top1": round(on_s.top1_point, 4),
                              "drop": round(on_s.top1_point - on_t.top1_point, 4)})
        ad, so = (("ad", s, t), t), (("so", s, t), t)
        if "source_only" in protocols and ad in boot:
            for m, field in (("gain", "top1"), ("gain_mpca", "mpca")):
                a, b = boot[ad], boot[so]
                diff = getattr(a, field) - getattr(b, field)
                point = getattr(a, field + "_point") - getattr(b, field + "_point")
                per_seed = getattr(a, "seeds_" + field) - getattr(b, "seeds_" + field)
                metrics.update({f"{pre}/adapt/{k}": v for k, v in
                                _gain_metrics(m, diff, point, per_seed, nt, "on target test").items()})
                collected.setdefault(("adapt", m), []).append((diff, point))
                seed_gains.setdefault(m, []).append(per_seed)
    if len(pairs) > 1:
        for (proto, m), items in collected.items():
            samp = np.mean([x for x, _ in items], axis=0)
            pt = float(np.mean([x for _, x in items]))
            if m.startswith("gain"):
                per_seed = np.mean(seed_gains[m], axis=0)
                metrics.update({f"mean/adapt/{k}": v for k, v in _gain_metrics(
                    m, samp, pt, per_seed, len(items), f"mean over {len(items)} pairs").items()})
            else:
                metrics[f"mean/{proto}/{m}"] = _mv(samp, pt, len(items), f"mean over {len(items)} pairs")
    tables = {"pairs": pair_rows}
    if len(pairs) > 1:
        tables.update(_matrices(pairs, protocols, boot))
    return metrics, tables


def _ci_text(samples: np.ndarray) -> str:
    with np.errstate(all="ignore"):
        lo, hi = np.nanquantile(samples, [0.025, 0.975])
    return f"[{lo:.3f}, {hi:.3f}]"


def _matrices(pairs, protocols, boot: dict[tuple, Scored]) -> dict[str, list[dict]]:
    """Source x target tables per protocol and metric. Off the diagonal: the pair's
    target accuracy. On it, the in-domain accuracy: zero_shot on that domain;
    source_only the source accuracy of the control model of that source's first pair
    (each pair has its own, see model.train_heads; the plot shows the same); adapt none."""
    sources = list(dict.fromkeys(s for s, _ in pairs))
    targets = list(dict.fromkeys(t for _, t in pairs))
    cols = list(dict.fromkeys(sources + targets))
    out = {}
    for proto in protocols:
        for mname in ("top1", "mpca"):
            rows = []
            for s in sources:
                row: dict[str, Any] = {"source \\ target": s}
                for t in cols:
                    if t == s:
                        keys = ([model_key(proto, s, s)] if proto == "zero_shot" else
                                [model_key(proto, s, t2) for s2, t2 in pairs if s2 == s][:1]
                                if proto == "source_only" else [])
                    else:
                        keys = [model_key(proto, s, t)] if (s, t) in pairs else []
                    vals = [getattr(boot[(key, s if t == s else t)], mname + "_point") for key in keys
                            if (key, s if t == s else t) in boot]
                    row[t] = round(float(np.mean(vals)), 4) if vals else None
                rows.append(row)
            out[f"matrix {proto} {mname}"] = rows
    return out


def headline(pairs, protocols) -> list[str]:
    """Leaderboard columns: the method's target top-1 first (TRUST's figure), then the
    official mean per-class accuracy (GeoNet's), the baselines, the drop, the gain
    and its spread over training seeds."""
    pre = "mean" if len(pairs) > 1 else f"{pairs[0][0]}->{pairs[0][1]}"
    order = [p for p in ("adapt", "source_only", "zero_shot") if p in protocols]
    names = [f"{pre}/{order[0]}/top1", f"{pre}/{order[0]}/mpca"]
    names += [f"{pre}/{proto}/top1" for proto in order[1:]]
    if "source_only" in protocols:
        names.append(f"{pre}/source_only/mpca")
        names.append(f"{pre}/source_only/drop")
    if "adapt" in protocols and "source_only" in protocols:
        names += [f"{pre}/adapt/gain", f"{pre}/adapt/gain_seeds"]
    return list(dict.fromkeys(names))[:8]
