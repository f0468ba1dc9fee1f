"""The metadata_sentiment protocol: options, their defaults, their check, the metric names.

Stdlib only: the family's ``__init__`` imports it whenever ctxbench lists or
validates tasks, so it must not pull in torch or numpy.

Protocols (SentiFormer, Feng et al., "SentiFormer: Metadata Enhanced Transformer for
Image Sentiment Analysis", 2025, arXiv:2502.15322, on a frozen backend):
``zero_shot`` (CLIP's template-averaged class prompts), ``image_probe`` (a linear
probe on the image embedding) and ``fusion_probe`` (the relevance-gated metadata
fusion head, :mod:`.heads`).
"""

from __future__ import annotations

import string
from functools import partial
from typing import Any

from ...errors import ProtocolError
from ...protocol_checks import (is_number, require_choice, require_int, require_list_of, require_names,
                               require_number, require_text)

FAMILY = "metadata_sentiment"
PROTOCOLS: tuple[str, ...] = ("zero_shot", "image_probe", "fusion_probe")
PROBES: tuple[str, ...] = ("image_probe", "fusion_probe")
ZERO_SHOT_ON = ("auto", "test", "all")
#: The 8 Mikels emotions of FI (You et al., AAAI 2016), the default class list.
FI_EMOTIONS: tuple[str, ...] = ("amusement", "anger", "awe", "contentment", "disgust",
                                "excitement", "fear", "sadness")
POSITIVE_EMOTIONS: tuple[str, ...] = ("amusement", "awe", "contentment", "excitement")
POLARITY_CLASSES: tuple[str, ...] = ("negative", "positive")
#: SentiFormer's prompt for the scene label and the detected objects (objects are
#: rendered as "o1, o2, ", each followed by ", " as in the paper).
PAPER_PROMPT = ("the scene or background of image is {scene}, and the image contains the "
                "following objects: {objects}")
#: Scores of every protocol, from the test confusion matrix (:mod:`.metrics`); binary
#: tasks add ``F1_positive``.
SCORES: tuple[str, ...] = ("accuracy", "weighted_F1", "macro_F1")

#: Per metadata field of the fusion probe (:mod:`.scoring`).
FIELD_METRICS: tuple[str, ...] = ("contribution", "accuracy_without", "gate_mean")

PROTOCOL_DEFAULTS: dict[str, Any] = {
    "protocols": list(PROTOCOLS),
    "templates": ["a photo that evokes {}.", "an image that makes people feel {}.",
                  "a picture full of {}."],
    "class_prompts": {},            # class name -> words used in the templates
    "zero_shot_logit_scale": 100.0,
    "zero_shot_on": "auto",         # auto | test | all  (auto: all items when no probe runs
                                    # and the dataset has no own split)
    "fields": {"caption": "{caption}", "scene_objects": PAPER_PROMPT},
    "split_fractions": [0.6, 0.2, 0.2],
    "val_fraction_of_train": 0.1,
    "epochs": 100,
    "patience": 10,
    "batch_size": 256,
    "linear_lr": 0.01,
    "fusion_lr": 0.001,
    "weight_decays": [0.0001, 0.01],
    "fusion_dim": 128,
    "fusion_heads": 4,
    "dropout": 0.1,
    "bootstrap_resamples": 1000,
}
HEADLINE = ("zero_shot/accuracy", "image_probe/accuracy", "fusion_probe/accuracy",
            "fusion_probe/macro_F1", "fusion_gain/accuracy", "image_gain/accuracy")


def _check_templates(p: dict) -> None:
    require_list_of(p, "templates", partial(require_text, placeholder="{}"),
                    what="strings each with a '{}' for the class",
                    fix="e.g. ['a photo that evokes {}.']")
    prompts = p["class_prompts"]
    if not isinstance(prompts, dict) or any(not isinstance(k, str) or not isinstance(v, str)
                                            for k, v in prompts.items()):
        raise ProtocolError("class_prompts", f"expected a mapping class name -> words, got {prompts!r}",
                            "e.g. {positive: positive emotions}")


