"""The shipped context-aware toy backend (toy_ctx): its files, that the backend
computes exactly what training optimised, that it reads the story (context helps
at L3/L4 on held-out movies, not at L1), and that training is deterministic and
never sees an evaluation movie."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch

from ctxbench import toy, toy_context as tc
from ctxbench.encoder import CachedEncoder
from ctxbench.families.context_retrieval import evaluator as cr
from ctxbench.families.context_retrieval.protocol import PROTOCOL_DEFAULTS
from ctxbench.families.context_retrieval.synthetic import EVAL_PURPOSE, build
from ctxbench.families.contract import EvalRequest
from ctxbench_plugins import toy_clip_backend as tcb
from ctxbench_plugins import toy_ctx_backend as tcx
from ctxbench_plugins.hf_common import ModelLoadError

MAX_BYTES_ALL_TOYS = 30 * 2**20


@pytest.fixture(scope="module")
def backend(isolated_ctxbench_cache):
    return tcx.make_toy_ctx(device="cpu")


def test_card_matches_the_shipped_files_and_base():
    card = tc.verify_card(tcx.MODEL_DIR)
    data = (tcx.MODEL_DIR / card["weights"]["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == card["weights"]["sha256"]
    assert card["base"]["weights_sha256"] == toy.verify_card(tcb.MODEL_DIR)["weights"]["sha256"]
    assert card["training"]["data_purpose"].startswith("train/")
    assert card["training"]["train_time_s"] < 30 * 60
    total = sum(p.stat().st_size for d in (tcb.MODEL_DIR, tcx.MODEL_DIR) for p in d.iterdir())
    assert total <= MAX_BYTES_ALL_TOYS, f"toy checkpoints {total / 2**20:.1f} MB > 30 MB"


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    for p in tcx.MODEL_DIR.iterdir():
        shutil.copy(p, tmp_path / p.name)
    blob = bytearray((tmp_path / tc.WEIGHTS_FILE).read_bytes())
    blob[-1] ^= 1
    (tmp_path / tc.WEIGHTS_FILE).write_bytes(bytes(blob))
    monkeypatch.setattr(tcx, "MODEL_DIR", tmp_path)
    with pytest.raises(ModelLoadError, match="does not match"):
        tcx.make_toy_ctx()


def test_declares_context_on_both_sides(backend):
    caps = backend.capabilities
    assert caps.image_context and caps.text_context and caps.normalized
    assert caps.context_method == tc.CONTEXT_METHOD
    assert backend.base.fingerprint() in backend.fingerprint()


def test_backend_computes_what_training_scored(backend):
    """The serving path (encode_images/encode_texts, eq. 2 by the evaluator) gives the
    same scores as training's pattern_scores for every pattern."""
    pil, stories, index, queries = tc.movie_batch(tc.HELDOUT_PURPOSE, 1, 3, full_names=True)
    model, tok = backend.model, backend.base.tokenizer
    images, q, c, idx, _ = tc._encode_batch(model, backend.base.preprocess, tok,
                                            (pil, stories, index, queries), "cpu")
    texts = [text for _, _, text in queries]
    ctx_of_image = [stories[i] for i in index]
    for pattern in tc.PATTERNS:
        want = tc.pattern_scores(model, images, q, c, idx, pattern)
        img = backend.encode_images(pil, ctx_of_image if pattern in tc.IMAGE_FUSED else [None] * len(pil))
        if pattern in tc.TEXT_FUSED:
            got = torch.stack([backend.encode_texts(texts, [ctx_of_image[n]] * len(texts)) @ img[n]
                               for n in range(len(pil))], dim=1)
        else:
            got = backend.encode_texts(texts, [None] * len(texts)) @ img.T
        torch.testing.assert_close(got, want.float(), atol=2e-5, rtol=0)


def test_each_distinct_string_passes_the_text_tower_once(backend, monkeypatch):
    backend._text_memo.clear()
    calls = []
    real = backend.model.text
    monkeypatch.setattr(backend.model, "text", lambda tokens: calls.append(len(tokens)) or real(tokens))
    story = "Title: x\nStory: A romance story. Mara waits."
    backend.encode_texts(["a red star", "a blue ring"], [story, story])
    backend.encode_texts(["a red star", "a blue ring"], [None, story])
    assert sum(calls) == 3


def test_reads_the_story_on_held_out_movies(backend):
    """On movies of the held-out stream (never trained on), the story helps at L3/L4
    with intervals excluding zero (paired cluster bootstrap), and L1 is not hurt in
    the patterns that fuse the query."""
    ds = build(n_groups=12, seed=3, purpose=tc.HELDOUT_PURPOSE)
    enc = CachedEncoder(backend, cache=None, progress=False)
    p = {**PROTOCOL_DEFAULTS, "bootstrap_resamples": 2000, "divergence": False}
    out = cr.evaluate(EvalRequest(task=None, dataset=ds, encoder=enc, protocol=p))
    for level in ("L3", "L4"):
        for pattern in ("query_ctx", "both_ctx"):
            diff = out.metrics[f"{level}/{pattern}-no_ctx/R@1"]
            assert diff.value > 0 and diff.ci[0] > 0, (level, pattern, diff)
    for pattern in ("query_ctx", "both_ctx"):
        assert out.metrics[f"L1/{pattern}-no_ctx/R@1"].ci[1] >= 0


def _tiny(out, seed):
    return tc.train_toy_context(out, tcb.MODEL_DIR, seed=seed, steps=2, n_groups=2, eval_every=2,
                                log=lambda s: None)


def test_training_is_deterministic_in_its_seed(tmp_path):
    a, b, c = (_tiny(tmp_path / name, seed) for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert a["weights"]["sha256"] == b["weights"]["sha256"] != c["weights"]["sha256"]
    assert tc.verify_card(tmp_path / "a")["training"]["steps"] == 2


def test_training_movies_never_replay_evaluation_movies():
    evaluation = build(n_groups=50, seed=0, purpose=EVAL_PURPOSE)
    eval_keys = {s.params_key() for s in evaluation.meta["scenes"].values()}
    for seed in range(20):
        train = build(n_groups=20, seed=seed, purpose=tc.DATA_PURPOSE, full_names=bool(seed % 2))
        assert not eval_keys & {s.params_key() for s in train.meta["scenes"].values()}
