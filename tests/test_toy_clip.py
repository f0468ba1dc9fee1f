"""The embedded default model (ctxbench.toy, ctxbench_plugins.toy_clip_backend).

- the shipped card matches its files (sha256, size, architecture, generator version);
- it loads through the ordinary open_clip backend path (a local checkpoint + config);
- it clearly beats `random` on the embedded L1 retrieval (context_retrieval_synthetic,
  no context): Recall@1 at least 0.6 above random's, with non-overlapping 95% CIs
  (measured when shipped: 0.975 [0.925, 1.0] vs 0.05 [0.0, 0.125]), and stays far
  below that at L3/L4, the levels that need the story;
- training is deterministic in its seed, and its data stream never replays the
  evaluation streams;
- the loss equals a hand-written InfoNCE, duplicates included.
"""

import hashlib
import json
import math

import numpy as np
import pytest
import torch

from ctxbench import toy, toy_data
from ctxbench.encoder import CachedEncoder
from ctxbench.families.context_retrieval import evaluator as cr
from ctxbench.families.context_retrieval.protocol import PROTOCOL_DEFAULTS
from ctxbench.families.contract import EvalRequest
from ctxbench import synthetic_world as world
from ctxbench.families.context_retrieval.synthetic import build
from ctxbench_plugins import toy_clip_backend as tcb
from ctxbench_plugins.open_clip_backend import OpenClipBackend
from ctxbench_plugins.random_backend import RandomBackend

L1_MARGIN = 0.6        # toy L1 R@1 minus random L1 R@1, at least
MAX_BYTES = 25 * 2**20


@pytest.fixture(scope="module")
def toy_backend(isolated_ctxbench_cache):
    return tcb.make_toy_clip(device="cpu")


@pytest.fixture(scope="module")
def dataset():
    return build(seed=0)   # the options of tasks/context_retrieval/context_retrieval_synthetic.yaml


def _evaluate(backend, dataset):
    enc = CachedEncoder(backend, cache=None, progress=False)
    p = {**PROTOCOL_DEFAULTS, "patterns": ["no_ctx"], "bootstrap_resamples": 1000,
         "divergence": False}
    return cr.evaluate(EvalRequest(task=None, dataset=dataset, encoder=enc, protocol=p)), enc


# ----------------------------------------------------------------------------- shipped files
def test_card_hash_and_fields_match_the_shipped_files():
    card = toy.verify_card(tcb.MODEL_DIR)
    weights = tcb.MODEL_DIR / card["weights"]["file"]
    data = weights.read_bytes()
    assert hashlib.sha256(data).hexdigest() == card["weights"]["sha256"]
    assert len(data) == card["weights"]["bytes"] <= MAX_BYTES
    shipped_cfg = json.loads((tcb.MODEL_DIR / toy.CONFIG_FILE).read_text())
    assert shipped_cfg == card["architecture"]["config"]
    assert card["architecture"]["open_clip_arch"] == toy.ARCH == (tcb.MODEL_DIR / toy.CONFIG_FILE).stem
    assert card["training"]["generator_version"] == world.GENERATOR_VERSION, (
        "the synthetic world changed since toy_clip was trained: retrain with "
        "`ctxbench toy train --out ctxbench_plugins/toy_clip` and commit the new card")
    assert card["training"]["data_purpose"].startswith("train/")
    assert card["training"]["train_time_s"] < 30 * 60
    from safetensors import safe_open
    with safe_open(str(weights), "pt") as fh:
        # batch-norm statistics are stored too, but they are buffers, not parameters
        n = sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys()
                if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert n == card["architecture"]["parameters"]


def test_tampered_weights_are_refused(tmp_path):
    for name in (toy.CARD_FILE, toy.CONFIG_FILE, toy.WEIGHTS_FILE):
        (tmp_path / name).write_bytes((tcb.MODEL_DIR / name).read_bytes())
    with open(tmp_path / toy.WEIGHTS_FILE, "r+b") as fh:
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 1]))
    with pytest.raises(ValueError, match="does not match"):
        toy.verify_card(tmp_path)


