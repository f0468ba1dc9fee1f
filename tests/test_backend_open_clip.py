"""open_clip: a tiny architecture from a config JSON, saved as a torch state dict and
as safetensors, loaded back through the backend; checked against open_clip itself."""

import json
import time

import pytest
import torch

from ctxbench.encoder import CachedEncoder
from ctxbench.families.context_retrieval.synthetic import build
from ctxbench.testing import tiny_models
from ctxbench_plugins import hf_common
from ctxbench_plugins.open_clip_backend import ctxbench_backends, make_open_clip


pytestmark = [pytest.mark.usefixtures("isolated_ctxbench_cache")]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("open_clip")
    return {fmt: tiny_models.build_open_clip(root / fmt, arch=f"ctxbench-test-{fmt}", fmt=fmt)
            for fmt in ("pt", "safetensors")}


@pytest.fixture(scope="module")
def dataset():
    return build(n_groups=2)


def _reference(config, ckpt, images, texts):
    import open_clip
    arch = config.stem
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
    state = torch.load(ckpt) if ckpt.suffix == ".pt" else __import__(
        "safetensors.torch", fromlist=["load_file"]).load_file(str(ckpt))
    model.load_state_dict(state)
    model.eval()
    tok = open_clip.get_tokenizer(arch)
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(im) for im in images]))
        txt = model.encode_text(tok(texts))
    return img / img.norm(dim=1, keepdim=True), txt / txt.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_checkpoint_loads_and_matches_open_clip(fmt, checkpoints, dataset):
    config, ckpt = checkpoints[fmt]
    backend = make_open_clip(model_config=str(config), pretrained=str(ckpt))
    images = [im.ref.load() for im in dataset.images[:5]]
    texts = [q for _, q in dataset.evaluation_queries("L1")[:5]]
    ref_img, ref_txt = _reference(config, ckpt, images, texts)
    img = backend.encode_images(images, [None] * 5)
    txt = backend.encode_texts(texts, [None] * 5)
    assert img.shape == (5, 16) and txt.shape == (5, 16)
    assert torch.allclose(img, ref_img, atol=1e-5) and torch.allclose(txt, ref_txt, atol=1e-5)
    assert backend.capabilities.normalized and backend.capabilities.context_method == "none"
    fp = backend.fingerprint()
    assert config.stem in fp and ckpt.name in fp and "sha256:" in fp and "fp32" in fp


def test_embedded_dataset_through_the_encoder_batch_invariant(checkpoints, dataset):
    config, ckpt = checkpoints["safetensors"]
    backend = ctxbench_backends()[0].factory(model_config=str(config), pretrained=str(ckpt))
    refs = [im.ref for im in dataset.images]
    queries = [q for _, q in dataset.evaluation_queries("L4")]
    a = CachedEncoder(backend, cache=None, batch_size=3, progress=False)
    b = CachedEncoder(backend, cache=None, batch_size=1, progress=False)
    assert torch.allclose(a.images(refs), b.images(refs), atol=1e-5)
    assert torch.allclose(a.texts(queries), b.texts(queries), atol=1e-5)


def test_late_fusion_formula_and_fingerprint(checkpoints, dataset):
    config, ckpt = checkpoints["pt"]
    plain = make_open_clip(model_config=str(config), pretrained=str(ckpt))
    fused = make_open_clip(model_config=str(config), pretrained=str(ckpt),
                           context_fusion="late", fusion_weight=2.0)
    assert fused.capabilities.context_method == "late_fusion"
    assert fused.fingerprint() != plain.fingerprint()
    images = [im.ref.load() for im in dataset.images[:3]]
    ctx = ["Title: One\nStory: a comedy.", None, "Title: Two\nStory: a horror story."]
    out = fused.encode_images(images, ctx)
    base = plain.encode_images(images, [None] * 3)
    c = plain.encode_texts([ctx[0], ctx[2]], [None, None])
    expect = torch.stack([base[0] + 2.0 * c[0], base[1], base[2] + 2.0 * c[1]])
    assert torch.allclose(out, expect / expect.norm(dim=1, keepdim=True), atol=1e-5)


def test_config_and_checkpoint_errors(tmp_path, checkpoints):
    config, ckpt = checkpoints["pt"]
    with pytest.raises(hf_common.ModelLoadError, match="pretrained="):
        make_open_clip(model_config=str(config))                      # random weights refused
    with pytest.raises(hf_common.ModelLoadError, match="no such checkpoint"):
        make_open_clip(model_config=str(config), pretrained=str(tmp_path / "missing.pt"))
    bad = tmp_path / "badarch.json"
    bad.write_text(json.dumps({"embed_dim": 16, "vision_cfg": {}}))
    with pytest.raises(hf_common.ModelLoadError, match="badarch.json: field 'text_cfg'"):
        make_open_clip(model_config=str(bad), pretrained=str(ckpt))
    with pytest.raises(hf_common.ModelLoadError, match="names a config after its file"):
        make_open_clip(arch="other", model_config=str(config), pretrained=str(ckpt))
    wider = tmp_path / "wider.json"
    cfg = tiny_models.open_clip_config()
    cfg["embed_dim"] = 24
    wider.write_text(json.dumps(cfg))
    with pytest.raises(hf_common.ModelLoadError, match="does not match the architecture"):
        make_open_clip(model_config=str(wider), pretrained=str(ckpt))
    with pytest.raises(hf_common.ModelLoadError, match="did you mean"):
        make_open_clip(arch="ViT-H-15", pretrained="laion2b_s32b_b79k")
    with pytest.raises(hf_common.ModelLoadError, match="not a tag of ViT-H-14"):
        make_open_clip(arch="ViT-H-14", pretrained="no_such_tag")


def test_uncached_pretrained_tag_fails_fast_offline():
    t0 = time.perf_counter()
    with pytest.raises(hf_common.ModelLoadError, match="HF_HUB_OFFLINE=1 forbids.*pretrained="):
        make_open_clip(arch="ViT-H-14", pretrained="laion2b_s32b_b79k")
    assert time.perf_counter() - t0 < 2.0
