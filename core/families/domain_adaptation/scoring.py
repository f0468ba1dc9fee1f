"""Scoring of the domain_adaptation family: metrics, paired bootstrap, matrices.

Metrics (target test): ``top1`` overall top-1 accuracy (TRUST's figure), ``mpca``
mean per-class accuracy, ``source_top1`` the same model's in-domain accuracy on the
source test split, ``drop`` = source_top1 - top1, and for ``adapt`` ``gain`` = adapt
top1 - source_only top1 (paired, with p-value). Names are
``"<source>-><target>/<protocol>/<metric>"``; with several pairs, ``mean/...``
averages over pairs (the papers' "average"). 95% CIs: ``top1`` and ``source_top1``
by the item bootstrap (core/bootstrap.cluster_means), ``mpca`` by the within-class
bootstrap (metrics.class_stratified_bootstrap); all predictors scored on the same
target test set share one set of resamples (paired), distinct test sets are
resampled independently (seeded by domain name).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from ...bootstrap import cluster_means, two_sided_p
from ...results import MetricValue
from .metrics import class_stratified_bootstrap


def domain_seed(seed: int, name: str) -> int:
    """A seed for one named random stream (e.g. ``"test/<domain>"``) of run ``seed``."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**32)


def score(pairs, protocols, preds, labels_test, p, seed, classes):
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
        dseed = domain_seed(seed, "test/" + d)
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


def headline(pairs, protocols) -> list[str]:
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
