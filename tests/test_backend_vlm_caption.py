"""vlm_caption and the text embedder: tiny captioners (Qwen2-VL, LLaVA) and tiny
text encoders (BERT with mean pooling, Qwen3 with last-token pooling), all loaded
from save_pretrained directories; pooling checked against hand computations;
the caption cache checked for reuse and crash safety."""

import json

import pytest
import torch

from ctxbench.encoder import CachedEncoder
from ctxbench.inputs import context_key, pil_key
from ctxbench.families.context_retrieval.synthetic import build
from ctxbench.testing import tiny_models
from ctxbench_plugins import hf_common
from ctxbench_plugins.text_embedder import TextEmbedder
from ctxbench_plugins.vlm_caption import CaptionStore, make_vlm_caption


pytestmark = [pytest.mark.usefixtures("isolated_ctxbench_cache")]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("caption")
    return {"qwen2_vl": tiny_models.build_vlm(root / "qwen2_vl", "qwen2_vl"),
            "llava": tiny_models.build_vlm(root / "llava", "llava"),
            "bert": tiny_models.build_text_encoder(root / "bert", "bert"),
            "qwen3": tiny_models.build_text_encoder(root / "qwen3", "qwen3")}


@pytest.fixture(scope="module")
def dataset():
    return build(n_groups=2)


# ----------------------------------------------------------------------------- text embedder
def _hidden(path, texts):
    from transformers import AutoModel, AutoTokenizer
    model = AutoModel.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    out = []
    with torch.no_grad():
        for t in texts:   # one at a time: no padding in the reference
            ids = tok(t, return_tensors="pt")
            out.append(model(**ids).last_hidden_state[0])
    return out


def test_mean_pooling_reads_sentence_transformers_config(dirs):
    emb = TextEmbedder(str(dirs["bert"]))
    assert emb.pooling == "mean"
    texts = ["a red circle", "a much longer sentence about a blue square at dusk", "x"]
    got = emb.embed(texts)
    expect = torch.stack([h.mean(0) for h in _hidden(dirs["bert"], texts)])
    assert torch.allclose(got, expect / expect.norm(dim=1, keepdim=True), atol=1e-5)


def test_last_token_pooling_for_decoder_embedders(dirs):
    emb = TextEmbedder(str(dirs["qwen3"]))
    assert emb.pooling == "last"
    texts = ["a red circle", "a much longer sentence about a blue square at dusk", "x"]
    got = emb.embed(texts)
    expect = torch.stack([h[-1] for h in _hidden(dirs["qwen3"], texts)])
    assert torch.allclose(got, expect / expect.norm(dim=1, keepdim=True), atol=1e-5)
    assert TextEmbedder(str(dirs["qwen3"]), pooling="mean").fingerprint() != emb.fingerprint()


