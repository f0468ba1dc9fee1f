"""Protocol options of the aesthetics family: defaults, their check, the metric names.

Standard library only: ``ctxbench list`` / ``validate`` import this without torch.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ...errors import ProtocolError
from ...protocol_checks import (as_list, is_number, require_bool, require_choice, require_int,
                               require_list_of, require_names, require_number, require_text)

FAMILY = "aesthetics"
PROBES = ("image_only", "tag_aware", "zero_shot")     # quality tasks: protocol.probes
TRAINED_PROBES = ("image_only", "tag_aware")          # the heads (heads.HEADS); sweeps: scorer_probes
SCORERS = ("auto", "probe", "zero_shot", "both")
SCORER_ROLE = "scorer"                                 # sweeps: depends_on: {scorer: <task>}

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
    "scorer_probes": ["tag_aware", "image_only"],   # sweeps: probes trained on depends_on.scorer
    "zero_shot_prompts": {"positive": ["a beautiful photo"], "negative": ["an ugly photo"]},
    "param_direction": "auto",       # sweeps: +1, -1 or auto
}

# Metrics of one probe on the MOS scale (zero-shot reports them as not applicable).
SCALE_METRICS = ("Error", "Error_var", "Error_std", "KL", "EMD")
LOWER_IS_BETTER = frozenset({"Error", "Error_var", "Error_std", "KL", "EMD", "NIMA_EMD"})
GAIN_METRICS = ("Error", "LCC", "SRCC", "KL", "EMD")  # + NIMA_EMD with a distribution head
SWEEP_METRICS = ("rho", "agreement")


# ----------------------------------------------------------------------------- check
# PyYAML (YAML 1.1) loads ``1e-4`` without a dot as a string; the evaluator converts
# numbers with float(), so such strings are numbers here.
_number = partial(require_number, numeric_strings=True)


def check_protocol(p: dict[str, Any]) -> None:
    """Check the type and allowed values of every option of the merged protocol;
    raises :class:`~ctxbench.errors.ProtocolError` naming the option."""
    require_names(p, "probes", PROBES, scalar_ok=True)
    require_names(p, "scorer_probes", TRAINED_PROBES, empty_ok=True, scalar_ok=True)
    require_choice(p, "loss", ("paper", "mse"))
    require_choice(p, "select_metric", ("srcc", "lcc", "neg_mae"))
    require_choice(p, "scorer", SCORERS)
    require_choice(p, "param_direction", ("auto", 1, -1), fix="use 1, -1 or auto")
    for key in ("val_fraction", "test_fraction"):
        _number(p, key, low=0, high=1, open_low=True, open_high=True)
    for key in ("mse_weight", "tie_margin", "emd_weight", "kl_epsilon"):
        _number(p, key, low=0)
    _number(p, "emd_r", low=0, open_low=True)
    _number(p, "dropout", low=0, high=1, open_high=True)
    # scalar or a non-empty list (a grid, selected on validation)
    require_list_of(p, "lr", partial(_number, low=0, open_low=True), scalar_ok=True)
    require_list_of(p, "weight_decay", partial(_number, low=0), scalar_ok=True)
    require_list_of(p, "hidden", partial(require_int, low=1), scalar_ok=True)
    for key in ("attn_dim", "attn_heads", "epochs", "batch_size", "hist_bins", "n_resamples"):
        require_int(p, key, low=1)
    for key in ("patience", "min_tag_test"):
        require_int(p, key, low=0)
    if p["attn_dim"] % p["attn_heads"]:
        raise ProtocolError("attn_dim", f"{p['attn_dim']} is not divisible by attn_heads "
                            f"{p['attn_heads']}", "choose attn_dim as a multiple of attn_heads")
    for key in ("distribution_head", "logistic_fit"):
        require_bool(p, key)
    for key in ("tag_template", "no_tag_text"):
        require_text(p, key)
    try:
        p["tag_template"].format(tag="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ProtocolError("tag_template", f"{p['tag_template']!r} is not a template with "
                            f"only '{{tag}}' ({exc})", "e.g. 'a photo of {tag}'") from None
    rng = p["hist_range"]
    if not (isinstance(rng, (list, tuple)) and len(rng) == 2
            and all(is_number(x, numeric_strings=True) for x in rng)
            and float(rng[0]) < float(rng[1])):
        raise ProtocolError("hist_range", f"{rng!r} is not [lo, hi] with lo < hi",
                            "e.g. [0.5, 10.5]")
    prompts = p["zero_shot_prompts"]
    if not (isinstance(prompts, dict) and set(prompts) == {"positive", "negative"} and all(
            isinstance(v, list) and v and all(isinstance(t, str) for t in v)
            for v in prompts.values())):
        raise ProtocolError("zero_shot_prompts", f"{prompts!r}",
                            "a mapping {positive: [texts], negative: [texts]}, both non-empty")


# ----------------------------------------------------------------------------- names
def quality_metric_names(p: dict[str, Any]) -> list[str]:
    """Every metric a quality task (AVA, the embedded set) emits under ``p``."""
    probes = as_list(p["probes"])
    names = []
    for kind in probes:
        names += [f"{kind}/{m}" for m in ("LCC", "SRCC") + SCALE_METRICS]
        if kind != "zero_shot":
            if p["distribution_head"]:
                names.append(f"{kind}/NIMA_EMD")
            if p["logistic_fit"]:
                names.append(f"{kind}/LCC_logistic")
    if "image_only" in probes and "tag_aware" in probes:
        names += [f"gain/{m}" for m in GAIN_METRICS]
        if p["distribution_head"]:
            names.append("gain/NIMA_EMD")
    return names


def sweep_metric_names(p: dict[str, Any]) -> list[str]:
    """Every metric a parameter-sweep task emits under ``p`` (trained scorers only
    when the task declares ``depends_on: {scorer: ...}``)."""
    kinds = []
    if p["scorer"] in ("auto", "probe", "both"):
        kinds += as_list(p["scorer_probes"])
    if p["scorer"] in ("auto", "zero_shot", "both"):
        kinds.append("zero_shot")
    return [f"{k}/{m}" for k in kinds for m in SWEEP_METRICS]


def metric_names(p: dict[str, Any]) -> list[str]:
    """Every exact metric name the evaluator can emit under the merged protocol ``p``:
    a protocol does not say whether its task is a quality task or a sweep (the dataset
    does), so both lists are given."""
    p = {**PROTOCOL_DEFAULTS, **p}
    return list(dict.fromkeys(quality_metric_names(p) + sweep_metric_names(p)))
