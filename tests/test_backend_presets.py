"""The preset catalogue: the paper's models by short name, registered as backends;
--backend-arg overrides reach the base backend (a tiny local model stands in for
the hub weights)."""

import time

import pytest
import torch
from PIL import Image

from ctxbench.errors import TaskConfigError
from ctxbench.testing import tiny_models
from ctxbench_plugins import hf_common, presets

PAPER_MODELS = ("openai-clip-l14", "openclip-h14", "eva-clip", "siglip", "gemma3-4b-embed",
                "gemma3-12b-embed", "mistral3-3b-embed", "mistral3-8b-embed",
                "qwen3-vl-2b-embed", "qwen3-vl-4b-embed", "qwen3-vl-8b-embed",
                "gemma3-4b-caption", "qwen3-vl-2b-caption", "qwen3-vl-8b-caption", "e5v",
                "vlm2vec-2b", "vlm2vec-7b", "vlm2vec-v2")


@pytest.fixture(scope="module", autouse=True)
def _cache_env(isolated_ctxbench_cache):
    isolated_ctxbench_cache.delenv(presets.ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def specs():
    return {s.name: s for s in presets.ctxbench_backends()}


def test_catalogue_names_the_papers_models(specs):
    assert set(PAPER_MODELS) <= set(specs)
    assert specs["gemma3-4b-embed"].default_args["model"] == "google/gemma-3-4b-pt"
    assert specs["openclip-h14"].default_args == {"model": "hf-hub:laion/CLIP-ViT-H-14-laion2B-s32B-b79K"}
    # the caption presets resolve the named text embedder and inherit the shared args
    cap = specs["qwen3-vl-8b-caption"].default_args
    assert cap["embedder"] == "Qwen/Qwen3-Embedding-0.6B" and cap["model"] == "Qwen/Qwen3-VL-8B-Instruct"
    assert "<sent>" in cap["query_prompt"]
    e5v = specs["e5v"].default_args
    assert "<prompt>" in e5v["raw_wrap"] and e5v["prompt_format"] == "raw"
    for spec in specs.values():
        assert spec.description and "preset of" in spec.description


def test_presets_fail_fast_without_weights(specs):
    t0 = time.perf_counter()
    for name in ("gemma3-4b-embed", "siglip", "qwen3-vl-8b-caption", "e5v"):
        with pytest.raises(hf_common.ModelLoadError, match="HF_HUB_OFFLINE=1 forbids"):
            specs[name].factory(device="cpu")
    assert time.perf_counter() - t0 < 3   # no model import, no retries


def test_overrides_reach_the_base_backend(specs, tmp_path):
    vlm = tiny_models.build_vlm(tmp_path / "qwen2_vl", "qwen2_vl")
    llava = tiny_models.build_vlm(tmp_path / "llava", "llava")
    qwen = specs["qwen3-vl-2b-embed"].factory(device="cpu", model=str(vlm))
    assert qwen.prompter.format == "chat" and qwen.source.path == vlm.resolve()
    e5v = specs["e5v"].factory(device="cpu", model=str(llava))
    prompt = e5v.prompter.render([["A"]])[0]
    assert prompt.startswith("<|start_header_id|>user") and prompt.endswith("\n\n \n")
    out = e5v.encode_images([Image.new("RGB", (40, 40), (200, 10, 10))], [None])
    assert out.shape == (1, 32) and torch.isfinite(out).all()
    # an override changes the numbers' identity
    other = specs["e5v"].factory(device="cpu", model=str(llava), pooling="mean")
    assert other.fingerprint() != e5v.fingerprint()


def test_extra_catalogue_and_its_errors(tmp_path, monkeypatch):
    good = tmp_path / "lab.yaml"
    good.write_text("presets:\n  my-clip:\n    backend: hf_clip\n    args: {model: /models/clip}\n")
    monkeypatch.setenv(presets.ENV_VAR, str(good))
    names = [p.name for p in presets.load_presets()]
    assert "my-clip" in names and "e5v" in names
    bad = tmp_path / "bad.yaml"
    bad.write_text("presets:\n  x:\n    backend: tensorflow\n")
    with pytest.raises(TaskConfigError, match=r"bad.yaml: field 'presets.x.backend'"):
        presets.parse_catalogue(bad)
    bad.write_text("presets:\n  x:\n    backend: hf_clip\n    args: {model: [1, 2]}\n")
    with pytest.raises(TaskConfigError, match=r"presets.x.args.model"):
        presets.parse_catalogue(bad)
    bad.write_text("presets:\n  e5v:\n    backend: hf_clip\n")
    monkeypatch.setenv(presets.ENV_VAR, str(bad))
    with pytest.raises(TaskConfigError, match="already defined"):
        presets.load_presets()
    bad.write_text("presets: [unterminated\n")
    with pytest.raises(TaskConfigError, match="not valid YAML"):
        presets.parse_catalogue(bad)
