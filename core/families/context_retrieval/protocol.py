"""The context_retrieval protocol: options, their defaults, their check, the metric names.

Stdlib only: the family's ``__init__`` imports it whenever ctxbench lists or
validates tasks, so it must not pull in torch or numpy.

Injection patterns (Tsutsumi & Kohita, "Same image, different meaning", Table 2):
``no_ctx`` phi(I), psi(q); ``query_ctx`` phi(I), psi(q, C); ``image_ctx``
phi(I, C), psi(q); ``both_ctx`` phi(I, C), psi(q, C). Levels L1-L4: objects and
actions, visual focus, situation and intent, atmosphere and effect.
"""

from __future__ import annotations

from typing import Any

from ...errors import ProtocolError

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


def _names_list(p: dict, option: str, allowed: tuple[str, ...]) -> list[str]:
    value = p[option]
    if not isinstance(value, (list, tuple)) or not value:
        raise ProtocolError(option, f"expected a non-empty list, got {value!r}",
                            f"e.g. {list(allowed)}")
    bad = [x for x in value if x not in allowed]
    if bad:
        raise ProtocolError(option, f"unknown value {bad[0]!r}", f"allowed: {', '.join(allowed)}")
    if len(set(value)) != len(value):
        raise ProtocolError(option, f"repeated value in {list(value)}", "list each one once")
    return list(value)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_protocol(p: dict) -> None:
    """Type and allowed values of every option of the merged protocol ``p``."""
    patterns = _names_list(p, "patterns", PATTERNS)
    if "no_ctx" not in patterns:
        raise ProtocolError("patterns", "no_ctx is missing",
                            "include no_ctx: the differences are taken against it")
    _names_list(p, "levels", LEVELS)
    ks = p["ks"]
    if not isinstance(ks, (list, tuple)) or not ks or not all(_positive_int(k) for k in ks):
        raise ProtocolError("ks", f"expected a non-empty list of integers >= 1, got {ks!r}",
                            "e.g. [1, 5]")
    if len(set(ks)) != len(ks):
        raise ProtocolError("ks", f"repeated value in {list(ks)}", "list each K once")
    if not _positive_int(p["bootstrap_resamples"]):
        raise ProtocolError("bootstrap_resamples", f"expected an integer >= 1, got "
                            f"{p['bootstrap_resamples']!r}", "the paper uses 10000")
    if p["query_context"] not in QUERY_CONTEXTS:
        raise ProtocolError("query_context", f"unknown value {p['query_context']!r}",
                            f"allowed: {', '.join(QUERY_CONTEXTS)}")
    if not isinstance(p["divergence"], bool):
        raise ProtocolError("divergence", f"expected true or false, got {p['divergence']!r}")


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
