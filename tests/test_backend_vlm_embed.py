"""vlm_embed: tiny LLaVA, Qwen2-VL and Gemma3 models (config -> save_pretrained ->
backend), E5-V last-token pooling checked against the full model's hidden states,
batch = single to 1e-4, and the four injection patterns on the embedded data."""

import pytest
import torch

from ctxbench.encoder import CachedEncoder
from ctxbench.families.context_retrieval.synthetic import build
from ctxbench.testing import tiny_models
from ctxbench_plugins import hf_common
from ctxbench_plugins.vlm_embed import IMAGE, fill, make_vlm_embed

FAMILIES = ("llava", "qwen2_vl", "gemma3")


pytestmark = [pytest.mark.usefixtures("isolated_ctxbench_cache")]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm")
    return {fam: tiny_models.build_vlm(root / fam, fam) for fam in FAMILIES}


@pytest.fixture(scope="module")
def backends(model_dirs):
    return {fam: make_vlm_embed(model=str(path)) for fam, path in model_dirs.items()}


@pytest.fixture(scope="module")
def dataset():
    return build(n_groups=2)


def _story(dataset, image):
    return dataset.stories[dataset.assignment[image.id]].context_text()


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_equals_one_at_a_time_with_mixed_contexts(family, backends, dataset):
    backend = backends[family]
    images = [im.ref.load() for im in dataset.images[:4]]
    ctx = [None, _story(dataset, dataset.images[1]), None, "Title: X\nStory: short."]
    texts = [q for _, q in dataset.evaluation_queries("L3")[:4]]
    batch = backend.encode_images(images, ctx)
    single = torch.cat([backend.encode_images([im], [c]) for im, c in zip(images, ctx)])
    assert (batch - single).abs().max() < 1e-4
    tb = backend.encode_texts(texts, ctx)
    ts = torch.cat([backend.encode_texts([t], [c]) for t, c in zip(texts, ctx)])
    assert (tb - ts).abs().max() < 1e-4
    assert torch.allclose(batch.norm(dim=1), torch.ones(4), atol=1e-5)


@pytest.mark.parametrize("family", ["llava", "gemma3"])
def test_embedding_is_the_last_layer_last_token_state(family, model_dirs, backends, dataset):
    """Reference: the full image-text-to-text model run on one unpadded prompt with
    output_hidden_states; E5-V's embedding is hidden_states[-1][:, -1]."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    path = model_dirs[family]
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    proc = AutoProcessor.from_pretrained(path)
    image = dataset.images[0].ref.load()
    messages = [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "\nSummary above image in one word:"}]}]
    prompt = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = proc(text=[prompt], images=[[image]], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True).hidden_states[-1][:, -1]
    expect = hidden / hidden.norm(dim=1, keepdim=True)
    got = backends[family].encode_images([image], [None])
    assert torch.allclose(got, expect, atol=1e-5)


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_four_injection_patterns_on_the_embedded_data(family, backends, dataset):
    backend = backends[family]
    assert backend.capabilities.image_context and backend.capabilities.text_context
    assert backend.capabilities.context_method == "prompt"
    enc = CachedEncoder(backend, cache=None, batch_size=8, progress=False)
    refs = [im.ref for im in dataset.images]
    ctx = [_story(dataset, im) for im in dataset.images]
    queries = [dataset.queries[(im.id, dataset.assignment[im.id], "L4")] for im in dataset.images]
    out = {}
    for pattern, (img_c, txt_c) in {"no_ctx": (None, None), "query_ctx": (None, ctx),
                                    "image_ctx": (ctx, None), "both_ctx": (ctx, ctx)}.items():
        phi, psi = enc.images(refs, img_c), enc.texts(queries, txt_c)
        assert phi.shape == (len(refs), 32) and psi.shape == (len(refs), 32)
        assert torch.isfinite(phi).all() and torch.isfinite(psi).all()
        out[pattern] = (phi, psi)
    # the context really enters: image_ctx changes phi, query_ctx changes psi
    assert (out["image_ctx"][0] - out["no_ctx"][0]).abs().max(dim=1).values.min() > 1e-4
    assert (out["query_ctx"][1] - out["no_ctx"][1]).abs().max(dim=1).values.min() > 1e-4
    assert torch.equal(out["both_ctx"][0], out["image_ctx"][0])   # served from the cache
    # images of one group get different contexts -> different embeddings per story
    two = [dataset.stories[s].context_text() for s in dataset.groups[0].story_ids]
    a = enc.images([refs[0], refs[0]], two)
    assert not torch.allclose(a[0], a[1], atol=1e-4)


def test_context_sides_prompt_format_and_fingerprint(model_dirs, backends):
    path = str(model_dirs["llava"])
    base = backends["llava"]
    image_only = make_vlm_embed(model=path, context_sides="image")
    assert image_only.capabilities.image_context and not image_only.capabilities.text_context
    none = make_vlm_embed(model=path, context_sides="none")
    assert none.capabilities.context_method == "none"
    raw = make_vlm_embed(model=path, prompt_format="raw")
    custom = make_vlm_embed(model=path, image_prompt="<image>\nOne word:")
    fps = {b.fingerprint() for b in (base, image_only, none, raw, custom)}
    assert len(fps) == 5
    assert base.fingerprint() == make_vlm_embed(model=path).fingerprint()
    assert raw.prompter.render([fill("A <image> B")]) == ["A <image> B"]
    chat = base.prompter.render([fill("Context: <context>\n<image>\nSum:", context="it is <sent>")])
    assert chat[0].count("<image>") == 1 and "Context: it is <sent>\n" in chat[0]
    assert chat[0].endswith("<|im_start|>assistant\n")       # the generation prompt
    # user text is never parsed for placeholders
    assert fill("<sent>!", sent="<image>") == ["<image>!"]
    assert fill("a<image>b") == ["a", IMAGE, "b"]


def test_template_and_argument_errors(model_dirs):
    path = str(model_dirs["llava"])
    with pytest.raises(hf_common.ModelLoadError, match="image_prompt.*<image> exactly once"):
        make_vlm_embed(model=path, image_prompt="no image here")
    with pytest.raises(hf_common.ModelLoadError, match="text_context_prompt.*<context>"):
        make_vlm_embed(model=path, text_context_prompt="<sent> only")
    with pytest.raises(hf_common.ModelLoadError, match="context_sides"):
        make_vlm_embed(model=path, context_sides="left")
    with pytest.raises(hf_common.ModelLoadError, match="pooling"):
        make_vlm_embed(model=path, pooling="max")
    with pytest.raises(hf_common.ModelLoadError, match="dtype"):
        make_vlm_embed(model=path, dtype="int8")
    with pytest.raises(hf_common.ModelLoadError, match="HF_HUB_OFFLINE=1 forbids"):
        make_vlm_embed(model="google/gemma-3-4b-pt-not-cached")


def test_mean_pooling_and_unnormalised_option(model_dirs, dataset):
    path = str(model_dirs["gemma3"])
    raw = make_vlm_embed(model=path, pooling="mean", normalize=False)
    assert not raw.capabilities.normalized
    texts = [q for _, q in dataset.evaluation_queries("L1")[:3]]
    out = raw.encode_texts(texts, [None] * 3)
    assert not torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-3)
    single = torch.cat([raw.encode_texts([t], [None]) for t in texts])
    assert (out - single).abs().max() < 1e-4

