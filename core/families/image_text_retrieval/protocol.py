"""The image_text_retrieval protocol: options, their defaults, their check, the metric names.

Stdlib only: the family's ``__init__`` imports it whenever ctxbench lists or
validates tasks, so it must not pull in torch or numpy.

The protocol is CLIP_benchmark's zero-shot retrieval (LAION-AI/CLIP_benchmark,
``metrics/zeroshot_retrieval.py``): the pool is every image and every caption of
the dataset, scored by cosine similarity; text->image Recall@K counts a caption
as a hit when its own image is among the K best images, image->text Recall@K
counts an image as a hit when any of its captions is among the K best captions.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ...protocol_checks import require_int, require_list_of

FAMILY = "image_text_retrieval"
DIRECTIONS: tuple[str, ...] = ("t2i", "i2t")
DIRECTION_NAMES = {"t2i": "text → image", "i2t": "image → text"}
REFERENCE = ("CLIP_benchmark zero-shot retrieval (github.com/LAION-AI/CLIP_benchmark, "
             "metrics/zeroshot_retrieval.py): text->image and image->text Recall@K")

PROTOCOL_DEFAULTS: dict[str, Any] = {
    "ks": [1, 5, 10],
    "bootstrap_resamples": 10_000,
}


def check_protocol(p: dict) -> None:
    """Type and allowed values of every option of the merged protocol ``p``."""
    require_list_of(p, "ks", partial(require_int, low=1), what="integers >= 1", unique=True,
                    fix="e.g. [1, 5, 10]")
    require_int(p, "bootstrap_resamples", low=1, fix="e.g. 10000")


def metric_names(p: dict) -> list[str]:
    """``t2i/R@K`` then ``i2t/R@K`` for every K of ``p["ks"]``."""
    return [f"{d}/R@{int(k)}" for d in DIRECTIONS for k in p["ks"]]


HEADLINE = ("t2i/R@1", "i2t/R@1")
