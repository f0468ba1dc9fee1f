"""A complete third-party task family, added through the hooks alone (no ctxbench edit).

``colour_match``: each item is a solid-colour image and its colour name; the score is
text->image Recall@1 over the pool. It is deliberately small: it shows every piece a
new family provides (CONTRIBUTING.md walks through it):

* ``ctxbench_families``: the evaluator, protocol defaults, the protocol check, the
  exact metric names, and the report plots;
* ``ctxbench_dataset_loaders``: a loader with documented options;
* ``ctxbench_task_dirs``: the folder holding its task YAML files.
"""

from __future__ import annotations

from pathlib import Path

from functools import partial

from ctxbench.hooks import hookimpl
from ctxbench.protocol_checks import require_int, require_list_of, require_text
from ctxbench.registrations import FamilySpec, LoaderSpec

FAMILY = "colour_match"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220),
           "yellow": (230, 230, 20), "black": (5, 5, 5), "white": (250, 250, 250)}
PROTOCOL_DEFAULTS = {"ks": [1], "template": "a {} square"}


def check_protocol(p: dict) -> None:
    """Each option's type and values; the shared validators raise ProtocolError naming
    the option, what was found and what is allowed."""
    require_list_of(p, "ks", partial(require_int, low=1), what="integers >= 1", unique=True,
                    fix="e.g. ks: [1, 5]")
    require_text(p, "template", placeholder="{}")


def metric_names(p: dict) -> list[str]:
    return [f"R@{k}" for k in p["ks"]]


def evaluate(req):
    """Recall@k of the colour-name query against every image (ties count as misses)."""
    from torch.nn.functional import normalize

    from ctxbench.families.contract import FamilyOutput
    from ctxbench.results import MetricValue

    images = normalize(req.encoder.images(req.dataset["images"]), dim=-1)
    texts = normalize(req.encoder.texts([req.protocol["template"].format(c)
                                         for c in req.dataset["names"]]), dim=-1)
    scores = texts @ images.T
    target = scores.diagonal().unsqueeze(1)
    rank = (scores > target).sum(dim=1)           # 0 = first place
    metrics = {f"R@{k}": MetricValue(float((rank < k).float().mean()), n=len(rank))
               for k in req.protocol["ks"]}
    return FamilyOutput(metrics=metrics, headline=list(metrics), n=len(rank))


def load_colours(options: dict, ctx):
    """Solid-colour images, ``repeat`` copies of the palette (options: repeat, size)."""
    from PIL import Image

    from ctxbench.inputs import ImageRef

    size = int(options.get("size", 16))
    names = list(COLOURS) * int(options.get("repeat", 1))
    if ctx.limit is not None:
        names = names[:ctx.limit]
    images = [ImageRef.from_pil(Image.new("RGB", (size, size), COLOURS[n])) for n in names]
    return {"images": images, "names": names}


def _plots():
    return ()  # no plots: the report draws the headline metrics with their CIs


@hookimpl
def ctxbench_families():
    return [FamilySpec(FAMILY, evaluate, "colour names to solid-colour images (toy)",
                       protocol_defaults=PROTOCOL_DEFAULTS, check_protocol=check_protocol,
                       metric_names=metric_names, plots=_plots)]


@hookimpl
def ctxbench_dataset_loaders():
    return [LoaderSpec("solid_colours", load_colours, FAMILY, "solid-colour images",
                       {"repeat": "copies of the palette", "size": "image side in pixels"})]


@hookimpl
def ctxbench_task_dirs():
    return [Path(__file__).parent / "tasks"]
