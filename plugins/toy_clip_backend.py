"""`toy_clip`: the small CLIP that ships with ctxbench (an embedded default backend).

It is an ordinary open_clip model: this plugin only points the ``open_clip`` backend
at the files in ``ctxbench_plugins/toy_clip/`` (the architecture JSON registered
with ``open_clip.add_model_config`` and the safetensors checkpoint), so it loads,
tokenizes, preprocesses and fingerprints exactly as any local open_clip checkpoint
would (``--backend open_clip --backend-arg model_config=.../ctxbench-toy-clip.json
--backend-arg pretrained=.../toy_clip.safetensors`` gives the same embeddings).

How it was trained (data from the synthetic world with training-only seeds, loss,
determinism) is in :mod:`ctxbench.toy`; ``toy_clip/card.json`` records the
architecture, training seed and settings, world generator version, training time,
held-out retrieval and the sha256 of the weights, which is checked before loading.
Retrain with ``ctxbench toy train --out DIR`` and load the result through the
``open_clip`` backend as above.

Args (``--backend-arg``): ``dtype``, ``context_fusion``, ``fusion_weight``, passed
to the open_clip backend. The model takes no context of its own.
"""

from __future__ import annotations

from pathlib import Path

from ctxbench.backend import BackendSpec
from ctxbench.hooks import hookimpl

MODEL_DIR = Path(__file__).resolve().parent / "toy_clip"
PASSED_ARGS = ("dtype", "context_fusion", "fusion_weight")


def make_toy_clip(device: str = "cpu", **args):
    from ctxbench.toy import CONFIG_FILE, verify_card

    from .hf_common import ModelLoadError
    from .open_clip_backend import make_open_clip

    unknown = sorted(set(args) - set(PASSED_ARGS))
    if unknown:
        raise ModelLoadError(f"toy_clip: unknown --backend-arg {', '.join(unknown)} (accepted: "
                             f"{', '.join(PASSED_ARGS)}); to load other weights use --backend open_clip "
                             f"with model_config=... pretrained=...")
    config = MODEL_DIR / CONFIG_FILE
    try:
        card = verify_card(MODEL_DIR)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"toy_clip: {exc.filename} is missing from the installed package; "
                             f"reinstall ctxbench, or train one with `ctxbench toy train --out DIR` and "
                             f"load it with --backend open_clip") from None
    except ValueError as exc:
        raise ModelLoadError(f"toy_clip: {exc}") from None
    if not config.is_file():
        raise ModelLoadError(f"toy_clip: {config} is missing from the installed package; reinstall ctxbench")
    return make_open_clip(device=device, model_config=str(config),
                          pretrained=str(MODEL_DIR / card["weights"]["file"]), **args)


@hookimpl
def ctxbench_backends():
    from .open_clip_backend import ARGS
    return [BackendSpec(
        name="toy_clip",
        factory=make_toy_clip,
        description="small CLIP shipped with ctxbench, trained on the synthetic world "
                    "(open_clip ViT 64px/8, ~8M params; see ctxbench_plugins/toy_clip/card.json)",
        default_batch_size=256,
        embedded_default=True,
        args=tuple(a for a in ARGS if a.name in PASSED_ARGS),
    )]