def test_loads_through_the_open_clip_backend(toy_backend):
    card = toy.verify_card(tcb.MODEL_DIR)
    assert isinstance(toy_backend, OpenClipBackend)
    fp = toy_backend.fingerprint()
    assert fp.startswith("open_clip:") and f"arch={toy.ARCH}" in fp
    assert card["weights"]["sha256"][:16] in fp
    spec = tcb.ctxbench_backends()[0]
    assert spec.name == "toy_clip" and spec.embedded_default
    # the same files through the plain open_clip backend give the same embeddings
    plain = OpenClipBackend(model_config=str(tcb.MODEL_DIR / toy.CONFIG_FILE),
                            pretrained=str(tcb.MODEL_DIR / toy.WEIGHTS_FILE))
    texts = ["a large red circle on a meadow background", "night-time light"]
    image = world.render(world.sample_scene(world.rng_for("test/toy_clip", 0)))
    assert torch.equal(plain.encode_texts(texts, [None, None]), toy_backend.encode_texts(texts, [None, None]))
    assert torch.equal(plain.encode_images([image], [None]), toy_backend.encode_images([image], [None]))


def test_unknown_backend_arg_is_refused():
    from ctxbench_plugins.hf_common import ModelLoadError
    with pytest.raises(ModelLoadError, match="unknown --backend-arg pretrained"):
        tcb.make_toy_clip(pretrained="x.safetensors")


def test_beats_random_on_embedded_l1(toy_backend, dataset):
    out_toy, enc = _evaluate(toy_backend, dataset)
    out_rand, _ = _evaluate(RandomBackend(), dataset)
    toy_l1, rand_l1 = out_toy.metrics["L1/no_ctx/R@1"], out_rand.metrics["L1/no_ctx/R@1"]
    assert toy_l1.value - rand_l1.value >= L1_MARGIN, (toy_l1, rand_l1)
    assert toy_l1.ci[0] > rand_l1.ci[1]
    # independent reference: Recall@1 by argmax over the pool, by hand
    queries = dataset.evaluation_queries("L1")
    img = torch.nn.functional.normalize(enc.images([i.ref for i in dataset.images]), dim=-1)
    txt = torch.nn.functional.normalize(enc.texts([q for _, q in queries]), dim=-1)
    hand = float(np.mean([int(torch.argmax(t @ img.T)) == target for t, (target, _) in zip(txt, queries)]))
    assert toy_l1.value == pytest.approx(hand)
    # what the suite measures: without context the deep levels stay far below L1
    for level in ("L3", "L4"):
        assert out_toy.metrics[f"{level}/no_ctx/R@1"].value < toy_l1.value - 0.5


# ----------------------------------------------------------------------------- training
def _tiny(out, seed):
    return toy.train_toy(out, seed=seed, steps=2, batch_size=8, n_heldout=16, eval_every=2,
                         log=lambda s: None)


