"""`open_clip`: OpenCLIP models (Cherti et al. 2023; github.com/mlfoundations/open_clip).

Loading is open_clip's own: ``open_clip.create_model_and_transforms(arch,
pretrained=...)`` with its validation preprocessing, and
``open_clip.get_tokenizer(arch)``. Features are L2-normalised
(``encode_image/encode_text(normalize=True)``), as CLIP compares them by cosine.

Args (``--backend-arg key=value``):

- ``model``: a model folder in the layout open_clip publishes on the Hugging Face hub
  (e.g. laion/CLIP-ViT-H-14-laion2B-s32B-b79K): ``open_clip_config.json`` (``model_cfg``,
  the architecture config; ``preprocess_cfg``, mean/std/interpolation/resize_mode) and
  ``open_clip_model.safetensors`` (or ``open_clip_pytorch_model.bin``); or such a hub
  id (``hf-hub:org/name`` or ``org/name``), taken from the local HF cache when there
  (downloaded only when the hub may be reached). It sets architecture, preprocessing
  and weights, so it excludes ``arch``, ``pretrained`` and ``model_config``.
- ``arch``: an open_clip architecture (``open_clip.list_models()``), e.g. ViT-H-14.
- ``pretrained``: a pretrained tag of that architecture
  (``open_clip.list_pretrained_tags_by_model(arch)``, e.g. laion2b_s32b_b79k) or a
  local checkpoint file (a ``torch.save``-d state dict, ``.pt``/``.bin``/``.pth``,
  or ``.safetensors``). Required: random weights are refused.
- ``model_config``: a JSON architecture config (``embed_dim``, ``vision_cfg``,
  ``text_cfg``), registered with ``open_clip.add_model_config``; its file stem is
  the architecture name, so a user's own architecture (and the small model
  shipped with ctxbench) loads through exactly this path.
- ``dtype``: auto/fp32/bf16/fp16 (bf16/fp16 cast the whole model, open_clip's
  "pure_" precisions).
- ``context_fusion`` (none/late) and ``fusion_weight``: the late-fusion fallback of
  :func:`ctxbench_plugins.hf_common.late_fuse`; it changes the fingerprint and sets
  ``capabilities.context_method = "late_fusion"``. CLIP itself takes no context.

A pretrained tag whose weights are already in the local Hugging Face (or
``~/.cache/clip``) cache is loaded from there without touching the network; one
that is not fails at once when offline (see hf_common).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ctxbench.backend import BackendArg, BackendSpec, Capabilities
from ctxbench.hooks import hookimpl

from . import common_args as ca
from . import hf_common as hc

if TYPE_CHECKING:  # torch, PIL and open_clip load with the model: `ctxbench list` imports this
    import torch
    from PIL import Image

HF_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
ARGS = (
    BackendArg("model", str, None, "open_clip hub-layout folder (open_clip_config.json + "
                                   "open_clip_model.safetensors) or hf-hub:org/name; excludes "
                                   "arch/pretrained/model_config", vary=False),
    BackendArg("arch", str, None, "open_clip architecture (open_clip.list_models()), e.g. ViT-B-32"),
    BackendArg("pretrained", str, None, "pretrained tag of arch (e.g. laion2b_s34b_b79k) or a "
                                        "local checkpoint file (required)"),
    BackendArg("model_config", str, None, "JSON architecture config registered with "
                                          "open_clip.add_model_config (its stem is the arch)"),
    ca.DTYPE, ca.CONTEXT_FUSION, ca.FUSION_WEIGHT, ca.min_vocab(1000),
)
_PRECISION = {"fp32": "fp32", "bf16": "pure_bf16", "fp16": "pure_fp16"}   # by hc.dtype_name


def register_config(model_config: str | os.PathLike, arch: str | None) -> str:
    """Validate a JSON architecture config and register it; returns the arch name."""
    import open_clip

    path = Path(model_config).expanduser()
    if not path.is_file():
        raise hc.ModelLoadError(f"model_config={str(model_config)!r}: no such file "
                                f"(give the path of an open_clip architecture JSON)")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise hc.ModelLoadError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise hc.ModelLoadError(f"{path}: expected a JSON object with embed_dim, vision_cfg, text_cfg")
    for key, kind in (("embed_dim", int), ("vision_cfg", dict), ("text_cfg", dict)):
        if not isinstance(cfg.get(key), kind):
            raise hc.ModelLoadError(f"{path}: field '{key}' is missing or not {kind.__name__} "
                                    f"(an open_clip config has embed_dim, vision_cfg, text_cfg)")
    if arch is not None and arch != path.stem:
        raise hc.ModelLoadError(f"arch={arch!r} but model_config registers the architecture "
                                f"{path.stem!r} (open_clip names a config after its file); "
                                f"drop arch or rename the file to {arch}.json")
    if str(cfg["vision_cfg"].get("timm_model_name", "")).startswith("ctxbench_"):
        from ctxbench import toy_vision   # the toy models' own image tower (a timm model)
        toy_vision.register()
    open_clip.add_model_config(path)
    return path.stem


def _cached_tag_weights(cfg: dict) -> tuple[Path | None, str]:
    """(local weights file if cached, identity) for a pretrained-tag config."""
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub)   # "org/name/" -> default file names
        names = [filename[:-4] + ".safetensors", filename] if filename.endswith((".bin", ".pth")) \
            else ([filename] if filename else list(HF_WEIGHT_NAMES))
        for name in names:
            found = hc.cached_file(repo, name)
            if found is not None:
                return found, f"hub:{repo}@{found.parent.name}/{name}"
        return None, f"hub:{repo}"
    url = cfg.get("url", "")
    if url:
        local = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        return (local if local.is_file() else None), f"url:{os.path.basename(url)}"
    return None, "unknown"


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "tokenizer.model")


def _hub_layout(model: str) -> tuple[str, str, dict, str, str, Path | None]:
    """Read an open_clip hub-layout folder (or a cached ``hf-hub:`` id).

    Returns (registered arch name, weights file, create_model kwargs from
    ``preprocess_cfg``, config fingerprint part, weights fingerprint part, folder
    holding the HF tokenizer files when ``text_cfg.hf_tokenizer_name`` asks for one)."""
    import open_clip
    import open_clip.factory as factory

    spec = model[len("hf-hub:"):] if model.startswith("hf-hub:") else model
    local = Path(spec).expanduser()
    if local.is_dir():
        folder, where = local.resolve(), f"local:{local.resolve().name}"
    else:
        src = hc.resolve_model(spec, marker="open_clip_config.json")   # refuses offline misses
        if src.path is not None:
            folder, where = src.path, src.ident
        else:
            from huggingface_hub import hf_hub_download
            cfg_file = Path(hf_hub_download(spec, "open_clip_config.json"))
            for name in HF_WEIGHT_NAMES:
                try:
                    hf_hub_download(spec, name)
                    break
                except Exception:   # noqa: BLE001 - try the next published name
                    continue
            folder = cfg_file.parent
            where = f"hub:{spec}@{folder.name}"
    cfg_file = folder / "open_clip_config.json"
    if not cfg_file.is_file():
        raise hc.ModelLoadError(
            f"model={model!r}: {folder} has no open_clip_config.json (an open_clip hub "
            f"checkpoint holds open_clip_config.json + open_clip_model.safetensors); for a bare "
            f"architecture JSON and checkpoint use model_config= and pretrained=")
    try:
        doc = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise hc.ModelLoadError(f"{cfg_file}: not valid JSON: {exc}") from None
    cfg = doc.get("model_cfg") if isinstance(doc, dict) else None
    if not isinstance(cfg, dict):
        raise hc.ModelLoadError(f"{cfg_file}: no 'model_cfg' object (the architecture config "
                                f"open_clip publishes beside its weights)")
    for key, kind in (("embed_dim", int), ("vision_cfg", dict), ("text_cfg", dict)):
        if not isinstance(cfg.get(key), kind):
            raise hc.ModelLoadError(f"{cfg_file}: model_cfg.{key} is missing or not {kind.__name__}")
    weights = next((folder / n for n in HF_WEIGHT_NAMES if (folder / n).is_file()), None)
    if weights is None:
        raise hc.ModelLoadError(f"model={model!r}: {folder} has no weights file "
                                f"({' or '.join(HF_WEIGHT_NAMES)}); random weights are refused")
    cfg_hash, w_hash = hc.file_hash(cfg_file), hc.file_hash(weights)
    arch = f"ctxbench-hub-{cfg_hash[:16]}"
    factory._MODEL_CONFIGS[arch] = cfg   # open_clip.add_model_config takes only files
    pre = doc.get("preprocess_cfg") or {}
    extra = {"image_mean": pre.get("mean"), "image_std": pre.get("std"),
             "image_interpolation": pre.get("interpolation"),
             "image_resize_mode": pre.get("resize_mode")}
    extra = {k: tuple(v) if isinstance(v, list) else v for k, v in extra.items() if v is not None}
    tok_dir = folder if cfg["text_cfg"].get("hf_tokenizer_name") and any(
        (folder / n).is_file() for n in _TOKENIZER_FILES) else None
    return (arch, str(weights), extra, f":cfg=sha256:{cfg_hash[:16]}",
            f"{where}:{weights.name}@sha256:{w_hash[:16]}", tok_dir)


class OpenClipBackend(hc.DualEncoderMixin):
    def __init__(self, arch: str | None = None, pretrained: str | None = None,
                 model_config: str | None = None, dtype: str = "auto", device: str = "cpu",
                 context_fusion: str = "none", fusion_weight: float = 0.5, min_vocab: int = 1000,
                 model: str | None = None):
        import open_clip

        self.device = device
        self.dtype = hc.parse_dtype(dtype, device)
        self.fusion, self.fusion_weight = hc.parse_fusion(context_fusion, fusion_weight)
        config_ident = ""
        tokenizer_dir: Path | None = None
        extra: dict = {}
        model_arg = model
        if model is not None:
            given = [f"{k}={v}" for k, v in (("arch", arch), ("pretrained", pretrained),
                                             ("model_config", model_config)) if v is not None]
            if given:
                raise hc.ModelLoadError(
                    f"model={model!r} sets the architecture, preprocessing and weights from its "
                    f"open_clip_config.json and checkpoint, so it cannot be combined with "
                    f"{', '.join(given)}; drop {' and '.join(g.split('=')[0] for g in given)} "
                    f"(or drop model)")
            arch, pretrained, extra, config_ident, ident, tokenizer_dir = _hub_layout(model)
        if model is None and model_config is not None:
            arch = register_config(model_config, arch)
            config_ident = f":cfg=sha256:{hc.file_hash(Path(model_config).expanduser())[:16]}"
        if not arch:
            raise hc.ModelLoadError("open_clip needs --backend-arg model=<hub-layout folder or "
                                    "hf-hub:org/name>, arch=<architecture> (see "
                                    "open_clip.list_models()) or model_config=<arch>.json")
        if arch not in open_clip.list_models():
            from ctxbench.name_registry import close_matches
            near = close_matches(arch, open_clip.list_models())
            raise hc.ModelLoadError(f"arch={arch!r} is not an open_clip architecture"
                                    + (f" (did you mean {', '.join(near)}?)" if near else "")
                                    + "; pass model_config=<path.json> for your own")
        if not pretrained:
            raise hc.ModelLoadError(
                f"open_clip arch={arch}: pass --backend-arg pretrained=<tag or checkpoint file>; "
                f"tags for {arch}: {', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'} "
                f"(random weights are refused: they would give meaningless scores)")
        ckpt = Path(str(pretrained)).expanduser()
        if model is not None:
            weights = pretrained   # extra (preprocessing) and ident came from the folder
        elif ckpt.is_file():
            weights, ident = str(ckpt), f"file:{ckpt.name}@sha256:{hc.file_hash(ckpt)[:16]}"
        elif ckpt.exists() or "/" in str(pretrained) or str(pretrained).endswith(
                (".pt", ".pth", ".bin", ".safetensors")):
            raise hc.ModelLoadError(f"pretrained={pretrained!r}: no such checkpoint file "
                                    f"(give a file path, or a tag of {arch})")
        else:
            cfg = open_clip.get_pretrained_cfg(arch, pretrained)
            if not cfg:
                tags = open_clip.list_pretrained_tags_by_model(arch)
                raise hc.ModelLoadError(f"pretrained={pretrained!r} is not a tag of {arch} "
                                        f"(tags: {', '.join(tags) or 'none'}); or give a checkpoint path")
            local, where = _cached_tag_weights(cfg)
            # a tag's preprocessing and activation come from its pretrained config
            extra = {"force_quick_gelu": bool(cfg.get("quick_gelu", False)),
                     "image_mean": cfg.get("mean"), "image_std": cfg.get("std"),
                     "image_interpolation": cfg.get("interpolation"),
                     "image_resize_mode": cfg.get("resize_mode")}
            extra = {k: v for k, v in extra.items() if v is not None}
            if local is None:
                hc.require_download_allowed(
                    f"open_clip weights {arch}/{pretrained} ({where})",
                    download=(f"`hf download {where[4:]}`" if where.startswith("hub:") else
                              f"run once with network: open_clip.create_model('{arch}', "
                              f"pretrained='{pretrained}')"),
                    local_hint="--backend-arg pretrained=/path/to/checkpoint.safetensors")
                weights = pretrained
            else:
                weights = str(local)
            ident = f"tag:{pretrained}@{where}"
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=weights, precision=_PRECISION[hc.dtype_name(self.dtype)], device=device, **extra)
        except RuntimeError as exc:
            what = f"model={model_arg}" if model_arg is not None else f"arch={arch} pretrained={pretrained}"
            raise hc.ModelLoadError(f"open_clip {what}: the checkpoint "
                                    f"does not match the architecture: {exc}") from exc
        self.model = model.eval()
        self.preprocess = preprocess
        try:
            if tokenizer_dir is not None:   # open_clip's local-dir rule: the files sit beside
                text_cfg = open_clip.get_model_config(arch)["text_cfg"]
                from open_clip.tokenizer import HFTokenizer
                self.tokenizer = HFTokenizer(str(tokenizer_dir), context_length=text_cfg.get(
                    "context_length", 77), **text_cfg.get("tokenizer_kwargs", {}))
            else:
                self.tokenizer = open_clip.get_tokenizer(arch)
        except OSError as exc:
            raise hc.ModelLoadError(f"open_clip arch={arch}: cannot load its tokenizer ({exc}); "
                                    f"its text_cfg names a Hugging Face tokenizer that must be in "
                                    f"the local cache when offline") from exc
        self._check_tokenizer(f"open_clip arch={arch}", min_vocab)
        self.arch, self.ident, self.config_ident = arch, ident, config_ident
        late = self.fusion == "late"
        self.capabilities = Capabilities(image_context=late, text_context=late, normalized=True,
                                         context_method="late_fusion" if late else "none")

    def _check_tokenizer(self, where: str, min_vocab: int) -> None:
        tok = self.tokenizer
        hf = getattr(tok, "tokenizer", None)
        if hf is not None and hasattr(hf, "decode"):   # open_clip.tokenizer.HFTokenizer
            hc.check_tokenizer(hf, where, min_vocab)
        elif hasattr(tok, "encode") and hasattr(tok, "decode") and hasattr(tok, "vocab_size"):
            hc.check_round_trip(tok.encode, tok.decode, int(tok.vocab_size), where, min_vocab)
        else:
            raise hc.TokenizerSanityError(f"{where}: unsupported tokenizer {type(tok).__name__} "
                                          f"(cannot check it; no encode/decode)")

    def fingerprint(self) -> str:
        fp = (f"open_clip:v{hc.PLUGIN_VERSION}:arch={self.arch}{self.config_ident}:{self.ident}"
              f":{hc.dtype_name(self.dtype)}")
        if self.fusion == "late":
            fp += f":late_fusion(w={self.fusion_weight:g})"
        return fp

    def _text_features(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(hc.input_device(self.model))
        return self.model.encode_text(tokens)

    def _image_features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        import torch

        pixels = torch.stack([self.preprocess(im) for im in images])  # PIL transforms: per image
        return self.model.encode_image(pixels.to(hc.input_device(self.model), self.dtype))



def make_open_clip(device: str = "cpu", **args) -> OpenClipBackend:
    return OpenClipBackend(device=device, **args)


@hookimpl
def ctxbench_backends():
    return [BackendSpec(
        name="open_clip",
        factory=make_open_clip,
        description="OpenCLIP model; args: model=<hub-layout dir|hf-hub:id>, arch, pretrained=<tag|checkpoint>, model_config=<arch.json>, "
                    "dtype, context_fusion=none|late, fusion_weight",
        default_batch_size=64,
        args=ARGS,
    )]
