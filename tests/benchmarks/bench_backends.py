"""Model-backend benchmarks (run on demand):

    pytest -m benchmark tests/benchmarks/bench_backends.py -s

Per backend (tiny models built from configs, so the numbers measure the plumbing:
processor, prompting, padding, pooling, plus the encoder's dedupe/cache/checks),
items per second through ``CachedEncoder`` against a bare loop over the same
backend with the same batches, and peak memory (CUDA: max allocated during the timed runs; CPU: the process's
peak RSS so far, which includes the interpreter, torch and earlier models). ``CTXBENCH_BENCH_DEVICE=cuda`` runs it on a GPU.
Nothing asserts a speed; each result is printed as one line.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import resource  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from ctxbench.encoder import CachedEncoder  # noqa: E402
from ctxbench.synthetic_world import caption, rng_for, sample_scene, scene_ref  # noqa: E402
from ctxbench.testing import tiny_models  # noqa: E402

pytestmark = pytest.mark.benchmark
DEVICE = os.environ.get("CTXBENCH_BENCH_DEVICE", "cpu")
REPEATS = 3


def _inputs(n):
    rng = rng_for("bench/backends", 0)
    scenes = [sample_scene(rng) for _ in range(n)]
    return [scene_ref(s) for s in scenes], [f"{caption(s)} #{i}" for i, s in enumerate(scenes)]


def _peak_mb():
    if DEVICE.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux


def _measure(name, backend, refs, texts, bs, reset=lambda: None):
    """``reset`` empties backend-side caches (captions) before each timed phase."""
    images = [r.load() for r in refs]
    with torch.inference_mode():   # warm-up
        backend.encode_images(images[:bs], [None] * bs)
        backend.encode_texts(texts[:bs], [None] * bs)
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rows = {}
    for kind, items, call in (("images", refs, lambda xs: backend.encode_images([r.load() for r in xs],
                                                                                [None] * len(xs))),
                              ("texts", texts, lambda xs: backend.encode_texts(xs, [None] * len(xs)))):
        bare = through = 0.0
        for _ in range(REPEATS):   # best of REPEATS: the machine may be shared
            reset()
            t0 = time.perf_counter()
            with torch.inference_mode():
                for i in range(0, len(items), bs):
                    call(items[i:i + bs])
            bare = max(bare, len(items) / (time.perf_counter() - t0))
            enc = CachedEncoder(backend, cache=None, batch_size=bs, progress=False)
            reset()
            t0 = time.perf_counter()
            getattr(enc, kind)(items)
            through = max(through, len(items) / (time.perf_counter() - t0))
        rows[kind] = (bare, through)
    print(f"\n[bench] {name:<22} device={DEVICE} batch={bs} "
          f"images/s bare {rows['images'][0]:8.1f} encoder {rows['images'][1]:8.1f} | "
          f"texts/s bare {rows['texts'][0]:8.1f} encoder {rows['texts'][1]:8.1f} | "
          f"peak memory {_peak_mb():.0f} MiB")
    assert rows["images"][1] > 0 and rows["texts"][1] > 0


@pytest.fixture(scope="module")
def data():
    return _inputs(128)


def test_bench_hf_clip(tmp_path, data):
    from ctxbench_plugins.hf_clip import make_hf_clip
    for kind in ("clip", "siglip"):
        path = tiny_models.build_clip(tmp_path / kind, kind)
        _measure(f"hf_clip[{kind}]", make_hf_clip(model=str(path), device=DEVICE), *data, bs=32)


def test_bench_open_clip(tmp_path, data):
    from ctxbench_plugins.open_clip_backend import make_open_clip
    config, ckpt = tiny_models.build_open_clip(tmp_path, "ctxbench-bench", fmt="safetensors")
    _measure("open_clip", make_open_clip(model_config=str(config), pretrained=str(ckpt),
                                         device=DEVICE), *data, bs=32)


@pytest.mark.parametrize("family", tiny_models.VLM_FAMILIES)
def test_bench_vlm_embed(tmp_path, data, family):
    from ctxbench_plugins.vlm_embed import make_vlm_embed
    path = tiny_models.build_vlm(tmp_path / family, family)
    refs, texts = data
    _measure(f"vlm_embed[{family}]", make_vlm_embed(model=str(path), device=DEVICE),
             refs[:64], texts[:64], bs=8)


def test_bench_vlm_caption(tmp_path, data):
    from ctxbench_plugins.vlm_caption import CaptionStore, make_vlm_caption
    vlm = tiny_models.build_vlm(tmp_path / "qwen2_vl", "qwen2_vl")
    emb = tiny_models.build_text_encoder(tmp_path / "qwen3", "qwen3")
    backend = make_vlm_caption(model=str(vlm), embedder=str(emb), max_new_tokens=8,
                               cache_dir="none", device=DEVICE)
    refs, texts = data
    _measure("vlm_caption[qwen2_vl]", backend, refs[:32], texts[:32], bs=8,
             reset=lambda: setattr(backend, "store", CaptionStore(None)))
