"""Device choice: --device if given, else cuda > mps > cpu."""

from __future__ import annotations

import torch

from .errors import CtxbenchError


def resolve_device(requested: str | None = None) -> str:
    if requested and requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise CtxbenchError(f"--device {requested}: CUDA is not available on this machine "
                                f"(torch {torch.__version__}); use --device cpu")
        if requested == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise CtxbenchError("--device mps: MPS is not available; use --device cpu")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
