"""Protocol options of the aesthetics family: defaults, their check, the metric names.

Standard library only: ``ctxbench list`` / ``validate`` import this without torch.
"""

from __future__ import annotations

from typing import Any, Iterable

from ...errors import ProtocolError

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


def as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


# ----------------------------------------------------------------------------- check
def _is_number(x) -> bool:
    """An int/float, or a string float() reads: PyYAML (YAML 1.1) loads ``1e-4``
    without a dot as a string, and the evaluator converts with float()."""
    if isinstance(x, bool):
        return False
    if isinstance(x, (int, float)):
        return True
    if isinstance(x, str):
        try:
            float(x)
        except ValueError:
            return False
        return True
    return False


def _number(p, key: str, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, hi_open: bool = False, value=None) -> None:
    x = p[key] if value is None else value
    bounds = (f"{'(' if lo_open or lo is None else '['}{'-inf' if lo is None else lo}, "
              f"{'inf' if hi is None else hi}{')' if hi_open or hi is None else ']'}")
    if not _is_number(x):
        raise ProtocolError(key, f"{x!r} is not a number", f"give a number in {bounds}")
    v = float(x)
    if (lo is not None and (v < lo or (lo_open and v == lo))) or \
            (hi is not None and (v > hi or (hi_open and v == hi))):
        raise ProtocolError(key, f"{x!r} is out of range", f"give a number in {bounds}")


def _integer(p, key: str, lo: int, value=None) -> None:
    x = p[key] if value is None else value
    if isinstance(x, bool) or not isinstance(x, int):
        raise ProtocolError(key, f"{x!r} is not an integer", f"give an integer >= {lo}")
    if x < lo:
        raise ProtocolError(key, f"{x!r} is below {lo}", f"give an integer >= {lo}")


def _boolean(p, key: str) -> None:
    if not isinstance(p[key], bool):
        raise ProtocolError(key, f"{p[key]!r} is not true/false", "use true or false")


def _choice(p, key: str, allowed: Iterable) -> None:
    allowed = tuple(allowed)
    if isinstance(p[key], bool) or p[key] not in allowed:
        raise ProtocolError(key, f"{p[key]!r} is not allowed", f"one of {list(allowed)}")


def _names(p, key: str, allowed: tuple[str, ...], empty_ok: bool) -> None:
    values = as_list(p[key])
    bad = [x for x in values if x not in allowed]
    if bad:
        raise ProtocolError(key, f"unknown probe(s) {bad}", f"allowed: {list(allowed)}")
    if not values and not empty_ok:
        raise ProtocolError(key, "the list is empty", f"name at least one of {list(allowed)}")


def _text(p, key: str) -> None:
    if not isinstance(p[key], str):
        raise ProtocolError(key, f"{p[key]!r} is not a string", "give a text")


def _grid(p, key: str, check) -> None:
    """A scalar or a non-empty list (a validation grid) of valid values."""
    values = as_list(p[key])
    if not values:
        raise ProtocolError(key, "the grid is empty", "give a value or a non-empty list")
    for v in values:
        check(v)


def check_protocol(p: dict[str, Any]) -> None:
    """Check the type and allowed values of every option of the merged protocol;
    raises :class:`~ctxbench.errors.ProtocolError` naming the option."""
    _names(p, "probes", PROBES, empty_ok=False)
    _names(p, "scorer_probes", TRAINED_PROBES, empty_ok=True)
    _choice(p, "loss", ("paper", "mse"))
    _choice(p, "select_metric", ("srcc", "lcc", "neg_mae"))
    _choice(p, "scorer", SCORERS)
    if p["param_direction"] not in ("auto", 1, -1) or isinstance(p["param_direction"], bool):
        raise ProtocolError("param_direction", f"{p['param_direction']!r}", "use 1, -1 or auto")
    for key in ("val_fraction", "test_fraction"):
        if not _is_number(p[key]) or not 0 < float(p[key]) < 1:
            raise ProtocolError(key, f"{p[key]!r} must be in (0, 1)")
    for key in ("mse_weight", "tie_margin", "emd_weight", "kl_epsilon"):
        _number(p, key, lo=0.0)
    _number(p, "emd_r", lo=0.0, lo_open=True)
    _number(p, "dropout", lo=0.0, hi=1.0, hi_open=True)
    _grid(p, "lr", lambda v: _number(p, "lr", lo=0.0, lo_open=True, value=v))
    _grid(p, "weight_decay", lambda v: _number(p, "weight_decay", lo=0.0, value=v))
    _grid(p, "hidden", lambda v: _integer(p, "hidden", 1, value=v))
    for key in ("attn_dim", "attn_heads", "epochs", "batch_size", "hist_bins", "n_resamples"):
        _integer(p, key, 1)
    for key in ("patience", "min_tag_test"):
        _integer(p, key, 0)
    if p["attn_dim"] % p["attn_heads"]:
        raise ProtocolError("attn_dim", f"{p['attn_dim']} is not divisible by attn_heads "
                            f"{p['attn_heads']}", "choose attn_dim as a multiple of attn_heads")
    for key in ("distribution_head", "logistic_fit"):
        _boolean(p, key)
    for key in ("tag_template", "no_tag_text"):
        _text(p, key)
    try:
        p["tag_template"].format(tag="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ProtocolError("tag_template", f"{p['tag_template']!r} is not a template with "
                            f"only '{{tag}}' ({exc})", "e.g. 'a photo of {tag}'") from None
    rng = p["hist_range"]
    if not (isinstance(rng, (list, tuple)) and len(rng) == 2 and all(map(_is_number, rng))
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
