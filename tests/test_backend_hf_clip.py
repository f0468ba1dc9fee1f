"""hf_clip: tiny CLIP and SigLIP models saved with save_pretrained and loaded back
through the backend's normal path; checked against transformers called directly."""

import time

import pytest
import torch

from ctxbench.encoder import CachedEncoder
from ctxbench.families.context_retrieval.synthetic import build
from ctxbench.testing import tiny_models
from ctxbench_plugins import hf_common
from ctxbench_plugins.hf_clip import make_hf_clip


pytestmark = [pytest.mark.usefixtures("isolated_ctxbench_cache")]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_clip")
    return {kind: tiny_models.build_clip(root / kind, kind) for kind in ("clip", "siglip")}


@pytest.fixture(scope="module")
def dataset():
    return build(n_groups=2)


@pytest.fixture(scope="module")
def backends(model_dirs):
    return {kind: make_hf_clip(model=str(path)) for kind, path in model_dirs.items()}


def _reference(path, kind, images, texts):
    """transformers called directly, the way its documentation shows."""
    from transformers import AutoModel, AutoProcessor
    model = AutoModel.from_pretrained(path).eval()
    proc = AutoProcessor.from_pretrained(path)
    with torch.no_grad():
        pix = proc(images=images, return_tensors="pt")["pixel_values"]
        img = model.get_image_features(pixel_values=pix).pooler_output
        if kind == "siglip":
            ids = proc.tokenizer(texts, padding="max_length", max_length=16, truncation=True,
                                 return_tensors="pt")["input_ids"]
            txt = model.get_text_features(input_ids=ids).pooler_output
        else:
            tok = proc.tokenizer(texts, padding=True, return_tensors="pt")
            txt = model.get_text_features(input_ids=tok["input_ids"],
                                          attention_mask=tok["attention_mask"]).pooler_output
    return img / img.norm(dim=1, keepdim=True), txt / txt.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_matches_transformers_reference_and_is_normalised(kind, model_dirs, backends, dataset):
    backend = backends[kind]
    images = [im.ref.load() for im in dataset.images[:4]]
    texts = [q for _, q in dataset.evaluation_queries("L1")[:4]]
    ref_img, ref_txt = _reference(model_dirs[kind], kind, images, texts)
    img = backend.encode_images(images, [None] * 4)
    txt = backend.encode_texts(texts, [None] * 4)
    assert torch.allclose(img, ref_img, atol=1e-5)
    assert torch.allclose(txt, ref_txt, atol=1e-5)
    assert torch.allclose(img.norm(dim=1), torch.ones(4), atol=1e-5)
    assert backend.capabilities.normalized and not backend.capabilities.image_context


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_batch_equals_single_through_the_encoder(kind, backends, dataset):
    backend = backends[kind]
    refs = [im.ref for im in dataset.images]
    queries = [q for _, q in dataset.evaluation_queries("L2")]
    batched = CachedEncoder(backend, cache=None, batch_size=8, progress=False)
    single = CachedEncoder(backend, cache=None, batch_size=1, progress=False)
    assert torch.allclose(batched.images(refs), single.images(refs), atol=1e-4)
    assert torch.allclose(batched.texts(queries), single.texts(queries), atol=1e-4)


def test_no_context_pattern_only_without_fusion(backends, dataset):
    from ctxbench.errors import CapabilityError
    enc = CachedEncoder(backends["clip"], cache=None, progress=False)
    story = dataset.stories[dataset.assignment[dataset.images[0].id]].context_text()
    with pytest.raises(CapabilityError):
        enc.images([dataset.images[0].ref], [story])
    with pytest.raises(CapabilityError):
        enc.texts(["a query"], [story])


def test_late_fusion_matches_the_formula_in_all_four_patterns(model_dirs, backends, dataset):
    w = 0.7
    fused = make_hf_clip(model=str(model_dirs["clip"]), context_fusion="late", fusion_weight=w)
    plain = backends["clip"]
    assert fused.capabilities.context_method == "late_fusion"
    assert fused.capabilities.image_context and fused.capabilities.text_context
    assert fused.fingerprint() != plain.fingerprint() and "late_fusion" in fused.fingerprint()
    enc = CachedEncoder(fused, cache=None, batch_size=4, progress=False)
    refs = [im.ref for im in dataset.images]
    ctx = [dataset.stories[dataset.assignment[im.id]].context_text() for im in dataset.images]
    queries = [dataset.queries[(im.id, dataset.assignment[im.id], "L3")] for im in dataset.images]
    i0, i1 = enc.images(refs), enc.images(refs, ctx)
    t0, t1 = enc.texts(queries), enc.texts(queries, ctx)
    # independent reference: the plain model's embeddings combined by hand
    norm = lambda x: x / x.norm(dim=1, keepdim=True)  # noqa: E731
    pi = plain.encode_images([r.load() for r in refs], [None] * len(refs))
    pt = plain.encode_texts(queries, [None] * len(queries))
    pc = plain.encode_texts(ctx, [None] * len(ctx))
    assert torch.allclose(i0, norm(pi), atol=1e-5) and torch.allclose(t0, norm(pt), atol=1e-5)
    assert torch.allclose(i1, norm(norm(pi) + w * norm(pc)), atol=1e-5)
    assert torch.allclose(t1, norm(norm(pt) + w * norm(pc)), atol=1e-5)
    assert not torch.allclose(i0, i1, atol=1e-3)


