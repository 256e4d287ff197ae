"""The tutorial's SimpleCNN, layer for layer.

Two 3x3 convolutions (3->32, 32->64, padding 1) each followed by ReLU and 2x2 max-pooling,
then fc 4096->128 with ReLU and fc 128->10. 545,098 parameters. The tutorial's ``forward``
forgets ``return x``; ours returns the logits.
"""

from __future__ import annotations

import torch
from torch import nn

N_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)


class SimpleCNN(nn.Module):
    """CIFAR-10 classifier: input (N, 3, 32, 32) normalised floats, output (N, 10) logits."""

    def __init__(self, n_classes: int = N_CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        # Two 2x2 poolings take 32x32 to 8x8: 64 channels * 8 * 8 = 4096 features.
        self.fc1 = nn.Linear(64 * 8 * 8, 128)
        self.fc2 = nn.Linear(128, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters in ``model``."""
    return sum(p.numel() for p in model.parameters())
