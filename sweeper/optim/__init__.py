"""The project's fused AdamW: ``FusedAdamW`` (optimizer), ``kernel`` (Triton), ``reference``.

``FusedAdamW`` packs all parameters into one flat buffer and updates them with one kernel
launch per step; see ``sweeper.optim.adamw`` for its contract.
"""

from sweeper.optim.adamw import FusedAdamW

__all__ = ["FusedAdamW"]
