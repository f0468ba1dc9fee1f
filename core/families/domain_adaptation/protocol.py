"""The domain_adaptation protocol: options, their defaults, their check, the metric names.

Stdlib only: the family's ``__init__`` imports it whenever ctxbench lists or
validates tasks, so it must not pull in torch or numpy.

A task names one source->target pair (``source``/``target``) or several (``pairs``:
``all`` = every ordered pair of the dataset's domains, or a list of ``"a->b"``).
The protocols are ``zero_shot`` (class prompts), ``source_only`` (a head trained on
the source) and ``adapt`` (the same head trained with caption-guided target terms,
after Litrico et al., "TRUST: Leveraging Text Robustness for Unsupervised Domain
Adaptation", AAAI 2026); see evaluator.py for the method.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Iterable

from ...errors import ProtocolError
from ...protocol_checks import (require_bool, require_choice, require_int, require_list_of, require_names,
                               require_number, require_text)

PROTOCOLS: tuple[str, ...] = ("zero_shot", "source_only", "adapt")
CERTAINTIES: tuple[str, ...] = ("entropy", "margin", "clip", "none")
PSEUDO_LABELERS: tuple[str, ...] = ("prompt", "caption_probe")
PER_PROTOCOL_METRICS: tuple[str, ...] = ("top1", "mpca", "mpca_present", "source_top1", "drop")
GAIN_METRICS: tuple[str, ...] = ("gain", "gain_seeds", "gain_significant", "gain_mpca", "gain_mpca_seeds")

PROTOCOL_DEFAULTS: dict[str, Any] = {
    "source": None,                 # one pair: source and target domain names
    "target": None,
    "pairs": None,                  # or "all" (every ordered pair) or ["a->b", ...]
    "protocols": list(PROTOCOLS),
    "prompt_templates": ["a photo of a {}."],
    "pseudo_labels": "prompt",      # prompt | caption_probe (TRUST-like, source captions)
    "certainty": "entropy",         # entropy | margin | clip | none
    "calibrate_temperature": True,  # fit tau on source captions (temperature scaling)
    "temperature": 0.01,            # tau when not calibrated (CLIP's logit scale 100)
    "clip_batch": 32,               # batch of captions for certainty: clip (TRUST: 32)
    "lambda_pseudo": 1.0,
    "lambda_contrastive": 0.5,
    "contrastive_temperature": 0.1,
    "val_fraction": 0.1,            # source val held out of source train when no val split
    "epochs": 100,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "batch_size": 256,
    "patience": 10,
    "training_seeds": 3,            # heads trained per protocol and pair; the gain's spread over them
    "bootstrap_resamples": 10_000,
}


# ----------------------------------------------------------------------------- pairs
def parse_pair(item: Any) -> tuple[str, str]:
    """``"a->b"`` -> ``("a", "b")``; ProtocolError on anything else."""
    if not isinstance(item, str) or item.count("->") != 1:
        raise ProtocolError("pairs", f"entry {item!r} must look like 'source->target'",
                            "e.g. pairs: [usa->asia] or pairs: all")
    s, t = (x.strip() for x in item.split("->"))
    if not s or not t:
        raise ProtocolError("pairs", f"entry {item!r} must look like 'source->target'")
    return s, t


def requested_pairs(p: dict) -> list[tuple[str, str]] | None:
    """The pairs the protocol names, or None for ``pairs: all`` (they depend on the
    dataset's domains). Checks the form, not the domain names."""
    pairs_opt = p.get("pairs")
    if pairs_opt is not None and (p.get("source") or p.get("target")):
        raise ProtocolError("pairs", "give either 'pairs' or 'source'/'target', not both",
                            "remove one of them")
    if pairs_opt == "all":
        return None
    if isinstance(pairs_opt, (list, tuple)):
        if not pairs_opt:
            raise ProtocolError("pairs", "empty list", "list 'source->target' entries or write 'all'")
        pairs = [parse_pair(item) for item in pairs_opt]
    elif pairs_opt is None:
        for key in ("source", "target"):
            if not p.get(key) or not isinstance(p[key], str):
                raise ProtocolError(key, f"expected a domain name, got {p.get(key)!r}",
                                    "set 'source' and 'target' (e.g. usa, asia) or 'pairs: all'")
        pairs = [(p["source"], p["target"])]
    else:
        raise ProtocolError("pairs", f"must be 'all' or a list of 'a->b', got {pairs_opt!r}")
    for s, t in pairs:
        if s == t:
            raise ProtocolError("pairs" if pairs_opt is not None else "target",
                                f"pair {s}->{t} has the same source and target")
    return list(dict.fromkeys(pairs))


def resolve_pairs(p: dict, domains: list[str]) -> list[tuple[str, str]]:
    """The (source, target) pairs a task asks for, validated against the dataset."""
    pairs = requested_pairs(p)
    if pairs is None:
        pairs = [(s, t) for s in domains for t in domains if s != t]
    option = "pairs" if p.get("pairs") is not None else "source"
    for s, t in pairs:
        for d in (s, t):
            if d not in domains:
                raise ProtocolError(option, f"domain {d!r} is not in the dataset",
                                    f"domains: {', '.join(domains)}")
    if not pairs:
        raise ProtocolError("pairs", "no pairs (the dataset needs at least two domains for 'pairs: all')")
    return pairs


# ----------------------------------------------------------------------------- check
def check_protocol(p: dict) -> None:
    """Type and allowed values of every option of the merged protocol ``p``."""
    requested_pairs(p)
    require_names(p, "protocols", PROTOCOLS)
    require_list_of(p, "prompt_templates", partial(require_text, placeholder="{}"),
                    what="strings with '{}' for the class name", fix="e.g. ['a photo of a {}.']")
    require_choice(p, "pseudo_labels", PSEUDO_LABELERS)
    require_choice(p, "certainty", CERTAINTIES)
    require_bool(p, "calibrate_temperature")
    for option in ("temperature", "contrastive_temperature", "lr"):
        require_number(p, option, low=0, open_low=True)
    for option in ("lambda_pseudo", "lambda_contrastive", "weight_decay"):
        require_number(p, option, low=0, fix="0 switches the term off")
    require_number(p, "val_fraction", low=0, high=1, open_low=True, open_high=True)
    for option in ("clip_batch", "epochs", "batch_size", "patience", "training_seeds",
                   "bootstrap_resamples"):
        require_int(p, option, low=1)


# ----------------------------------------------------------------------------- names
def ordered_protocols(p: dict) -> list[str]:
    """The requested protocols in the evaluator's order (zero_shot, source_only, adapt)."""
    return [x for x in PROTOCOLS if x in p["protocols"]]


def pair_metric_names(prefix: str, protocols: Iterable[str]) -> list[str]:
    """Metric names of one pair (or of ``mean`` over pairs)."""
    protocols = list(protocols)
    names = [f"{prefix}/{proto}/{m}" for proto in protocols for m in PER_PROTOCOL_METRICS]
    if "adapt" in protocols and "source_only" in protocols:
        names += [f"{prefix}/adapt/{m}" for m in GAIN_METRICS]
    return names


def metric_names(p: dict, domains: list[str] | None = None) -> list[str]:
    """Every metric name the evaluator can emit under ``p``.

    Per pair ``"<source>-><target>/<protocol>/<metric>"`` and, with several pairs,
    ``"mean/<protocol>/<metric>"``. Under ``pairs: all`` the pairs depend on the
    dataset's domains: pass ``domains`` to get the per-pair names; without them only
    the ``mean/...`` names (which every ``pairs: all`` task emits) are listed."""
    protocols = ordered_protocols(p)
    pairs = requested_pairs(p)
    if pairs is None and domains is not None:
        pairs = [(s, t) for s in domains for t in domains if s != t]
    names: list[str] = []
    for s, t in pairs or []:
        names += pair_metric_names(f"{s}->{t}", protocols)
    if pairs is None or len(pairs) > 1:
        names += pair_metric_names("mean", protocols)
    return names
