"""The multi_instance_retrieval protocol: options, defaults, their check, the metric names.

Stdlib only: the family's ``__init__`` imports it whenever ctxbench lists or
validates tasks.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ...protocol_checks import (require_bool, require_choice, require_int, require_list_of,
                               require_number)

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


def check_tta_scales(scales: Any) -> list[float]:
    """``tta_scales`` as floats: a non-empty list of crop fractions in (0, 1]."""
    return require_list_of({"tta_scales": scales}, "tta_scales",
                           partial(require_number, low=0, high=1, open_low=True),
                           what="crop fractions in (0, 1]", fix="e.g. [1.0, 0.875]")


def check_protocol(p: dict) -> None:
    """Type and allowed values of every option of the merged protocol ``p``."""
    require_int(p, "n_frames", low=1, fix="frames sampled uniformly per clip, e.g. 8")
    require_bool(p, "tta_hflip")
    check_tta_scales(p["tta_scales"])
    require_int(p, "bootstrap_resamples", low=1, fix="e.g. 10000")
    require_choice(p, "nan_policy", NAN_POLICIES, fix="allowed: propagate (official), omit")


def metric_names(p: dict) -> list[str]:
    """The six figures, whatever the protocol: mAP and nDCG, V->T, T->V and their mean."""
    return list(METRICS)
