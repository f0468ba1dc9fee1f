"""The family's dataset loaders, as registered (``dataset.loader`` in a task YAML).

Light: the readers (:mod:`.data_files`, :mod:`.data_hf`, :mod:`.synthetic`) are
imported on first use. Paths written in a task YAML go through
:func:`ctxbench.io.paths.option_path` (``~`` expanded, relative to the task file's
folder). ``--limit N`` keeps about N items, every class (and own split) in
proportion (:func:`.data.stratified_limit`).
"""

from __future__ import annotations

from ...io.paths import option_path
from ...registrations import LoaderSpec
from .protocol import FAMILY

COMMON_OPTIONS = {
    "classes": "class names in label order (default: the 8 FI emotions)",
    "tag_threshold": "drop object tags scoring below this (default 0.4, SentiFormer's detector cut-off)",
    "polarity": "map the 8 emotions to binary negative/positive (default false)",
}
HF_KEYS = ("image_column", "label_column", "distribution_column", "caption_column", "scene_column",
           "tags_column", "text_columns", "config", "revision", "splits")


def _common(options: dict) -> dict:
    return {"classes": options.get("classes"),
            "tag_threshold": float(options.get("tag_threshold", 0.4)),
            "polarity": bool(options.get("polarity", False))}


def _required(options: dict, key: str, what: str) -> None:
    if key not in options:
        raise ValueError(f"dataset.options.{key} is required ({what})")


def load_folders(options: dict, ctx):
    from .data import stratified_limit
    from .data_files import load_folders as read
    _required(options, "root", "the folder holding one folder per class")
    extra = {k: options[k] for k in ("instructions", "layout") if options.get(k)}
    ds = read(option_path(options, "root", ctx), metadata=option_path(options, "metadata", ctx),
              text_fields=options.get("text_fields", ()), name=options.get("name", "fi"),
              **extra, **_common(options))
    return stratified_limit(ds, ctx.limit, ctx.seed)


def load_manifest(options: dict, ctx):
    from .data import stratified_limit
    from .data_files import load_manifest as read
    _required(options, "path", "the CSV/JSONL manifest")
    ds = read(option_path(options, "path", ctx), root=option_path(options, "root", ctx),
              text_fields=options.get("text_fields", ()), name=options.get("name"),
              instructions=options.get("instructions", ""), **_common(options))
    return stratified_limit(ds, ctx.limit, ctx.seed)


def load_hf(options: dict, ctx):
    from .data import stratified_limit
    from .data_hf import load_hf as read
    _required(options, "path", "a local folder or a hub id owner/name")
    base = ctx.task_file.parent if getattr(ctx, "task_file", None) else None
    ds = read(str(options["path"]), **{k: options[k] for k in HF_KEYS if k in options},
              base=base, **_common(options))
    return stratified_limit(ds, ctx.limit, ctx.seed)


def load_synthetic(options: dict, ctx):
    from .data import stratified_limit
    from .synthetic import build
    return stratified_limit(build(**options), ctx.limit, ctx.seed)


LOADERS = [
    LoaderSpec("sentiment_folders", load_folders, FAMILY,
               "one folder per class (FI layout) with optional sidecar JSONL metadata",
               {"root": "folder holding one folder per class", "metadata": "sidecar JSONL: image "
                "path (relative to root) -> caption / tags / scene / extra fields",
                "text_fields": "extra metadata text fields to read", "name": "dataset name",
                "layout": "folders (<root>/<class>/*) or prefix (<root>/<class>_*.jpg)",
                "instructions": "how to obtain the data (shown when absent; {root} and "
                "{metadata} are filled in)", **COMMON_OPTIONS}),
    LoaderSpec("sentiment_manifest", load_manifest, FAMILY,
               "CSV/JSONL manifest: image, label or distribution, split, metadata",
               {"path": "the manifest (.csv, .tsv or .jsonl)", "root": "image root (default: the "
                "manifest's folder)", "text_fields": "extra metadata text columns",
                "name": "dataset name", "instructions": "how to obtain the data (shown when absent)",
                **COMMON_OPTIONS}),
    LoaderSpec("sentiment_hf", load_hf, FAMILY,
               "a Hugging Face datasets source (local folder or hub id)",
               {"path": "local folder or hub id owner/name", "config": "dataset config name",
                "revision": "hub revision", "image_column": "image column (default image)",
                "label_column": "label column (default label)",
                "distribution_column": "label distribution column",
                "caption_column": "caption column", "scene_column": "scene column",
                "tags_column": "object tags column", "text_columns": "extra fields: {name: column}",
                "splits": "{train|val|test: split name} when not the standard names",
                **COMMON_OPTIONS}),
    LoaderSpec("synthetic_sentiment", load_synthetic, FAMILY,
               "embedded mini dataset from the synthetic world (mood drawn in colour and light)",
               {"n_per_class": "images per emotion", "seed": "generator seed", "size": "image side",
                "caption_reliability": "P(caption names the true mood)",
                "tag_reliability": "P(the mood object tag is the true emotion's)",
                "polarity_reliability": "P(the picture's colours/light match the polarity)",
                "shape_reliability": "P(the emotion's signature shape is drawn)",
                "missing_rate": "share of images without a caption",
                "tag_threshold": COMMON_OPTIONS["tag_threshold"], "polarity": COMMON_OPTIONS["polarity"]}),
]