def test_training_is_deterministic_in_its_seed(tmp_path):
    det_before = torch.are_deterministic_algorithms_enabled()
    a, b, c = (_tiny(tmp_path / name, seed) for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert a["weights"]["sha256"] == b["weights"]["sha256"] != c["weights"]["sha256"]
    assert torch.are_deterministic_algorithms_enabled() == det_before
    card = toy.verify_card(tmp_path / "a")
    assert card["training"]["seed"] == 0 and card["training"]["steps"] == 2
    # the trained files load through the open_clip backend like the shipped ones
    be = OpenClipBackend(model_config=str(tmp_path / "a" / toy.CONFIG_FILE),
                         pretrained=str(tmp_path / "a" / toy.WEIGHTS_FILE))
    assert be.encode_texts(["a red star"], [None]).shape == (1, toy.MODEL_CONFIG["embed_dim"])


def test_training_stream_never_replays_evaluation_scenes(dataset):
    rng = world.rng_for(toy.DATA_PURPOSE, 0)
    train_keys = {toy_data.sample_training_scene(rng).params_key() for _ in range(3000)}
    eval_keys = {scene.params_key() for scene in dataset.meta["scenes"].values()}
    assert not train_keys & eval_keys
    held, _ = toy.heldout_set(0, 64)
    assert not {s.params_key() for s in held} & train_keys


PICTURE_KINDS = ("caption", "objects", "object", "shape", "tags", "setting", "quality")


def _named_shapes(text: str) -> set[str]:
    return {s for s in world.SHAPES if s in text.replace(",", " ").replace(";", " ").split(" ")}


def test_training_texts_describe_their_scene():
    rng = world.rng_for("test/toy_texts", 0)
    for kind in PICTURE_KINDS:
        for _ in range(60):
            scene = toy_data.sample_training_scene(rng, 1 if kind == "shape" else (1, 3))
            text = toy_data.describe(scene, kind, rng)
            assert _named_shapes(text) <= {o.shape for o in scene.objects}, (kind, text, scene)
    for item in toy_data.sample_batch(rng, 256):
        names = _named_shapes(item.text)
        if item.kind == "clip":
            assert len(item.scenes) == toy_data.CLIP_FRAMES
            assert names == {o.shape for o in item.scenes[0].objects}, item
        elif item.kind != "mood":
            assert len(item.scenes) == 1 and names <= {o.shape for o in item.scenes[0].objects}, item


def test_shape_twins_differ_in_one_shape_and_their_texts_only_in_shape_words():
    rng = world.rng_for("test/toy_twins", 0)
    items = toy_data.sample_batch(rng, 512)
    pairs = [(a, b) for a, b in zip(items, items[1:])
             if a.kind == b.kind and a.kind in PICTURE_KINDS
             and [o.shape for o in a.scenes[0].objects] != [o.shape for o in b.scenes[0].objects]
             and [(o.colour, o.x) for o in a.scenes[0].objects] == [(o.colour, o.x) for o in b.scenes[0].objects]]
    assert len(pairs) > 100   # TWIN_P of the picture items have a twin
    for a, b in pairs:
        sa, sb = a.scenes[0], b.scenes[0]
        changed = [i for i, (x, y) in enumerate(zip(sa.objects, sb.objects)) if x != y]
        assert len(changed) == 1 and sb.objects[changed[0]].shape not in {o.shape for o in sa.objects}
        assert sa.background == sb.background and sa.style == sb.style
        words_a, words_b = a.text.split(" "), b.text.split(" ")
        assert len(words_a) == len(words_b)
        assert all(x == y or _named_shapes(x) for x, y in zip(words_a, words_b)), (a.text, b.text)


def test_mood_items_follow_the_sentiment_worlds_rule():
    from ctxbench.families.metadata_sentiment.synthetic import MOOD, POSITIVE_EMOTIONS, SIGNATURE_SHAPE
    rng = world.rng_for("test/toy_mood", 0)
    items = [toy_data.mood_item(rng) for _ in range(400)]
    emotions = [it.label for it in items]
    assert all(it.text.endswith(MOOD[e]) for it, e in zip(items, emotions))   # the label is the text's mood
    warm = np.array([it.scenes[0].objects[0].colour in world.WARM_COLOURS for it in items])
    positive = np.array([e in POSITIVE_EMOTIONS for e in emotions])
    assert (warm == positive).mean() > 0.9
    signature = np.mean([it.scenes[0].objects[0].shape == SIGNATURE_SHAPE[e] for it, e in zip(items, emotions)])
    assert signature > 0.7


def test_clip_embedding_is_the_normalised_mean_of_normalised_frames():
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(7, 5, generator=g)
    owner = torch.tensor([0, 1, 1, 1, 1, 2, 2])
    out = toy.item_embeddings(frames, owner, 3)
    unit = torch.nn.functional.normalize(frames, dim=-1)
    for item, rows in ((0, [0]), (1, [1, 2, 3, 4]), (2, [5, 6])):
        ref = unit[rows].mean(0)
        assert torch.allclose(out[item], ref / ref.norm(), atol=1e-6)


# ----------------------------------------------------------------------------- loss
def test_contrastive_loss_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(4, 5, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(4, 5, generator=g), dim=-1)
    scale = torch.tensor(10.0)
    texts = ["a", "b", "a", "c"]
    same = torch.tensor([[x == y for y in texts] for x in texts])

    def hand(same_rows):
        total_i = total_t = 0.0
        for i in range(4):
            pos = [j for j in range(4) if same_rows[i][j]]
            li = [float(scale * img[i] @ txt[j]) for j in range(4)]
            lt = [float(scale * txt[i] @ img[j]) for j in range(4)]
            lse_i = math.log(sum(math.exp(v) for v in li))
            lse_t = math.log(sum(math.exp(v) for v in lt))
            total_i += -sum(li[j] - lse_i for j in pos) / len(pos)
            total_t += -sum(lt[j] - lse_t for j in pos) / len(pos)
        return 0.5 * (total_i + total_t) / 4

    assert float(toy.contrastive_loss(img, txt, scale, same)) == pytest.approx(hand(same.tolist()), rel=1e-5)
    eye = torch.eye(4, dtype=torch.bool)
    ref = 0.5 * (torch.nn.functional.cross_entropy(scale * img @ txt.T, torch.arange(4))
                 + torch.nn.functional.cross_entropy(scale * txt @ img.T, torch.arange(4)))
    assert float(toy.contrastive_loss(img, txt, scale, eye)) == pytest.approx(float(ref), rel=1e-6)