def test_fingerprint_names_weights_precision_and_settings(tmp_path, model_dirs, backends):
    fp = backends["clip"].fingerprint()
    assert fp == make_hf_clip(model=str(model_dirs["clip"])).fingerprint()
    assert "fp32" in fp and hf_common.PLUGIN_VERSION in fp and "pad=longest" in fp
    assert "pad=max_length" in backends["siglip"].fingerprint()
    assert make_hf_clip(model=str(model_dirs["clip"]), dtype="bf16").fingerprint() != fp
    # different weights in a copy -> different content hash
    copy = tiny_models.build_clip(tmp_path / "clip2", "clip", seed=1)
    assert make_hf_clip(model=str(copy)).fingerprint() != fp


def test_bf16_runs_and_stays_close(model_dirs, backends, dataset):
    b16 = make_hf_clip(model=str(model_dirs["clip"]), dtype="bf16")
    assert b16.dtype == torch.bfloat16 and "bf16" in b16.fingerprint()
    images = [im.ref.load() for im in dataset.images[:3]]
    out = b16.encode_images(images, [None] * 3)
    assert out.dtype == torch.float32
    assert torch.allclose(out, backends["clip"].encode_images(images, [None] * 3), atol=5e-2)


def test_broken_tokenizer_is_refused(tmp_path):
    """A tokenizer with a near-empty vocabulary (what some tokenizer classes return
    for a hub id offline) must fail loudly, not give garbage embeddings."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    path = tiny_models.build_clip(tmp_path / "broken", "clip")
    tok = Tokenizer(models.WordLevel({"<|startoftext|>": 0, "<|endoftext|>": 1, "a": 2},
                                     unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path / "tokenizer.json"))
    with pytest.raises(hf_common.TokenizerSanityError, match="only 3 tokens"):
        make_hf_clip(model=str(path))
    with pytest.raises(hf_common.TokenizerSanityError, match="round trip|unknown token"):
        make_hf_clip(model=str(path), min_vocab=3)


def test_missing_model_fails_fast_offline():
    t0 = time.perf_counter()
    with pytest.raises(hf_common.ModelLoadError, match="HF_HUB_OFFLINE=1 forbids"):
        make_hf_clip(model="nobody-here/no-such-clip-model")
    assert time.perf_counter() - t0 < 2.0
    with pytest.raises(hf_common.ModelLoadError, match="no such directory"):
        make_hf_clip(model="./not/a/dir")
    with pytest.raises(hf_common.ModelLoadError, match="model="):
        make_hf_clip()


def test_missing_model_fails_fast_when_hub_unreachable(monkeypatch):
    """HF_HUB_OFFLINE unset and no network: refuse after one short probe, with the fix."""
    import huggingface_hub.constants as hub_constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")   # nothing listens on port 9
    t0 = time.perf_counter()
    with pytest.raises(hf_common.ModelLoadError, match="cannot be reached.*HF_HUB_OFFLINE=1"):
        make_hf_clip(model="nobody-here/no-such-clip-model")
    assert time.perf_counter() - t0 < hf_common.HUB_PROBE_TIMEOUT_S + 2


def test_a_model_without_towers_is_refused(tmp_path):
    path = tiny_models.build_text_encoder(tmp_path / "bert", "bert")
    with pytest.raises(hf_common.ModelLoadError, match="not a dual encoder|cannot load"):
        make_hf_clip(model=str(path))


def test_hub_id_in_the_local_cache_loads_offline_and_pins_the_commit(tmp_path, monkeypatch):
    """A hub id already in the HF cache is loaded from its snapshot (no network);
    the fingerprint names the snapshot's commit."""
    import huggingface_hub.constants as hub_constants
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--tiny-org--tiny-clip"
    tiny_models.build_clip(repo / "snapshots" / commit, "clip")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    backend = make_hf_clip(model="tiny-org/tiny-clip")
    assert f"hub:tiny-org/tiny-clip@{commit}" in backend.fingerprint()
    assert backend.source.path == repo / "snapshots" / commit
