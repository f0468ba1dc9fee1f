"""Device choice: --device if given, else cuda > mps > cpu."""

from __future__ import annotations

import re

from .errors import CtxbenchError


DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(requested: str) -> None:
    """Refuse a device string torch would not understand, before anything loads."""
    if not DEVICE_RE.match(requested or ""):
        raise CtxbenchError(f"--device {requested!r}: unknown device; use auto, cpu, mps, cuda "
                            "or cuda:N")


def resolve_device(requested: str | None = None) -> str:
    import torch   # here, not at the top: `run` checks its arguments (check_device_name) first

    if requested is not None:
        check_device_name(requested)
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
