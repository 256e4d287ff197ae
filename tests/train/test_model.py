"""SimpleCNN is the tutorial's network, layer for layer."""

from __future__ import annotations

import torch

from sweeper.train.model import SimpleCNN, count_parameters


def test_layers_and_parameter_count() -> None:
    model = SimpleCNN()
    assert count_parameters(model) == 545_098
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == {
        "conv1.weight": (32, 3, 3, 3),
        "conv1.bias": (32,),
        "conv2.weight": (64, 32, 3, 3),
        "conv2.bias": (64,),
        "fc1.weight": (128, 4096),
        "fc1.bias": (128,),
        "fc2.weight": (10, 128),
        "fc2.bias": (10,),
    }


def test_forward_returns_logits() -> None:
    logits = SimpleCNN()(torch.randn(5, 3, 32, 32))
    assert logits.shape == (5, 10) and torch.isfinite(logits).all()
