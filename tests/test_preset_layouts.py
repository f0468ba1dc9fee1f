"""Every preset loads a checkpoint laid out like its published hub repository.

A tiny, random-weight model is written per published layout (tests/preset_fixtures:
the same config model_type and architecture, tokenizer kind and files, processor
config keys and chat template as the real repository; each builder cites its
source), then loaded through the preset with only ``--backend-arg model=DIR`` (a
caption preset also needs ``embedder=DIR``; an open_clip preset reads its hub folder,
open_clip_config.json + open_clip_model.safetensors, through the same ``model``) and put through the
conformance kit. Fixtures are built once per session. Argument variation is
skipped here (``vary_args=False``): the per-backend test files cover it, and a
rebuild per varied argument would cost minutes.
"""

from __future__ import annotations

import pytest

from ctxbench.testing import run_conformance
from ctxbench.testing import tiny_models
from ctxbench_plugins import hf_common, presets

from preset_fixtures import dual_encoders as dual
from preset_fixtures import vlms, vlms_ft

LAYOUTS = {   # layout name -> builder(path)
    "openai-clip": dual.build_openai_clip,
    "siglip": dual.build_siglip,
    "siglip2": dual.build_siglip2,
    "gemma3-pt": lambda p: vlms.build_gemma3(p, instruct=False),
    "gemma3-it": lambda p: vlms.build_gemma3(p, instruct=True),
    "ministral3": vlms.build_ministral3,
    "qwen3-vl": vlms.build_qwen3_vl,
    "e5-v": vlms_ft.build_e5v,
    "vlm2vec-full": vlms_ft.build_vlm2vec_full,
    "vlm2vec-adapter": vlms_ft.build_vlm2vec_adapter,
}
PRESET_LAYOUT = {
    "openai-clip-l14": "openai-clip", "siglip": "siglip", "siglip2": "siglip2",
    "gemma3-4b-embed": "gemma3-pt", "gemma3-12b-embed": "gemma3-pt",
    "mistral3-3b-embed": "ministral3", "mistral3-8b-embed": "ministral3",
    "qwen3-vl-2b-embed": "qwen3-vl", "qwen3-vl-4b-embed": "qwen3-vl",
    "qwen3-vl-8b-embed": "qwen3-vl",
    "gemma3-4b-caption": "gemma3-it", "gemma3-12b-caption": "gemma3-it",
    "qwen3-vl-2b-caption": "qwen3-vl", "qwen3-vl-8b-caption": "qwen3-vl",
    "e5v": "e5-v", "vlm2vec-7b": "vlm2vec-full",
}
ADAPTER_ONLY = ("vlm2vec-2b", "vlm2vec-v2")   # published as LoRA adapters: refused clearly
OPEN_CLIP = ("openclip-h14",)
NOT_MIRRORED = {
    "eva-clip": "EVA02-E-14-plus builds its image tower from timm's "
                "eva02_enormous_patch14_plus_clip_224 by name, which cannot be shrunk "
                "through open_clip's config; the open_clip loading path is the one "
                "openclip-h14 exercises",
}


@pytest.fixture(scope="module", autouse=True)
def _env(isolated_ctxbench_cache):
    isolated_ctxbench_cache.delenv(presets.ENV_VAR, raising=False)


@pytest.fixture(scope="session")
def layouts(tmp_path_factory):
    """Each layout built once, lazily (name -> directory)."""
    root = tmp_path_factory.mktemp("hub_layouts")
    built: dict = {}

    def get(name: str):
        if name not in built:
            if name == "qwen3-embedding":
                built[name] = tiny_models.build_text_encoder(root / name, "qwen3")
            else:
                built[name] = LAYOUTS[name](root / name)
        return built[name]
    return get


@pytest.fixture(scope="module")
def specs():
    return {s.name: s for s in presets.ctxbench_backends()}


def test_every_preset_has_a_layout_or_a_reason(specs):
    covered = set(PRESET_LAYOUT) | set(ADAPTER_ONLY) | set(OPEN_CLIP) | set(NOT_MIRRORED)
    assert covered == set(specs), sorted(set(specs) ^ covered)


@pytest.mark.parametrize("name", sorted(PRESET_LAYOUT))
def test_preset_loads_its_published_layout(name, specs, layouts):
    args = {"model": str(layouts(PRESET_LAYOUT[name]))}
    if specs[name].default_args.get("embedder"):
        args["embedder"] = str(layouts("qwen3-embedding"))
        args["max_new_tokens"] = 16   # 4 random-weight tokens can coincide across contexts
    report = run_conformance(specs[name], args, "cpu", vary_args=False)
    assert report.ok, report.summary()


@pytest.mark.parametrize("name", OPEN_CLIP)
def test_open_clip_preset_loads_its_published_layout(name, specs, tmp_path):
    import open_clip.factory as factory
    saved = dict(factory._MODEL_CONFIGS)
    try:
        folder = dual.build_open_clip_h14(tmp_path / "oc")
        report = run_conformance(specs[name], {"model": str(folder)}, "cpu", vary_args=False)
    finally:
        factory._MODEL_CONFIGS.clear()
        factory._MODEL_CONFIGS.update(saved)
    assert report.ok, report.summary()


@pytest.mark.parametrize("name", ADAPTER_ONLY)
def test_adapter_only_checkpoint_is_refused_with_the_fix(name, specs, layouts):
    with pytest.raises(hf_common.ModelLoadError, match="LoRA adapter.*merge"):
        specs[name].factory(device="cpu", model=str(layouts("vlm2vec-adapter")))
