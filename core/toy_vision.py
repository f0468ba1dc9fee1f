"""The image tower of toy_clip: a small plain CNN, registered as a timm model so the
ordinary open_clip loading path builds it (``vision_cfg.timm_model_name``).

Why not one of open_clip's own towers: on the synthetic world, whose objects are small
shapes at random places, neither a ViT with 8-pixel patches nor open_clip's
ModifiedResNet (CLIP's RN: a stride-2 stem, average pooling, attention pooling) nor
timm's small ResNets learned to tell the 8 shapes apart within the 2-core training
budget (measured: 100 supervised steps of 64 single-object images, held-out shape
accuracy 0.15-0.21, chance 0.125). A plain CNN that keeps full resolution in its
first convolution and pools by maximum reached 0.75 in the same 100 steps, at a
third of the ModifiedResNet's cost. Global *max* pooling suits small objects on a
large background: an average dilutes the object with the background around it.

Layout: [3x3 conv, batch norm, ReLU] with widths :data:`WIDTHS`, a 2x2 max pool after
each of the first three stages, then the global maximum over positions (computed
with ``amax``, whose backward pass is deterministic on every device). Output
:data:`NUM_FEATURES` channels; open_clip's TimmModel adds the linear projection to
the embedding.
"""

from __future__ import annotations

import torch
from torch import nn

NAME = "ctxbench_toy_cnn"
WIDTHS = (16, 32, 64, 128, 128)
NUM_FEATURES = WIDTHS[-1]
POOL_AFTER = (0, 1, 2)   # stage indices followed by a 2x2 max pool


class ToyShapeCNN(nn.Module):
    """See the module docstring. Implements the part of timm's model interface that
    open_clip's TimmModel uses: ``num_features``, ``default_cfg``, ``reset_classifier``."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for stage, width in enumerate(widths):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            if stage in POOL_AFTER:
                layers.append(nn.MaxPool2d(2))
            channels = width
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.default_cfg = self.pretrained_cfg = {"architecture": NAME, "pool_size": None,
                                                  "num_classes": 0}

    def reset_classifier(self, num_classes: int = 0, global_pool: str | None = None) -> None:
        if num_classes or global_pool not in (None, "", "max"):
            raise ValueError(f"{NAME} has no classifier and pools by maximum only")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).amax(dim=(2, 3))


def _create(pretrained: bool = False, **kwargs) -> ToyShapeCNN:
    """timm entry point: ignores timm's pretrained-config arguments; no pretrained weights."""
    if pretrained:
        raise ValueError(f"{NAME} has no pretrained weights; load a toy_clip checkpoint instead")
    return ToyShapeCNN()


def register() -> None:
    """Make ``timm.create_model(NAME)`` build :class:`ToyShapeCNN` (idempotent)."""
    import timm
    from timm.models import register_model
    if timm.is_model(NAME):
        return
    _create.__name__ = NAME
    _create.__qualname__ = NAME
    register_model(_create)
