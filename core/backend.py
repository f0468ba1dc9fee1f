"""The backend contract: what a model plugin must provide.

A backend is any object satisfying the :class:`Backend` Protocol (structural
typing, as MTEB's model protocols: no base class to inherit). A plugin exposes a
:class:`BackendSpec` whose ``factory`` builds the backend from keyword arguments
(``--backend-arg key=value`` on the command line) and a device string.

Contract, checked by the runner for every batch (see encoder.py):
- ``encode_images(images, contexts)`` takes a list of RGB ``PIL.Image`` and a list
  of the same length of ``str | None`` contexts; returns a float tensor ``[N, D]``.
- ``encode_texts(texts, contexts)`` likewise for strings.
- a context other than ``None`` is only ever passed on a side the backend
  declares in :class:`Capabilities`.
- ``encode_videos(clips, contexts)`` (optional, only if ``capabilities.video``):
  each clip is a list of frames; returns ``[N, D]``.
- ``fingerprint()`` identifies the exact weights, precision and plugin version;
  it keys the embedding cache and is written into every result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch
from PIL import Image


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond plain image and text embedding."""

    image_context: bool = False   # phi(I, C): the image embedding can take a context
    text_context: bool = False    # psi(q, C): the text embedding can take a context
    video: bool = False           # has encode_videos (a real video encoder)
    normalized: bool = False      # outputs are already L2-normalised
    context_method: str = "none"  # how context enters, e.g. "prompt", "late_fusion"


@runtime_checkable
class Backend(Protocol):
    """Structural type of a backend (see module docstring for the contract)."""

    capabilities: Capabilities

    def fingerprint(self) -> str: ...

    def encode_images(self, images: Sequence[Image.Image],
                      contexts: Sequence[str | None]) -> torch.Tensor: ...

    def encode_texts(self, texts: Sequence[str],
                     contexts: Sequence[str | None]) -> torch.Tensor: ...


@dataclass(frozen=True)
class BackendSpec:
    """How a plugin registers a backend.

    ``factory(device: str, **args) -> Backend``. ``args`` come from
    ``--backend-arg key=value`` (values parsed as YAML scalars).
    ``default_batch_size`` is used unless ``--batch-size`` is given.
    """

    name: str
    factory: Callable[..., Backend]
    description: str = ""
    default_batch_size: int = 32
    default_args: dict[str, Any] = field(default_factory=dict)
    embedded_default: bool = False  # run by `ctxbench run` when no --backend is given
