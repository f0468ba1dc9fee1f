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


# --------------------------------------------------------------- model=<hub-layout folder>

def _hub_folder(path, config, ckpt, preprocess=None):
    """The layout open_clip publishes on the hub: open_clip_config.json + weights."""
    from safetensors.torch import load_file, save_file
    path.mkdir(parents=True, exist_ok=True)
    doc = {"model_cfg": json.loads(config.read_text()),
           "preprocess_cfg": preprocess or {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    (path / "open_clip_config.json").write_text(json.dumps(doc))
    state = torch.load(ckpt) if ckpt.suffix == ".pt" else load_file(str(ckpt))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / "open_clip_model.safetensors"))
    return path


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory, checkpoints):
    config, ckpt = checkpoints["safetensors"]
    return _hub_folder(tmp_path_factory.mktemp("oc_hub") / "tiny", config, ckpt)


def test_model_folder_sets_arch_preprocessing_and_weights(hub_folder, checkpoints, dataset):
    config, ckpt = checkpoints["safetensors"]
    backend = make_open_clip(model=str(hub_folder))
    ref = make_open_clip(model_config=str(config), pretrained=str(ckpt))
    texts = [q for _, q in dataset.evaluation_queries("L1")[:4]]
    assert torch.allclose(backend.encode_texts(texts, [None] * 4),
                          ref.encode_texts(texts, [None] * 4), atol=1e-5)
    norm = [t for t in backend.preprocess.transforms if type(t).__name__ == "Normalize"][0]
    assert list(norm.mean) == [0.5, 0.5, 0.5] and list(norm.std) == [0.25, 0.25, 0.25]
    images = [im.ref.load() for im in dataset.images[:2]]
    assert not torch.allclose(backend.encode_images(images, [None] * 2),   # other mean/std
                              ref.encode_images(images, [None] * 2), atol=1e-4)
    fp = backend.fingerprint()
    cfg_hash = hf_common.file_hash(hub_folder / "open_clip_config.json")[:16]
    w_hash = hf_common.file_hash(hub_folder / "open_clip_model.safetensors")[:16]
    assert f"cfg=sha256:{cfg_hash}" in fp and f"open_clip_model.safetensors@sha256:{w_hash}" in fp


def test_model_folder_fingerprint_follows_config_and_weights(tmp_path, checkpoints):
    config, ckpt = checkpoints["safetensors"]
    a = make_open_clip(model=str(_hub_folder(tmp_path / "a", config, ckpt))).fingerprint()
    b = make_open_clip(model=str(_hub_folder(tmp_path / "b", config, checkpoints["pt"][1]))
                       ).fingerprint()
    c = make_open_clip(model=str(_hub_folder(tmp_path / "c", config, ckpt,
                                             {"mean": [0.4] * 3, "std": [0.2] * 3}))).fingerprint()
    assert len({a, b, c}) == 3


def test_model_folder_errors(tmp_path, hub_folder, checkpoints):
    config, ckpt = checkpoints["safetensors"]
    with pytest.raises(hf_common.ModelLoadError, match="cannot be combined with arch=ViT-B-32"):
        make_open_clip(model=str(hub_folder), arch="ViT-B-32")
    with pytest.raises(hf_common.ModelLoadError,
                       match="combined with pretrained=.*model_config=.*drop pretrained and model_config"):
        make_open_clip(model=str(hub_folder), pretrained=str(ckpt), model_config=str(config))
    (tmp_path / "empty").mkdir()
    with pytest.raises(hf_common.ModelLoadError, match="no open_clip_config.json"):
        make_open_clip(model=str(tmp_path / "empty"))
    nowt = tmp_path / "noweights"
    nowt.mkdir()
    (nowt / "open_clip_config.json").write_text((hub_folder / "open_clip_config.json").read_text())
    with pytest.raises(hf_common.ModelLoadError, match="no weights file"):
        make_open_clip(model=str(nowt))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "open_clip_config.json").write_text(json.dumps({"preprocess_cfg": {}}))
    with pytest.raises(hf_common.ModelLoadError, match="no 'model_cfg'"):
        make_open_clip(model=str(bad))


def test_model_hub_id_from_the_cache_offline(tmp_path, monkeypatch, hub_folder):
    import shutil
    import huggingface_hub.constants as hub_constants
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--tiny-org--tiny-open-clip"
    shutil.copytree(hub_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    backend = make_open_clip(model="hf-hub:tiny-org/tiny-open-clip")
    assert f"hub:tiny-org/tiny-open-clip@{commit}" in backend.fingerprint()
    t0 = time.perf_counter()
    with pytest.raises(hf_common.ModelLoadError, match="HF_HUB_OFFLINE=1 forbids"):
        make_open_clip(model="hf-hub:laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
    assert time.perf_counter() - t0 < 2.0
