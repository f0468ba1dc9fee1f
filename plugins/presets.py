"""Named model presets (presets.yaml), each registered as a backend.

``ctxbench run --backend gemma3-4b-embed`` builds the preset's base backend
(hf_clip, open_clip, vlm_embed or vlm_caption) with the preset's args;
``--backend-arg key=value`` overrides them. Extra catalogues in the same format
are read from the files listed in ``$CTXBENCH_PRESETS`` (separated by the OS path
separator), so a lab can name its own checkpoints without writing a plugin.

The YAML is read with ``yaml.safe_load``; every entry is validated, and an error
names the file, the preset and the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ctxbench.backend import BackendSpec
from ctxbench.errors import TaskConfigError
from ctxbench.hooks import hookimpl

CATALOGUE = Path(__file__).with_name("presets.yaml")
ENV_VAR = "CTXBENCH_PRESETS"
_FIELDS = {"backend", "description", "paper", "args", "note"}
_BATCH = {"hf_clip": 64, "open_clip": 64, "vlm_embed": 8, "vlm_caption": 8}


def base_factories() -> dict[str, Callable[..., Any]]:
    from .hf_clip import make_hf_clip
    from .open_clip_backend import make_open_clip
    from .vlm_caption import make_vlm_caption
    from .vlm_embed import make_vlm_embed
    return {"hf_clip": make_hf_clip, "open_clip": make_open_clip,
            "vlm_embed": make_vlm_embed, "vlm_caption": make_vlm_caption}


@dataclass(frozen=True)
class Preset:
    name: str
    backend: str
    args: dict
    description: str = ""
    paper: str = ""
    note: str = ""
    source: str = ""
    extras: dict = field(default_factory=dict)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def parse_catalogue(path: Path) -> list[Preset]:
    """Validated presets of one YAML file."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TaskConfigError(path, None, f"not valid YAML: {exc}") from None
    except OSError as exc:
        raise TaskConfigError(path, None, f"cannot read the preset catalogue: {exc}",
                              f"check ${ENV_VAR}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("presets"), dict):
        raise TaskConfigError(path, "presets", "missing or not a mapping",
                              "the file needs a top-level 'presets:' mapping of name -> preset")
    embedders = doc.get("text_embedders") or {}
    if not isinstance(embedders, dict):
        raise TaskConfigError(path, "text_embedders", "not a mapping", "name -> {model: ...}")
    for name, entry in embedders.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise TaskConfigError(path, f"text_embedders.{name}", "needs a 'model' string",
                                  "e.g. {model: Qwen/Qwen3-Embedding-0.6B}")
    known = set(_BATCH)
    out = []
    for name, entry in doc["presets"].items():
        where = f"presets.{name}"
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise TaskConfigError(path, where, "a preset name must be a non-empty word")
        if not isinstance(entry, dict):
            raise TaskConfigError(path, where, "not a mapping", "give backend, description, args")
        unknown = set(entry) - _FIELDS
        if unknown:
            raise TaskConfigError(path, f"{where}.{sorted(unknown)[0]}", "unknown field",
                                  f"allowed: {', '.join(sorted(_FIELDS))}")
        backend = entry.get("backend")
        if backend not in known:
            raise TaskConfigError(path, f"{where}.backend", f"{backend!r} is not a model backend",
                                  f"use one of {', '.join(sorted(known))}")
        args = entry.get("args") or {}
        if not isinstance(args, dict):
            raise TaskConfigError(path, f"{where}.args", "not a mapping", "key: value pairs")
        for key, value in args.items():
            if not _scalar(value):
                raise TaskConfigError(path, f"{where}.args.{key}", "must be a scalar",
                                      "args are what --backend-arg key=value could give")
        args = dict(args)
        if backend == "vlm_caption" and args.get("embedder") in embedders:
            ref = embedders[args["embedder"]]
            args["embedder"] = ref["model"]
            if "revision" in ref:
                args.setdefault("embedder_revision", ref["revision"])
        out.append(Preset(name, backend, args, str(entry.get("description") or ""),
                          str(entry.get("paper") or ""), str(entry.get("note") or ""), str(path)))
    return out


def catalogue_paths() -> list[Path]:
    extra = [Path(p).expanduser() for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    return [CATALOGUE] + extra


def load_presets() -> list[Preset]:
    presets: dict[str, Preset] = {}
    for path in catalogue_paths():
        for preset in parse_catalogue(path):
            if preset.name in presets:
                raise TaskConfigError(path, f"presets.{preset.name}",
                                      f"already defined in {presets[preset.name].source}",
                                      "rename one of them")
            presets[preset.name] = preset
    return list(presets.values())


def _factory(preset: Preset) -> Callable[..., Any]:
    def build(device: str = "cpu", **overrides):
        return base_factories()[preset.backend](device=device, **{**preset.args, **overrides})
    build.__name__ = f"preset_{preset.name.replace('-', '_')}"
    return build


def base_args() -> dict[str, tuple]:
    """The declared arguments of each base backend: a preset accepts exactly those."""
    from .hf_clip import ARGS as hf_clip
    from .open_clip_backend import ARGS as open_clip
    from .vlm_caption import ARGS as vlm_caption
    from .vlm_embed import ARGS as vlm_embed
    return {"hf_clip": hf_clip, "open_clip": open_clip, "vlm_embed": vlm_embed,
            "vlm_caption": vlm_caption}


def spec_for(preset: Preset) -> BackendSpec:
    text = f"[{preset.paper}] {preset.description}" if preset.paper else preset.description
    text += f" (preset of {preset.backend})"
    if preset.note:
        text += f" Note: {preset.note}"
    return BackendSpec(name=preset.name, factory=_factory(preset), description=text,
                       default_batch_size=_BATCH[preset.backend], default_args=dict(preset.args),
                       args=base_args()[preset.backend])


@hookimpl
def ctxbench_backends():
    return [spec_for(p) for p in load_presets()]