def test_unsupported_sentence_transformers_module_is_refused(tmp_path):
    path = tiny_models.build_text_encoder(tmp_path / "st", "bert")
    modules = json.loads((path / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense",
                    "type": "sentence_transformers.models.Dense"})
    (path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(hf_common.ModelLoadError, match="models.Dense is not supported"):
        TextEmbedder(str(path))


# ----------------------------------------------------------------------------- captioning
@pytest.fixture(scope="module")
def captioner(dirs, tmp_path_factory):
    cache = tmp_path_factory.mktemp("captions")
    return make_vlm_caption(model=str(dirs["qwen2_vl"]), embedder=str(dirs["qwen3"]),
                            max_new_tokens=6, cache_dir=str(cache)), cache


def test_caption_is_greedy_generation_embedded_by_the_text_embedder(captioner, dirs, dataset):
    backend, _ = captioner
    images = [im.ref.load() for im in dataset.images[:3]]
    caps = backend.generate(images, [None] * 3)
    assert caps == backend.generate(images, [None] * 3)                 # greedy: deterministic
    assert caps == [backend.generate([im], [None])[0] for im in images]  # batch = single
    emb = backend.encode_images(images, [None] * 3)
    assert torch.allclose(emb, TextEmbedder(str(dirs["qwen3"])).embed(caps), atol=1e-5)
    assert backend.capabilities.image_context and backend.capabilities.normalized


def test_context_enters_the_caption_prompt(captioner, dataset, monkeypatch):
    backend, _ = captioner
    seen = []
    real = backend.prompter.render
    monkeypatch.setattr(backend.prompter, "render", lambda pieces: seen.extend(real(pieces)) or real(pieces))
    story = dataset.stories[dataset.assignment[dataset.images[0].id]].context_text()
    backend.generate([dataset.images[0].ref.load()], [story])
    assert story in seen[0] and "Describe this image" in seen[0]


def test_caption_cache_reuse_keys_and_torn_lines(captioner, dirs, dataset, monkeypatch):
    backend, cache = captioner
    images = [im.ref.load() for im in dataset.images[3:6]]
    story = "Title: A\nStory: a tragedy."
    ctx = [None, story, None]
    first = backend.encode_images(images, ctx)
    caps = backend.captions()
    assert caps[pil_key(images[0])] and f"{pil_key(images[1])}#{context_key(story)}" in caps
    segs = list(cache.rglob("seg-*.jsonl"))
    assert segs and all(json.loads(line)["caption"] is not None
                        for s in segs for line in s.read_text().splitlines())
    # a second backend with the same captioner generates nothing
    again = make_vlm_caption(model=str(dirs["qwen2_vl"]), embedder=str(dirs["qwen3"]),
                             max_new_tokens=6, cache_dir=str(cache))
    monkeypatch.setattr(again, "generate", lambda *a: pytest.fail("cache miss"))
    assert torch.allclose(again.encode_images(images, ctx), first, atol=1e-6)
    # another max_new_tokens is another captioner: its own cache
    other = make_vlm_caption(model=str(dirs["qwen2_vl"]), embedder=str(dirs["qwen3"]),
                             max_new_tokens=3, cache_dir=str(cache))
    assert other.captioner_fingerprint() != backend.captioner_fingerprint()
    assert len(other.store) == 0
    # a torn segment (killed mid-write by a foreign writer) is skipped line by line
    seg = segs[0]
    seg.write_text(seg.read_text() + '{"key": "abc", "capt')
    assert len(CaptionStore(seg.parent)) == len(backend.store)


def test_caption_backend_in_all_patterns_through_the_encoder(dirs, dataset, tmp_path):
    backend = make_vlm_caption(model=str(dirs["llava"]), embedder=str(dirs["bert"]),
                               max_new_tokens=4, cache_dir="none")
    assert backend.store.dir is None
    enc = CachedEncoder(backend, cache=None, batch_size=4, progress=False)
    refs = [im.ref for im in dataset.images[:5]]
    ctx = [dataset.stories[dataset.assignment[im.id]].context_text() for im in dataset.images[:5]]
    queries = [dataset.queries[(im.id, dataset.assignment[im.id], "L2")] for im in dataset.images[:5]]
    for img_c, txt_c in ((None, None), (None, ctx), (ctx, None), (ctx, ctx)):
        phi, psi = enc.images(refs, img_c), enc.texts(queries, txt_c)
        assert phi.shape == psi.shape == (5, 32)
    q0, q1 = enc.texts(queries), enc.texts(queries, ctx)
    assert (q0 - q1).abs().max(dim=1).values.min() > 1e-4
    assert len(backend.captions()) == 10     # 5 images x (no context, own context)


def test_caption_argument_errors(dirs):
    with pytest.raises(hf_common.ModelLoadError, match="max_new_tokens"):
        make_vlm_caption(model=str(dirs["llava"]), embedder=str(dirs["bert"]), max_new_tokens=0)
    with pytest.raises(hf_common.ModelLoadError, match="caption_prompt"):
        make_vlm_caption(model=str(dirs["llava"]), embedder=str(dirs["bert"]), caption_prompt="hi")
    with pytest.raises(hf_common.ModelLoadError, match="HF_HUB_OFFLINE=1 forbids"):
        make_vlm_caption(model=str(dirs["llava"]))   # default embedder is not cached here
