"""The forward pass of K >= 1 SimpleCNNs on one minibatch, and their K losses.

Contract:

- ``forward(models, x)`` returns logits ``(K, N, 10)``. K = 1 runs the tutorial's own
  ``SimpleCNN.forward`` (tutorial fidelity, and the single-trial numbers users compare with
  the tutorial); K > 1 runs ``grouped_forward``, the same layers as one stacked model. This
  is the one place the two are told apart.
- ``grouped_forward``: conv1 of all members is one convolution with K*32 output channels
  (the input is shared), conv2 one grouped convolution (``groups=K``), the linear layers
  batched matmuls. No operation mixes members, so each member's gradient is the one its
  single run computes, up to the float rounding of different kernels. (``torch.func.vmap``
  over ``functional_call`` computes the same but agreed with single runs only to ~2e-5 after
  one epoch where this path agrees to ~1e-7; ``bench/trial_throughput.py`` times both.)
- ``member_losses(logits, y)`` is each member's mean cross-entropy, shape ``(K,)``; the
  gradient of their sum with respect to member k's parameters is member k's own gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (torch's own convention)

from sweeper.train.model import N_CLASSES, SimpleCNN


def _cat(models: Sequence[nn.Module], name: str) -> torch.Tensor:
    return torch.cat([m.get_parameter(name) for m in models])


def _stack(models: Sequence[nn.Module], name: str) -> torch.Tensor:
    return torch.stack([m.get_parameter(name) for m in models])


def grouped_forward(models: Sequence[SimpleCNN], x: torch.Tensor) -> torch.Tensor:
    """Logits ``(K, N, 10)`` of K SimpleCNNs on the same input ``x`` ``(N, 3, 32, 32)``.

    Layer for layer ``SimpleCNN.forward``; see the module docstring.
    """
    k, n = len(models), x.shape[0]
    h = F.conv2d(x, _cat(models, "conv1.weight"), _cat(models, "conv1.bias"), padding=1)
    h = F.max_pool2d(F.relu(h), 2, 2)
    w2, b2 = _cat(models, "conv2.weight"), _cat(models, "conv2.bias")
    h = F.max_pool2d(F.relu(F.conv2d(h, w2, b2, padding=1, groups=k)), 2, 2)
    # (N, K*64, 8, 8) -> (K, N, 4096): member k's features in SimpleCNN's flatten order.
    h = h.reshape(n, k, -1).transpose(0, 1)
    w, b = _stack(models, "fc1.weight"), _stack(models, "fc1.bias")
    h = F.relu(torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2)))
    w, b = _stack(models, "fc2.weight"), _stack(models, "fc2.bias")
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


def forward(models: Sequence[SimpleCNN], x: torch.Tensor) -> torch.Tensor:
    """Logits ``(K, N, 10)``: the tutorial's forward for one model, the grouped one for more."""
    if len(models) == 1:
        return models[0](x).unsqueeze(0)
    return grouped_forward(models, x)


def member_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each member's mean cross-entropy over the minibatch, shape ``(K,)``."""
    k = logits.shape[0]
    if k == 1:
        # The tutorial's nn.CrossEntropyLoss() (mean reduction), exactly.
        return F.cross_entropy(logits[0], targets).unsqueeze(0)
    losses = F.cross_entropy(logits.reshape(-1, N_CLASSES), targets.repeat(k), reduction="none")
    return losses.view(k, -1).mean(dim=1)