def field_placeholders(name: str, template: Any) -> list[str]:
    """The placeholders of the protocol field ``name`` (a template such as ``"{caption}"``)."""
    if not isinstance(template, str):
        raise ProtocolError(f"fields.{name}", f"expected a template string, got {template!r}",
                            "e.g. '{caption}'")
    try:
        keys = [k for _, k, _, _ in string.Formatter().parse(template) if k is not None]
    except ValueError as exc:
        raise ProtocolError(f"fields.{name}", f"unreadable template {template!r} ({exc})") from None
    if not keys or any(not k.isidentifier() for k in keys):
        raise ProtocolError(f"fields.{name}", f"{template!r} needs named placeholders such as "
                            "{caption}", "placeholders: caption, scene, objects or an extra text field")
    return keys


def _check_training(p: dict) -> None:
    fractions = p["split_fractions"]
    if not isinstance(fractions, (list, tuple)) or len(fractions) != 3 or \
            not all(is_number(x) and x > 0 for x in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ProtocolError("split_fractions", f"must be three positive numbers summing to 1, got "
                            f"{fractions!r}", "e.g. [0.6, 0.2, 0.2] (train, val, test)")
    require_number(p, "val_fraction_of_train", low=0, high=1, open_low=True, open_high=True)
    for option in ("epochs", "patience", "batch_size", "bootstrap_resamples"):
        require_int(p, option, low=1)
    for option in ("linear_lr", "fusion_lr", "zero_shot_logit_scale"):
        require_number(p, option, low=0, open_low=True)
    require_list_of(p, "weight_decays", partial(require_number, low=0), what="numbers >= 0",
                    fix="e.g. [0.0001, 0.01]")
    dim, heads = require_int(p, "fusion_dim", low=1), require_int(p, "fusion_heads", low=1)
    if dim % heads:
        raise ProtocolError("fusion_dim", f"{dim} is not divisible by fusion_heads ({heads})",
                            "choose fusion_dim as a multiple of fusion_heads")
    require_number(p, "dropout", low=0, high=1, open_high=True)


def check_protocol(p: dict) -> None:
    """Type and allowed values of every option of the merged protocol ``p``."""
    require_names(p, "protocols", PROTOCOLS)
    _check_templates(p)
    require_choice(p, "zero_shot_on", ZERO_SHOT_ON)
    fields = p["fields"]
    if not isinstance(fields, dict):
        raise ProtocolError("fields", f"expected a mapping field name -> template, got {fields!r}",
                            "e.g. {caption: '{caption}'}")
    for name, template in fields.items():
        field_placeholders(str(name), template)
    _check_training(p)


def metric_names(p: dict) -> list[str]:
    """Every metric name the evaluator can emit under ``p``.

    Per protocol: the scores, ``F1_positive`` (binary tasks), ``kl`` (datasets with
    label distributions) and the accuracy of each class, listed for the built-in class
    sets (the 8 FI emotions and binary polarity; a dataset with other classes names its
    own); the fusion gain; per protocol field, its contribution (the accuracy drop when
    it is masked), the accuracy without it and its mean learned gate."""
    protocols = [x for x in PROTOCOLS if x in p["protocols"]]
    names: list[str] = []
    for protocol in protocols:
        names += [f"{protocol}/{s}" for s in (*SCORES, "F1_positive", "kl")]
        names += [f"{protocol}/class_accuracy/{c}" for c in (*FI_EMOTIONS, *POLARITY_CLASSES)]
    if "image_probe" in protocols and "zero_shot" in protocols:
        names += [f"image_gain/{s}" for s in (*SCORES, "F1_positive")]
    if "fusion_probe" in protocols:
        if "image_probe" in protocols:
            names += [f"fusion_gain/{s}" for s in (*SCORES, "F1_positive")]
        for field in p["fields"]:
            names += [f"fusion_probe/{kind}/{field}" for kind in FIELD_METRICS]
    return names
