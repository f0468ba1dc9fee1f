"""CUDA paths of the model backends (skipped without a GPU): bf16/fp16 loading,
conformance on the device, fp32 batch invariance on the device, and the
encoder's batch-size back-off on a real CUDA out-of-memory error.

Run on a GPU machine:
    HF_HUB_OFFLINE=1 pytest -q tests/test_backend_cuda.py -rs
"""

import pytest
import torch

from ctxbench.encoder import CachedEncoder
from ctxbench.inputs import ImageRef
from ctxbench.testing import probe_inputs, run_conformance, tiny_models


pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
              pytest.mark.usefixtures("isolated_ctxbench_cache")]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuda_models")
    out = {fam: tiny_models.build_vlm(root / fam, fam) for fam in tiny_models.VLM_FAMILIES}
    out["clip"] = tiny_models.build_clip(root / "clip", "clip")
    out["siglip"] = tiny_models.build_clip(root / "siglip", "siglip")
    out["qwen3"] = tiny_models.build_text_encoder(root / "qwen3", "qwen3")
    out["open_clip"] = tiny_models.build_open_clip(root / "oc", "ctxbench-cuda", fmt="safetensors")
    return out


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "auto"])
@pytest.mark.parametrize("name", ["clip", "siglip", "llava", "qwen2_vl", "gemma3", "open_clip"])
def test_conformance_on_cuda(dirs, name, dtype):
    if name == "open_clip":
        from ctxbench_plugins.open_clip_backend import ctxbench_backends
        config, ckpt = dirs["open_clip"]
        args = {"model_config": str(config), "pretrained": str(ckpt)}
    elif name in ("clip", "siglip"):
        from ctxbench_plugins.hf_clip import ctxbench_backends
        args = {"model": str(dirs[name])}
    else:
        from ctxbench_plugins.vlm_embed import ctxbench_backends
        args = {"model": str(dirs[name])}
    report = run_conformance(ctxbench_backends()[0], {**args, "dtype": dtype}, "cuda")
    assert report.ok, report.summary()
    expect = "fp16" if dtype == "fp16" else "bf16"   # auto = bf16 on a bf16-capable GPU
    assert f":{expect}" in report.fingerprint
    print("\n" + report.summary())


@pytest.mark.parametrize("family", tiny_models.VLM_FAMILIES)
def test_fp32_batch_equals_single_on_cuda(dirs, family):
    from ctxbench_plugins.vlm_embed import make_vlm_embed
    backend = make_vlm_embed(model=str(dirs[family]), device="cuda", dtype="fp32")
    assert next(backend.model.parameters()).is_cuda
    images, texts, ctx = probe_inputs(6)
    contexts = [None, ctx[0], ctx[1], None, ctx[0], None]
    batch = backend.encode_images(images, contexts)
    single = torch.cat([backend.encode_images([i], [c]) for i, c in zip(images, contexts)])
    assert batch.device.type == "cpu" and (batch - single).abs().max() < 1e-4


def test_caption_backend_on_cuda(dirs):
    from ctxbench_plugins.vlm_caption import make_vlm_caption
    backend = make_vlm_caption(model=str(dirs["qwen2_vl"]), embedder=str(dirs["qwen3"]),
                               device="cuda", dtype="bf16", max_new_tokens=6, cache_dir="none")
    report = run_conformance(backend, name="vlm_caption")
    assert report.ok, report.summary()


def test_encoder_backs_off_on_real_cuda_oom(dirs):
    """A backend whose activations scale with the batch: at 64 items it cannot fit;
    the encoder halves the batch until it does, and the results are unchanged."""
    from ctxbench_plugins.vlm_embed import make_vlm_embed
    backend = make_vlm_embed(model=str(dirs["llava"]), device="cuda", dtype="bf16")
    per_item = torch.cuda.get_device_properties(0).total_memory // 6
    real = backend.encode_images
    calls = []

    def hungry(images, contexts):
        calls.append(len(images))
        scratch = torch.empty(len(images) * per_item, dtype=torch.uint8, device="cuda")
        del scratch
        return real(images, contexts)

    backend.encode_images = hungry
    images, _, _ = probe_inputs(8)
    refs = [ImageRef.from_pil(im.rotate(k * 45)) for k in range(8) for im in images[:1]]
    enc = CachedEncoder(backend, cache=None, batch_size=64, progress=False)
    out = enc.images(refs)
    first_fit = next(i for i, c in enumerate(calls) if c <= 4)
    assert enc.batch_size <= 4 and first_fit >= 1, calls
    assert all(c == 8 for c in calls[:first_fit]) and all(c <= 4 for c in calls[first_fit:]), calls
    backend.encode_images = real
    expect = torch.cat([real([r.load()], [None]) for r in refs])
    assert (out - expect).abs().max() < 2e-2
