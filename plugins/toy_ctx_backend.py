"""`toy_ctx`: the context-aware model that ships with ctxbench (an embedded default backend).

toy_clip's frozen towers plus an entity channel that reads names in a story and two
learned late-fusion heads (:mod:`ctxbench.toy_context`): ``phi(I, C)`` and ``psi(q, C)`` both take the
context, so every injection pattern of context_retrieval runs. The base model is
the shipped toy_clip (loaded through the ordinary open_clip backend, its card
checked); ``toy_ctx/toy_ctx.safetensors`` holds only the tensors trained here, and
``toy_ctx/card.json`` their seeds, steps, held-out figures and sha256 (checked
before loading). Retrain with ``ctxbench toy train-context --out DIR``.

A story is embedded once by the text tower and fused afterwards, so a query scored
against many candidate stories costs one text pass: each distinct string's tower
output is kept in memory for the backend's lifetime.

Args (``--backend-arg``): ``dtype``.
"""

from __future__ import annotations

from pathlib import Path

from ctxbench.backend import BackendSpec
from ctxbench.hooks import hookimpl

MODEL_DIR = Path(__file__).resolve().parent / "toy_ctx"
PASSED_ARGS = ("dtype",)


class ToyContextBackend:
    """Backend over :class:`ctxbench.toy_context.ToyContextModel`."""

    def __init__(self, device: str = "cpu", dtype: str = "auto"):
        from safetensors.torch import load as st_load

        from ctxbench.backend import Capabilities
        from ctxbench.toy_context import CONTEXT_METHOD, ToyContextModel, verify_card

        from .hf_common import ModelLoadError
        from .toy_clip_backend import make_toy_clip

        try:
            card = verify_card(MODEL_DIR)
        except FileNotFoundError as exc:
            raise ModelLoadError(f"toy_ctx: {exc.filename} is missing from the installed package; "
                                 f"reinstall ctxbench or retrain with `ctxbench toy train-context`") from None
        except ValueError as exc:
            raise ModelLoadError(f"toy_ctx: {exc}") from None
        self.base = make_toy_clip(device=device, dtype=dtype)
        base_sha = self.base_sha256()
        if card["base"]["weights_sha256"] != base_sha:
            raise ModelLoadError(f"toy_ctx: {MODEL_DIR / 'card.json'} was trained on toy_clip weights "
                                 f"{card['base']['weights_sha256'][:16]}, but the installed toy_clip is "
                                 f"{base_sha[:16]}; retrain with `ctxbench toy train-context`")
        arch = card["architecture"]
        self.model = ToyContextModel(self.base.model, int(arch["embed_dim"]), int(arch["vocab_size"]),
                                     int(arch["entity_dim"]), int(arch["entity_code_seed"]))
        state = st_load((MODEL_DIR / card["weights"]["file"]).read_bytes())
        expected = set(self.model.trained_state())
        if set(state) != expected:
            raise ModelLoadError(f"toy_ctx: {card['weights']['file']} holds tensors "
                                 f"{sorted(set(state) ^ expected)[:5]} that do not match the model; "
                                 f"retrain with `ctxbench toy train-context`")
        self.model.load_state_dict(state, strict=False)
        self.model.to(device=device, dtype=self.base.dtype).eval()
        self.card, self.device, self.dtype = card, device, self.base.dtype
        self.capabilities = Capabilities(image_context=True, text_context=True, normalized=True,
                                         context_method=CONTEXT_METHOD)
        self._text_memo: dict = {}

    @staticmethod
    def base_sha256() -> str:
        from ctxbench.toy import verify_card as verify_base

        from .toy_clip_backend import MODEL_DIR as BASE_DIR
        return verify_base(BASE_DIR)["weights"]["sha256"]

    def fingerprint(self) -> str:
        return f"toy_ctx:v1:{self.base.fingerprint()}:ctx@sha256:{self.card['weights']['sha256'][:16]}"

    def _texts(self, strings):
        """(dense, entity) text rows of ``strings``; each distinct string passes the
        tower once in the backend's lifetime."""
        import torch
        new = [s for s in dict.fromkeys(strings) if s not in self._text_memo]
        if new:
            dense, entity = self.model.text(self.base.tokenizer(new).to(self.device))
            for s, d, e in zip(new, dense, entity):
                self._text_memo[s] = (d, e)
        rows = [self._text_memo[s] for s in strings]
        return torch.stack([d for d, _ in rows]), torch.stack([e for _, e in rows])

    def _with_contexts(self, embed, base, contexts):
        """``embed(model, base)`` rows, fused with their context where one is given."""
        out = embed(self.model, base)
        rows = [i for i, c in enumerate(contexts) if c is not None]
        if rows:
            picked = base[rows] if not isinstance(base, tuple) else tuple(x[rows] for x in base)
            out[rows] = embed(self.model, picked, self._texts([contexts[i] for i in rows]))
        return out

    def encode_images(self, images, contexts):
        import torch
        from torch.nn.functional import normalize

        from ctxbench.toy_context import embed_image
        with torch.inference_mode():
            emb = normalize(self.base._image_features(images), dim=-1)
            return self._with_contexts(embed_image, emb, contexts).float().cpu()

    def encode_texts(self, texts, contexts):
        import torch

        from ctxbench.toy_context import embed_text
        with torch.inference_mode():
            return self._with_contexts(embed_text, self._texts(list(texts)), contexts).float().cpu()


def make_toy_ctx(device: str = "cpu", **args) -> ToyContextBackend:
    return ToyContextBackend(device=device, **args)


@hookimpl
def ctxbench_backends():
    from .open_clip_backend import ARGS
    return [BackendSpec(
        name="toy_ctx",
        factory=make_toy_ctx,
        description="toy_clip plus a learned story reader (entity channel + late fusion of the "
                    "context on both sides (see ctxbench_plugins/toy_ctx/card.json)",
        default_batch_size=256,
        embedded_default=True,
        # where a context is an input; elsewhere it measures toy_clip's towers again
        embedded_families=("context_retrieval", "metadata_sentiment"),
        args=tuple(a for a in ARGS if a.name in PASSED_ARGS),
    )]
