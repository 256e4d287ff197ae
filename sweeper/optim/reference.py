"""AdamW and coupled-L2 Adam in plain torch, one tensor at a time: the math FusedAdamW runs.

This is documentation that the tests execute. ``adam_step`` is the update of
``torch.optim.AdamW`` (``decoupled=True``) and of ``torch.optim.Adam`` with weight decay
(``decoupled=False``), written with the same ATen calls in the same order as torch's
single-tensor path, so the tests can show it equals torch bit for bit. The Triton kernel
(``sweeper.optim.kernel``) performs the same operations element by element and is tested
against torch at float32 tolerance (fused multiply-adds and a float64 ``exp``/``log`` in place
of Python's ``**`` are the only differences, each far below float32 resolution).

Numeric conventions, shared with the kernel:

- ``step`` is a float32 tensor, incremented before use, as torch keeps ``state["step"]``.
- Scalars (``1 - beta1``, ``1 - lr * weight_decay``, ``lr / bias_correction1``, ...) are
  computed in Python double and rounded to float32 once, where ATen receives them.
- Element math is float32 with IEEE-rounded square root and division.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def adam_step(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    max_exp_avg_sq: torch.Tensor | None,
    step: torch.Tensor,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled: bool,
) -> None:
    """One Adam(W) step of one parameter, in place on ``param``, the moments and ``step``.

    ``decoupled=True`` is AdamW (weight decay shrinks the parameter); ``False`` is Adam with
    L2 (weight decay is added to the gradient). ``max_exp_avg_sq`` is required with
    ``amsgrad``. ``grad`` is not modified.
    """
    # maximize ascends: the gradient's sign flips (exact in floating point).
    if maximize:
        grad = -grad
    # The step count is a float32 tensor incremented first: the first update uses t = 1.
    step += 1
    # torch skips weight decay entirely when it is 0 (a multiply by 1.0 is exact, but adding
    # 0 * param would turn an infinite parameter into NaN).
    if weight_decay != 0:
        if decoupled:
            # AdamW: shrink the parameter by lr * wd before the Adam update. The factor is
            # computed in double and rounded to float32 once by ATen.
            param.mul_(1 - lr * weight_decay)
        else:
            # Adam + L2: the penalty's gradient, wd * param (the parameter before this step),
            # joins the gradient and so also feeds both moments. Not in place: grad is the
            # caller's.
            grad = grad.add(param, alpha=weight_decay)
    # First moment m = beta1 * m + (1 - beta1) * g, written as torch writes it: a lerp
    # toward g with weight 1 - beta1 (one rounding less than the two-term form).
    exp_avg.lerp_(grad, 1 - beta1)
    # Second moment v = beta2 * v + (1 - beta2) * g * g: a multiply, then addcmul, whose
    # value (1 - beta2) is computed in double, not as 1 - float32(beta2).
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    # Bias corrections from the step count, in double (Python float ** float).
    t = float(step)
    bias_correction1 = 1 - beta1**t
    bias_correction2 = 1 - beta2**t
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2**0.5
    if amsgrad:
        if max_exp_avg_sq is None:
            raise ValueError("amsgrad=True needs max_exp_avg_sq")
        # AMSGrad normalises by the running maximum of v (NaN-propagating maximum).
        torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    else:
        second = exp_avg_sq
    # eps is added after the bias-corrected square root, not inside it: torch's placement,
    # which the paper's Algorithm 1 shares.
    denom = (second.sqrt() / bias_correction2_sqrt).add_(eps)
    # param += -step_size * m / denom, as one addcdiv: (value * m) / denom, then the add.
    param.addcdiv_(exp_avg, denom, value=-step_size)


class ReferenceAdam:
    """``adam_step`` over a list of parameters with torch's per-parameter state and skipping.

    A parameter whose ``.grad`` is None is skipped and gets no state until its first
    gradient, as in torch. Hyperparameters are fixed per instance (one group).
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float,
        betas: tuple[float, float],
        eps: float,
        weight_decay: float,
        amsgrad: bool = False,
        maximize: bool = False,
        decoupled: bool = True,
    ) -> None:
        self.params = params
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.amsgrad = amsgrad
        self.maximize = maximize
        self.decoupled = decoupled
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if i not in self.state:
                self.state[i] = {
                    "step": torch.tensor(0.0, dtype=torch.float32),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "max_exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
            s = self.state[i]
            adam_step(
                p,
                p.grad,
                s["exp_avg"],
                s["exp_avg_sq"],
                s["max_exp_avg_sq"],
                s["step"],
                lr=self.lr,
                beta1=self.betas[0],
                beta2=self.betas[1],
                eps=self.eps,
                weight_decay=self.weight_decay,
                amsgrad=self.amsgrad,
                maximize=self.maximize,
                decoupled=self.decoupled,
            )
