"""The multi_instance_retrieval protocol: options, defaults, their check, the metric names.

Stdlib only: the family's ``__init__`` imports it whenever ctxbench lists or
validates tasks.
"""

from __future__ import annotations

from typing import Any

from ...errors import ProtocolError

FAMILY = "multi_instance_retrieval"
METRICS = ("map_avg", "ndcg_avg", "map_v2t", "map_t2v", "ndcg_v2t", "ndcg_t2v")
NAN_POLICIES = ("propagate", "omit")
REFERENCE = ("mwray/Joint-Part-of-Speech-Embeddings src/evaluation/mAP.py, nDCG.py "
             "(EPIC-KITCHENS-100 multi-instance retrieval challenge)")
PROTOCOL_DEFAULTS: dict[str, Any] = {
    "n_frames": 8,               # frames sampled uniformly per clip
    "tta_hflip": False,          # also embed horizontally flipped frames
    "tta_scales": [1.0],         # centre crops (fraction of the side) to average over
    "bootstrap_resamples": 10_000,
    "nan_policy": "propagate",   # official: a query with no relevant item makes the mean NaN
}


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_tta_scales(scales: Any) -> list[float]:
    """``tta_scales`` as floats: a non-empty list of crop fractions in (0, 1]."""
    if not isinstance(scales, (list, tuple)) or not scales or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and 0 < float(s) <= 1
            for s in scales):
        raise ProtocolError("tta_scales", f"expected a non-empty list of crop fractions in (0, 1], "
                            f"got {scales!r}", "e.g. [1.0, 0.875]")
    return [float(s) for s in scales]


def check_protocol(p: dict) -> None:
    """Type and allowed values of every option of the merged protocol ``p``."""
    if not _positive_int(p["n_frames"]):
        raise ProtocolError("n_frames", f"expected an integer >= 1, got {p['n_frames']!r}",
                            "frames sampled uniformly per clip, e.g. 8")
    if not isinstance(p["tta_hflip"], bool):
        raise ProtocolError("tta_hflip", f"expected true or false, got {p['tta_hflip']!r}")
    check_tta_scales(p["tta_scales"])
    if not _positive_int(p["bootstrap_resamples"]):
        raise ProtocolError("bootstrap_resamples", f"expected an integer >= 1, got "
                            f"{p['bootstrap_resamples']!r}", "e.g. 10000")
    if p["nan_policy"] not in NAN_POLICIES:
        raise ProtocolError("nan_policy", f"unknown value {p['nan_policy']!r}",
                            "allowed: propagate (official), omit")


def metric_names(p: dict) -> list[str]:
    """The six figures, whatever the protocol: mAP and nDCG, V->T, T->V and their mean."""
    return list(METRICS)
