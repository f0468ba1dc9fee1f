"""The context_retrieval protocol: options, their defaults, their check, the metric names.

Stdlib only: the family's ``__init__`` imports it whenever ctxbench lists or
validates tasks, so it must not pull in torch or numpy.

Injection patterns (Tsutsumi & Kohita, "Same image, different meaning", Table 2):
``no_ctx`` phi(I), psi(q); ``query_ctx`` phi(I), psi(q, C); ``image_ctx``
phi(I, C), psi(q); ``both_ctx`` phi(I, C), psi(q, C). Levels L1-L4: objects and
actions, visual focus, situation and intent, atmosphere and effect.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ...errors import ProtocolError
from ...protocol_checks import (require_bool, require_choice, require_int, require_list_of,
                               require_names)

LEVELS: tuple[str, ...] = ("L1", "L2", "L3", "L4")
PATTERNS: tuple[str, ...] = ("no_ctx", "query_ctx", "image_ctx", "both_ctx")
IMAGE_SIDE = {"no_ctx": False, "query_ctx": False, "image_ctx": True, "both_ctx": True}
TEXT_SIDE = {"no_ctx": False, "query_ctx": True, "image_ctx": False, "both_ctx": True}
QUERY_CONTEXTS = ("candidate", "source")

PROTOCOL_DEFAULTS: dict[str, Any] = {
    "patterns": list(PATTERNS),
    "levels": list(LEVELS),
    "ks": [1, 5],
    "bootstrap_resamples": 10_000,
    "query_context": "candidate",   # or "source"
    "divergence": True,
}


def check_protocol(p: dict) -> None:
    """Type and allowed values of every option of the merged protocol ``p``."""
    patterns = require_names(p, "patterns", PATTERNS)
    if "no_ctx" not in patterns:
        raise ProtocolError("patterns", "no_ctx is missing",
                            "include no_ctx: the differences are taken against it")
    require_names(p, "levels", LEVELS)
    require_list_of(p, "ks", partial(require_int, low=1), what="integers >= 1", unique=True,
                    fix="e.g. [1, 5]")
    require_int(p, "bootstrap_resamples", low=1, fix="the paper uses 10000")
    require_choice(p, "query_context", QUERY_CONTEXTS)
    require_bool(p, "divergence")


def metric_names(p: dict) -> list[str]:
    """Every metric name the evaluator can emit under ``p``: per level and K, Recall@K
    of each pattern, each pattern minus no_ctx, and the query divergence."""
    names = []
    for level in p["levels"]:
        for pattern in p["patterns"]:
            names += [f"{level}/{pattern}/R@{int(k)}" for k in p["ks"]]
        for pattern in p["patterns"]:
            if pattern != "no_ctx":
                names += [f"{level}/{pattern}-no_ctx/R@{int(k)}" for k in p["ks"]]
        if p["divergence"]:
            names.append(f"{level}/query_divergence")
    return names
