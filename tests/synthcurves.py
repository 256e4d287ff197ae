"""Learning curves of known shape for the curve model's, the pruners' and the replay's tests.

``rise(ceiling, rate, epochs)``: from chance (0.1) towards ``ceiling`` as
``ceiling - (ceiling - 0.1) exp(-rate e)``; a small ``rate`` is a late bloomer. ``population``
draws such curves with ceilings in [0.25, 0.75] and rates in [0.15, 1.5] (slow risers
included), plus 0.4 points of measurement noise.
"""

from __future__ import annotations

import numpy as np

CHANCE = 0.1


def rise(ceiling: float, rate: float, epochs: int = 10) -> list[float]:
    """A noiseless curve rising from chance towards ``ceiling`` at ``rate`` per epoch."""
    e = np.arange(1, epochs + 1)
    return list(ceiling - (ceiling - CHANCE) * np.exp(-rate * e))


def population(n: int, seed: int, epochs: int = 10) -> list[list[float]]:
    """``n`` noisy curves of the family (module docstring)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        curve = np.array(rise(rng.uniform(0.25, 0.75), rng.uniform(0.15, 1.5), epochs))
        out.append(list(curve + rng.normal(0.0, 0.004, epochs)))
    return out
