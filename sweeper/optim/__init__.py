"""The project's fused AdamW: ``FusedAdamW`` (optimizer), ``kernel`` (Triton), ``reference``.

``FusedAdamW`` behaves like ``torch.optim.AdamW`` (state in ``self.state[p]``, parameters and
gradients left where they are) and updates every parameter with a gradient in one kernel
launch per step; see ``sweeper.optim.adamw`` for its contract.
"""

from sweeper.optim.adamw import FusedAdamW

__all__ = ["FusedAdamW"]
