"""``FusedAdamW``: AdamW (or coupled-L2 Adam) built like ``torch.optim.AdamW``, fused in one launch.

A drop-in for ``torch.optim.AdamW`` (and, with ``mode="adam"``, ``torch.optim.Adam``). It is
built the way torch's optimizers are: every ``step()`` reads ``param_groups`` and ``p.grad``,
updates each parameter whose ``.grad`` is not None, and keeps its state in ``self.state[p]``
as ordinary tensors (``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` with AMSGrad)
that are the truth: replace, delete or edit them and the next step uses what is there. It
never rebinds a parameter's or a gradient's storage and owns no copy of either. What it
promises:

- **Math.** ``mode="adamw"`` is ``torch.optim.AdamW`` (decoupled weight decay) and
  ``mode="adam"`` is ``torch.optim.Adam`` with ``weight_decay`` (coupled L2): the same
  formulas in the same order (``sweeper.optim.reference`` spells them out). Results agree with
  torch to float32 rounding (tested at atol 1e-6, rtol 1e-5), not bit for bit. Every
  hyperparameter, ``mode`` included, may differ per parameter group. Defaults are those of the
  mode's torch class: ``weight_decay`` left out is 1e-2 for ``"adamw"`` and 0 for ``"adam"``
  (per group too, when a group names its own ``mode``). ``lr`` may be a number (Python or
  numpy) or a one-element floating-point Tensor, as torch's fused AdamW accepts: a CUDA
  Tensor lr is read on the device every step (no host synchronisation, so a captured step
  follows in-place changes to it); its value is validated once, when the group is added.
- **Parameters.** Dense float32, bfloat16, float16 or float64 tensors, any memory layout
  (channels_last and views of a caller's tensor stay as they are), all on one cpu or cuda
  device at each step; they may be moved (``model.to(...)``) after construction, and lazy
  parameters (``LazyLinear``) are accepted before their first forward. bfloat16/float16
  parameters keep their state in their own dtype, as torch's does, and are updated in float32
  arithmetic, as torch's fused kernels do; float64 parameters are stepped in float64 by
  ATen's fused kernel on every impl. Other dtypes (complex, integer) raise ``ValueError``
  (torch also takes complex). A parameter repeated in a group draws torch's warning and is
  updated once per step (torch's list holds it twice and updates it twice).
- **Which parameters step.** Exactly torch's rule: a parameter with a ``.grad`` that is not
  None, however it was written; ``zero_grad`` is torch's own. Sparse gradients raise
  ``RuntimeError`` at ``step()``, as torch's AdamW does.
- **GradScaler.** Like ``torch.optim.AdamW(fused=True)`` (``_step_supports_amp_scaling``),
  ``step()`` reads the ``grad_scale`` and ``found_inf`` tensors that ``torch.amp.GradScaler``
  sets on the optimizer: gradients are divided by ``grad_scale`` inside the fused step (and
  the quotient written back to ``.grad``, as ATen does), and a step with ``found_inf != 0``
  changes nothing, step counts included.
- **Implementations** (``impl``): ``"triton"`` runs ``sweeper.optim.kernel``, compiled on CUDA
  and under Triton's interpreter on the CPU: one launch per step (per parameter dtype; float64
  goes to ATen's kernel) over every parameter that has a gradient, through a device table of
  the tensors' addresses that is rebuilt only when one of them changes (a comparison of data
  pointers per step).
  ``"torch"`` runs ATen's fused Adam/AdamW CPU or CUDA kernel through torch's public
  functional API (``torch.optim.adamw.adamw(..., fused=True)``, what
  ``torch.optim.AdamW(fused=True)`` runs), one call per group. ``"auto"`` (default) takes
  ``$SWEEPER_ADAMW_IMPL`` when set, else ``"triton"`` on CUDA and ``"torch"`` on the CPU,
  decided again whenever the parameters change device. ``implementation`` names what runs,
  for provenance. torch's ``foreach``/``fused`` flags are accepted for drop-in use
  (``fused=False`` and ``differentiable=True`` are refused: this class has only a fused,
  non-differentiable step); ``capturable=True`` demands an instance whose step can be
  captured.
- **Host work.** With ``impl="triton"`` on CUDA, ``step()`` issues one kernel launch and no
  host synchronisation: per-group hyperparameters live in a small device table, re-uploaded
  (asynchronously) only when a group's values changed, e.g. by an LR scheduler; step counts
  are the state's own device tensors. After one eager warm-up step with the same tensors,
  ``step()`` can be captured in a CUDA graph (``capturable`` says whether this instance can);
  between replays, call ``sync_hyperparameters()`` after changing a group's lr (a CUDA
  Tensor lr changed in place needs no call). A tensor whose layout the kernel cannot walk
  element for element beside its parameter (a gradient or state tensor with other strides or
  dtype, a parameter with gaps) is copied to a matching tensor for the launch and copied
  back after it: correct, slower, and not capturable.
- **torch.compile.** ``step()`` is excluded from compilation (``torch.compiler.disable``): a
  compiled function that calls it graph-breaks there and runs it eagerly, and a compiled model
  trains as with torch's optimizer. ``fullgraph=True`` over a function that calls ``step()``
  raises torch's own error about the graph break.
- **State dicts and copies.** ``state_dict()`` is torch's (each group also carries
  ``decoupled_weight_decay``, so ``torch.optim.Adam`` loads the right math), and
  ``load_state_dict()`` accepts this class's state dicts and those of ``torch.optim.AdamW`` /
  ``torch.optim.Adam``. ``copy.deepcopy``, ``pickle`` and ``torch.save``/``torch.load`` work
  as for torch's optimizers.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.parameter import is_lazy
from torch.optim import Optimizer
from torch.optim.adam import adam as _torch_adam
from torch.optim.adamw import adamw as _torch_adamw

from sweeper.optim import kernel as _kernel

IMPL_ENV = "SWEEPER_ADAMW_IMPL"  # overrides impl="auto": "triton", "torch" or "auto"
IMPLS = ("auto", "triton", "torch")
MODES = ("adamw", "adam")
# weight_decay when the caller gives none: torch.optim.AdamW's and torch.optim.Adam's defaults.
DEFAULT_WEIGHT_DECAY = {"adamw": 1e-2, "adam": 0.0}
# Parameter dtypes. The kernel updates float32, bfloat16 and float16 in float32 arithmetic
# (as ATen's fused kernels do); float64 parameters are stepped by ATen's fused kernel in
# float64 (as torch's are) on every impl.
DTYPES = (*_kernel.DTYPES, torch.float64)

# Values of ``FusedAdamW.implementation``.
IMPLEMENTATION_TRITON = "triton"  # the Triton kernel, compiled for the GPU
IMPLEMENTATION_TRITON_INTERPRETER = "triton-interpreter"  # the same kernel, interpreted
IMPLEMENTATION_TORCH = "torch-fused"  # ATen's fused Adam(W) kernel, through torch's functional

# torch.amp.GradScaler's protocol for an optimizer that unscales inside its fused step: when
# this attribute is True, GradScaler.step sets ``grad_scale`` and ``found_inf`` on the
# optimizer instead of running unscale_ (torch/amp/grad_scaler.py; introduced with torch's
# fused AdamW, pytorch/pytorch#88015; the attribute contract, pytorch/pytorch#123428). The
# only private name of torch this module uses.
_AMP_SCALING_FLAG = "_step_supports_amp_scaling"


def check_hyperparameters(group: Mapping[str, Any], *, read_device_lr: bool = True) -> None:
    """Raise ``ValueError`` naming the argument and its value if ``group`` has a bad one.

    ``group`` holds ``lr``, ``betas``, ``eps``, ``weight_decay``, ``amsgrad``, ``maximize``
    and ``mode``, as a parameter group (or the constructor's arguments) does. Numbers may be
    Python or numpy scalars; ``lr`` may also be a one-element floating-point Tensor, whose value
    is checked when it is on the CPU or when ``read_device_lr`` (which synchronises with the
    device once, as torch's own check of a Tensor lr does).
    """
    lr = group["lr"]
    if isinstance(lr, torch.Tensor):
        if lr.numel() != 1 or not lr.is_floating_point() or lr.is_complex():
            raise ValueError(
                f"invalid lr={lr!r}: a Tensor lr must hold one real floating-point element"
            )
        if lr.device.type == "cpu" or read_device_lr:
            value = float(lr.detach())
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"invalid lr={lr!r}: must be a finite number >= 0")
    elif not (_is_number(lr) and math.isfinite(lr) and lr >= 0):
        raise ValueError(f"invalid lr={lr!r}: must be a finite number >= 0")
    betas = group["betas"]
    if not (
        isinstance(betas, tuple | list)
        and len(betas) == 2
        and all(_is_number(b) and 0 <= b < 1 for b in betas)
    ):
        raise ValueError(f"invalid betas={betas!r}: must be two numbers in [0, 1)")
    eps = group["eps"]
    if not (_is_number(eps) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"invalid eps={eps!r}: must be a finite number >= 0")
    weight_decay = group["weight_decay"]
    if not (_is_number(weight_decay) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"invalid weight_decay={weight_decay!r}: must be a finite number >= 0")
    for flag in ("amsgrad", "maximize"):
        if not isinstance(group[flag], bool):
            raise ValueError(f"invalid {flag}={group[flag]!r}: must be a bool")
    mode = group["mode"]
    if mode not in MODES:
        raise ValueError(f"invalid mode={mode!r}: must be 'adamw' or 'adam'")


def resolve_impl(impl: str, device: torch.device) -> tuple[str, bool]:
    """``(impl, interpret)`` that ``impl`` means for parameters on ``device``.

    ``"auto"`` defers to ``$SWEEPER_ADAMW_IMPL`` when it is set, then picks ``"triton"`` on
    CUDA and ``"torch"`` elsewhere. ``interpret`` is True when the Triton kernel will run under
    Triton's interpreter: on the CPU. On CUDA under ``TRITON_INTERPRET=1`` the interpreter
    cannot follow the device addresses in the kernel's table: ``"auto"`` picks ``"torch"``
    there and ``"triton"`` raises ``ValueError``.
    """
    if impl not in IMPLS:
        raise ValueError(f"invalid impl={impl!r}: must be 'auto', 'triton' or 'torch'")
    if impl == "auto":
        impl = os.environ.get(IMPL_ENV) or "auto"
        if impl not in IMPLS:
            raise ValueError(f"invalid {IMPL_ENV}={impl!r}: must be 'auto', 'triton' or 'torch'")
    cuda_interpreted = device.type == "cuda" and _kernel.interpret_by_default()
    if impl == "auto":
        impl = "triton" if device.type == "cuda" and not cuda_interpreted else "torch"
    if impl == "triton" and cuda_interpreted:
        raise ValueError(
            "invalid impl='triton' on cuda under TRITON_INTERPRET=1: Triton's interpreter "
            "cannot read the device addresses in FusedAdamW's table; use impl='torch'"
        )
    return impl, impl == "triton" and device.type != "cuda"


def _check_flags(
    foreach: bool | None, fused: bool | None, capturable: bool, differentiable: bool
) -> None:
    """torch.optim.AdamW's implementation flags: what this class can honour."""
    for name, value in (("foreach", foreach), ("fused", fused)):
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"invalid {name}={value!r}: must be None or a bool")
    for name, value in (("capturable", capturable), ("differentiable", differentiable)):
        if not isinstance(value, bool):
            raise ValueError(f"invalid {name}={value!r}: must be a bool")
    if fused is False:
        raise ValueError(
            "invalid fused=False: FusedAdamW always runs one fused step; "
            "use torch.optim.AdamW for an unfused one"
        )
    if differentiable:
        raise ValueError(
            "invalid differentiable=True: FusedAdamW's step is not differentiable; "
            "use torch.optim.AdamW(differentiable=True)"
        )


# Per group, the lists torch's functional AdamW takes: params, grads, exp_avgs, exp_avg_sqs,
# max_exp_avg_sqs, state_steps.
_Lists = list[tuple[list[torch.Tensor], ...]]


@dataclass
class _Launch:
    """The device tables of one launch (one device and parameter dtype) and what they cover."""

    key: list[int]  # per parameter: its tensors' addresses and its group
    blocks: torch.Tensor
    tensors: torch.Tensor
    counters: torch.Tensor
    aligned: bool
    host: torch.Tensor  # the staging copy of the tables; a captured upload reads it


class FusedAdamW(Optimizer):
    """AdamW / Adam+L2 stepped by one fused launch; see the module docstring.

    Args:
        params: parameters or parameter groups (dicts), as for any ``torch.optim``
            optimizer. float32, bfloat16, float16 or float64, on one device (cpu or cuda).
        lr: learning rate, >= 0: a number or a one-element floating-point Tensor.
        betas: coefficients of the running averages of the gradient and its square, each
            in [0, 1).
        eps: added to the denominator after the square root, >= 0.
        weight_decay: decoupled decay (``mode="adamw"``) or L2 coefficient
            (``mode="adam"``), >= 0; None (the default) takes the mode's torch default,
            1e-2 for AdamW and 0 for Adam.
        amsgrad: normalise by the running maximum of the second moment.
        maximize: ascend instead of descend.
        mode: ``"adamw"`` (torch.optim.AdamW) or ``"adam"`` (torch.optim.Adam with L2).
        foreach: accepted for drop-in use and ignored: the step is always one fused pass.
        fused: None or True (False is refused).
        capturable: True demands that ``step()`` can be captured in a CUDA graph
            (``capturable``); False changes nothing.
        differentiable: must be False.
        impl: ``"auto"``, ``"triton"`` or ``"torch"`` (keyword only); see ``resolve_impl``.

    Raises:
        ValueError: a bad hyperparameter, flag, ``mode`` or ``impl``, a parameter that is
            not a dense tensor of a supported dtype, or parameters on more than one device.
            The message names the argument and the value.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float | None = None,
        amsgrad: bool = False,
        maximize: bool = False,
        mode: str = "adamw",
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        impl: str = "auto",
    ) -> None:
        _check_flags(foreach, fused, capturable, differentiable)
        # A group that names its own mode and no weight_decay takes that mode's default.
        self._weight_decay_follows_mode = weight_decay is None
        if weight_decay is None:
            weight_decay = DEFAULT_WEIGHT_DECAY.get(mode, DEFAULT_WEIGHT_DECAY["adamw"])
        defaults: dict[str, Any] = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "mode": mode,
        }
        check_hyperparameters(defaults)
        defaults["betas"] = tuple(betas)
        if impl not in IMPLS:
            raise ValueError(f"invalid impl={impl!r}: must be 'auto', 'triton' or 'torch'")
        self._requested_impl = impl
        super().__init__(params, defaults)
        first = next((p for g in self.param_groups for p in g["params"]), None)
        if first is None:
            raise ValueError("invalid params: the parameter groups hold no parameters")
        self._reset_runtime(first.device)
        setattr(self, _AMP_SCALING_FLAG, True)
        if capturable and not self.capturable:
            raise ValueError(
                f"invalid capturable=True: the step of {self.implementation!r} on "
                f"{self._device} cannot be captured in a CUDA graph; only impl='triton', "
                "compiled on CUDA, can"
            )

    def _reset_runtime(self, device: torch.device) -> None:
        """Caches of the device tables: nothing here is state, all of it can be rebuilt."""
        self._device = device
        self._impl, self._interpret = resolve_impl(self._requested_impl, device)
        self._launches: dict[torch.dtype, _Launch] = {}
        self._sigs: list[tuple[Any, ...]] | None = None
        self._device_lrs: list[tuple[int, torch.Tensor, float]] = []
        self._hyper: torch.Tensor | None = None
        self._hyper_sigs: list[tuple[Any, ...]] | None = None
        self._captured_hosts: list[torch.Tensor] = []
        self._staging: dict[torch.dtype, torch.Tensor] = {}

    # -- pickling, deepcopy, torch.save ----------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """torch's optimizer state plus this class's settings (the device tables are rebuilt)."""
        state = super().__getstate__()
        state["_requested_impl"] = self._requested_impl
        state["_weight_decay_follows_mode"] = self._weight_decay_follows_mode
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling: torch's, then fresh caches. torch's ``load_state_dict`` also calls this,
        with only ``state`` and ``param_groups``."""
        super().__setstate__(state)
        if "_requested_impl" in state:
            first = next(p for g in self.param_groups for p in g["params"])
            self._reset_runtime(first.device)
            setattr(self, _AMP_SCALING_FLAG, True)

    # -- public surface -----------------------------------------------------------------------

    @property
    def implementation(self) -> str:
        """What computes the step: ``"triton"``, ``"triton-interpreter"`` or ``"torch-fused"``.
        Record it with results as provenance."""
        if self._impl == "torch":
            return IMPLEMENTATION_TORCH
        return IMPLEMENTATION_TRITON_INTERPRETER if self._interpret else IMPLEMENTATION_TRITON

    @property
    def capturable(self) -> bool:
        """Whether ``step()`` can be captured in a CUDA graph: only the compiled Triton kernel
        on CUDA can (ATen's fused kernels take lr from the host on every call; the
        interpreter runs on the host)."""
        return self._device.type == "cuda" and self._impl == "triton" and not self._interpret

    @property
    def impl(self) -> str:
        """The resolved ``impl``: ``"triton"`` or ``"torch"``."""
        return self._impl

    @property
    def device(self) -> torch.device:
        """The device of the parameters (as of the last step, or construction)."""
        return self._device

    def sync_hyperparameters(self) -> None:
        """Validate the groups and upload their hyperparameters to the device if any changed.

        ``step()`` does this itself. Call it directly only when replaying a captured CUDA
        graph (no Python runs then): after changing a group's lr, before the replay.
        """
        self._sync_groups(capturing=False)
        if self._impl == "triton":
            self._hyper_on(self._device, capturing=False)

    # torch.compiler.disable: Dynamo must not trace this (it would try to functionalise the
    # fused kernel and a Triton launch); a compiled caller graph-breaks here and runs it eagerly.
    # torch's Optimizer wraps it with the step hooks and the profiler range, as for its own.
    @torch.compiler.disable
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter that has a gradient; returns ``closure()`` if given.

        With ``impl="triton"`` on CUDA this is one kernel launch per parameter dtype and no
        host synchronisation. ``grad_scale`` / ``found_inf`` attributes, when set (by
        ``torch.amp.GradScaler``), are applied as torch's fused AdamW applies them.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale: torch.Tensor | None = getattr(self, "grad_scale", None)
        found_inf: torch.Tensor | None = getattr(self, "found_inf", None)
        capturing = torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()
        self._sync_groups(capturing)
        write_back: list[tuple[torch.Tensor, torch.Tensor]] = []
        lists = self._gather(write_back, write_grads=grad_scale is not None)
        device = next((group[0][0].device for group in lists if group[0]), None)
        if device is None:
            return loss
        if device != self._device:
            if capturing:
                raise RuntimeError("the parameters changed device while capturing a CUDA graph")
            self._reset_runtime(device)
            self._sync_groups(capturing)
        if capturing and not self.capturable:
            raise RuntimeError(
                "capturing FusedAdamW.step in a CUDA graph needs impl='triton', compiled"
            )
        if self._impl == "triton":
            self._step_triton(lists, device, grad_scale, found_inf, capturing)
        else:
            self._step_torch(lists, grad_scale, found_inf)
        if write_back:
            with torch.no_grad():
                for original, stand_in in write_back:
                    original.copy_(stand_in)
        return loss

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, validated like the constructor's arguments (torch's rules otherwise)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group.get("params")
        if isinstance(params, torch.Tensor):
            params = [params]
        elif params is not None and not isinstance(params, set):
            params = list(params)
            param_group["params"] = params
        if isinstance(params, list):
            tensors = [
                p[1] if isinstance(p, tuple) else p for p in params
            ]  # (name, tensor) pairs are allowed, as in torch
            self._check_params(tensors)
        if (
            self._weight_decay_follows_mode
            and "weight_decay" not in param_group
            and param_group.get("mode") in DEFAULT_WEIGHT_DECAY
        ):
            param_group["weight_decay"] = DEFAULT_WEIGHT_DECAY[param_group["mode"]]
        check_hyperparameters({**self.defaults, **param_group})
        super().add_param_group(param_group)
        self.param_groups[-1]["betas"] = tuple(self.param_groups[-1]["betas"])

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, each group also saying ``decoupled_weight_decay`` (its mode).

        The extra key makes ``torch.optim.Adam`` (whose groups default it to False) load an
        AdamW group with decoupled decay; ``torch.optim.AdamW`` forces it to True anyway.
        """
        saved = super().state_dict()
        for group in saved["param_groups"]:
            group["decoupled_weight_decay"] = group.get("mode") == "adamw"
        return saved

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load this class's state dict or torch.optim.AdamW's / Adam's (torch's rules).

        A group without ``mode`` takes it from torch's ``decoupled_weight_decay`` (AdamW:
        True, Adam: False), else keeps its current mode. Parameters without saved state start
        fresh at their next step, as in torch.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) == len(self.param_groups):
            for saved, current in zip(saved_groups, self.param_groups, strict=True):
                merged = {**self.defaults, **saved, "mode": _loaded_mode(saved, current)}
                check_hyperparameters(merged)
        previous_modes = [g["mode"] for g in self.param_groups]
        super().load_state_dict(state_dict)
        for group, previous in zip(self.param_groups, previous_modes, strict=True):
            group["mode"] = _loaded_mode(group, {"mode": previous})
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            group["betas"] = tuple(group["betas"])
            # Derived from mode on every state_dict(); not a setting of this class.
            group.pop("decoupled_weight_decay", None)
        self._sigs = None

    # -- parameters ---------------------------------------------------------------------------

    def _check_params(self, tensors: list[Any]) -> None:
        devices = {p.device for g in self.param_groups for p in g["params"]}
        for k, p in enumerate(tensors):
            if not isinstance(p, torch.Tensor):
                continue  # torch's add_param_group raises its TypeError
            if is_lazy(p):
                continue  # LazyLinear before its first forward: checked at step
            _check_tensor(p, f"parameter {k} of the group", ValueError)
            devices.add(p.device)
        if len(devices) > 1:
            names = ", ".join(sorted(str(d) for d in devices))
            raise ValueError(
                f"invalid params: parameters on more than one device ({names}); "
                "FusedAdamW steps one device"
            )
        for device in devices:
            if device.type not in ("cpu", "cuda"):
                raise ValueError(
                    f"invalid params: device={device} is not supported; "
                    "FusedAdamW runs on cpu and cuda"
                )

    def _gather(
        self, write_back: list[tuple[torch.Tensor, torch.Tensor]], *, write_grads: bool
    ) -> _Lists:
        """Per group, torch's lists: params with a gradient, grads, exp_avgs, exp_avg_sqs,
        max_exp_avg_sqs (AMSGrad groups), steps. State is created at a parameter's first
        gradient, as torch does; a parameter listed twice is taken once.

        The fused kernels (ATen's CPU kernel too) walk a parameter's memory and its
        gradient's and moments' side by side, so they must share one dense layout and dtype.
        Where they do not, the lists hold a stand-in copy laid out like the parameter, and
        ``write_back`` gets ``(original, stand-in)`` to copy back after the step (for a
        gradient only when ``write_grads``: the step writes it only to unscale it).
        """
        out: _Lists = []
        seen: set[int] = set()
        state = self.state
        for group in self.param_groups:
            amsgrad = group["amsgrad"]
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            exp_avgs: list[torch.Tensor] = []
            exp_avg_sqs: list[torch.Tensor] = []
            max_exp_avg_sqs: list[torch.Tensor] = []
            steps: list[torch.Tensor] = []
            for p in group["params"]:
                grad = p.grad
                if grad is None or id(p) in seen:
                    continue
                seen.add(id(p))
                if grad.layout != torch.strided:
                    raise RuntimeError(_SPARSE_MESSAGE)
                s = state[p]
                if not s:
                    _check_tensor(p, "a parameter", RuntimeError)
                    s["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    s["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    s["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                step = s["step"]
                if (
                    not isinstance(step, torch.Tensor)
                    or step.dtype != torch.float32
                    or step.device != p.device
                ):
                    # A step of torch's non-fused AdamW (a CPU tensor), a caller's
                    # torch.tensor(0.) or a number: the value, on the parameter's device.
                    step = s["step"] = torch.as_tensor(step, dtype=torch.float32).to(p.device)
                m = s["exp_avg"]
                v = s["exp_avg_sq"]
                vmax = None
                if amsgrad:
                    vmax = s.get("max_exp_avg_sq")
                    if vmax is None:
                        # AMSGrad turned on later: the maximum starts at zero (torch fails).
                        vmax = s["max_exp_avg_sq"] = torch.zeros_like(
                            p, memory_format=torch.preserve_format
                        )
                dtype = p.dtype
                if not (
                    p.is_contiguous()
                    and grad.is_contiguous()
                    and m.is_contiguous()
                    and v.is_contiguous()
                    and m.dtype == dtype
                    and v.dtype == dtype
                    and (vmax is None or (vmax.is_contiguous() and vmax.dtype == dtype))
                ):
                    p, grad, m, v, vmax = _stand_ins(p, grad, m, v, vmax, write_back, write_grads)
                params.append(p)
                grads.append(grad)
                exp_avgs.append(m)
                exp_avg_sqs.append(v)
                steps.append(step)
                if vmax is not None:
                    max_exp_avg_sqs.append(vmax)
            out.append((params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps))
        return out

    # -- hyperparameters ----------------------------------------------------------------------

    def _sync_groups(self, capturing: bool) -> None:
        """Validate the groups' hyperparameters if any changed since the last step."""
        sigs = [_signature(g) for g in self.param_groups]
        if sigs == self._sigs:
            return
        if capturing:
            raise RuntimeError(
                "hyperparameters changed while capturing a CUDA graph; call "
                "sync_hyperparameters() (or run an eager step) before capturing"
            )
        device_lrs = []
        for gi, group in enumerate(self.param_groups):
            # A device lr's value was checked when its group was added; reading it now would
            # synchronise with the device.
            check_hyperparameters(group, read_device_lr=False)
            lr = group["lr"]
            if isinstance(lr, torch.Tensor) and lr.device.type != "cpu":
                if lr.device != self._device:
                    raise ValueError(
                        f"invalid lr={lr!r}: a Tensor lr must be on the cpu or on the "
                        f"parameters' device ({self._device})"
                    )
                device_lrs.append((gi, lr, float(group["weight_decay"])))
        self._device_lrs = device_lrs
        self._sigs = sigs

    def _hyper_on(self, device: torch.device, capturing: bool) -> torch.Tensor:
        """The device table of every group's hyperparameters, uploaded if they changed."""
        sigs = self._sigs
        hyper = self._hyper
        if hyper is None or sigs != self._hyper_sigs or hyper.shape[0] != len(self.param_groups):
            if capturing:
                raise RuntimeError(
                    "hyperparameters changed while capturing a CUDA graph; call "
                    "sync_hyperparameters() (or run an eager step) before capturing"
                )
            rows = [_hyper_row(g) for g in self.param_groups]
            if hyper is None or hyper.shape[0] != len(rows) or hyper.device != device:
                hyper = torch.zeros(
                    (len(rows), int(_kernel.HYPER_WIDTH)), dtype=torch.float64, device=device
                )
                self._hyper = hyper
            with torch.no_grad():
                _upload(hyper, rows, torch.float64)
            self._hyper_sigs = sigs
        assert hyper is not None
        if self._device_lrs:
            _refresh_device_lrs(hyper, self._device_lrs)
        return hyper

    # -- one step -------------------------------------------------------------------------------

    def _step_torch(
        self,
        lists: _Lists,
        grad_scale: torch.Tensor | None,
        found_inf: torch.Tensor | None,
    ) -> None:
        """ATen's fused Adam(W), one call per group, through torch's public functional API
        (``torch.optim.adamw.adamw`` / ``torch.optim.adam.adam`` with ``fused=True``, which
        increments each step count and calls the kernel of ``torch.optim.AdamW(fused=True)``).
        """
        for group, (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps) in zip(
            self.param_groups, lists, strict=True
        ):
            if not params:
                continue
            beta1, beta2 = group["betas"]
            fn = _torch_adamw if group["mode"] == "adamw" else _torch_adam
            lr = group["lr"]
            fn(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                max_exp_avg_sqs,
                steps,
                fused=True,
                grad_scale=grad_scale,
                found_inf=found_inf,
                amsgrad=group["amsgrad"],
                beta1=float(beta1),
                beta2=float(beta2),
                lr=lr if isinstance(lr, torch.Tensor) else float(lr),
                weight_decay=float(group["weight_decay"]),
                eps=float(group["eps"]),
                maximize=group["maximize"],
            )

    def _step_triton(
        self,
        lists: _Lists,
        device: torch.device,
        grad_scale: torch.Tensor | None,
        found_inf: torch.Tensor | None,
        capturing: bool,
    ) -> None:
        """One launch per parameter dtype over the tensors in ``lists``."""
        # Per dtype: rows of (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, group),
        # and the key (every address, and the group) that says whether the device table
        # still describes them.
        rows: dict[torch.dtype, list[tuple[Any, ...]]] = {}
        keys: dict[torch.dtype, list[int]] = {}
        # float64 parameters, per group, for ATen's fused kernel (float64 math, as torch).
        aten: _Lists = [([], [], [], [], [], []) for _ in lists]
        for gi, (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps) in enumerate(lists):
            if not params:
                continue
            vmaxes: Iterable[torch.Tensor | None] = max_exp_avg_sqs or [None] * len(params)
            for p, g, m, v, vmax, s in zip(
                params, grads, exp_avgs, exp_avg_sqs, vmaxes, steps, strict=True
            ):
                dtype = p.dtype
                if dtype == torch.float64:
                    for column, t in zip(aten[gi], (p, g, m, v, vmax, s), strict=True):
                        if t is not None:
                            column.append(t)
                    continue
                bucket = rows.get(dtype)
                if bucket is None:
                    bucket = rows[dtype] = []
                    keys[dtype] = []
                bucket.append((p, g, m, v, vmax, s, gi))
                keys[dtype] += (
                    p.data_ptr(),
                    g.data_ptr(),
                    m.data_ptr(),
                    v.data_ptr(),
                    0 if vmax is None else vmax.data_ptr(),
                    s.data_ptr(),
                    gi,
                )
        hyper = self._hyper_on(device, capturing)
        if grad_scale is not None:
            grad_scale = grad_scale.to(device, torch.float32, non_blocking=True)
        if found_inf is not None:
            found_inf = found_inf.to(device, torch.float32, non_blocking=True)
        kernel = _kernel.adamw_kernel(self._interpret)
        any_amsgrad = any(g["amsgrad"] for g in self.param_groups)
        for dtype, bucket in rows.items():
            launch = self._launches.get(dtype)
            if launch is None or launch.key != keys[dtype]:
                staging = None
                if capturing:
                    # Gradients captured in a graph live in its own memory pool, so a first
                    # capture usually meets new addresses. The new table is uploaded from the
                    # pinned buffer set aside at the last eager rebuild (no pinned allocation
                    # while a graph records); every replay reads it again: kept for good.
                    staging = self._staging.pop(dtype, None)
                    if staging is None:
                        raise RuntimeError(
                            "the tensors to step changed while capturing a CUDA graph; run an "
                            "eager step with the same parameters having gradients first"
                        )
                    self._captured_hosts.append(staging)
                launch = _build_launch(bucket, keys[dtype], device, staging)
                self._launches[dtype] = launch
                if self.capturable and not capturing:
                    self._staging[dtype] = torch.empty_like(launch.host).pin_memory()
            with torch.cuda.device(device) if device.type == "cuda" else nullcontext():
                _kernel.launch(
                    kernel,
                    blocks=launch.blocks,
                    tensors=launch.tensors,
                    counters=launch.counters,
                    hyper=hyper,
                    dtype=dtype,
                    has_amsgrad=any_amsgrad,
                    aligned=launch.aligned,
                    grad_scale=grad_scale,
                    found_inf=found_inf,
                )
        if any(group[0] for group in aten):
            self._step_torch(aten, grad_scale, found_inf)


_SPARSE_MESSAGE = "FusedAdamW does not support sparse gradients"  # torch: "AdamW does not ..."


def _check_tensor(p: torch.Tensor, where: str, error: type[Exception]) -> None:
    """Raise ``error`` unless ``p`` is a dense tensor of a dtype the kernels update."""
    if p.layout != torch.strided:
        raise error(
            f"invalid params: layout={p.layout} ({where}); FusedAdamW steps dense tensors only"
        )
    if p.dtype not in DTYPES:
        raise error(
            f"invalid params: dtype={p.dtype} ({where}); "
            "FusedAdamW steps float32, float64, bfloat16 and float16 parameters"
        )


def _dense_strides(t: torch.Tensor) -> tuple[int, ...] | None:
    """``t``'s strides over its dimensions longer than 1 if it covers a gap-free, non-overlapping
    block of memory (so element ``i`` of the block is one element of ``t``), else None."""
    dims = [(s, n) for s, n in zip(t.stride(), t.shape, strict=True) if n != 1]
    expected = 1
    for stride, size in sorted(dims):
        if size == 0:
            return ()
        if stride != expected:
            return None
        expected *= size
    return tuple(s for s, _ in dims)


def _build_launch(
    bucket: list[tuple[Any, ...]],
    key: list[int],
    device: torch.device,
    staging: torch.Tensor | None = None,
) -> _Launch:
    """The device tables of ``bucket``: rows of one dtype, laid out alike (``_gather``).

    On CUDA the tables are uploaded asynchronously from pinned memory: ``staging`` when
    given (a pinned buffer allocated earlier, at least as long), else a fresh one.
    """
    table_rows: list[int] = []
    numels: list[int] = []
    for p, g, m, v, vmax, s, gi in bucket:
        for t in (p, g, m, v, vmax):
            # The kernel trusts these: a wrong one would read or write out of bounds.
            if t is not None and (t.shape != p.shape or t.device != device or t.dtype != p.dtype):
                raise RuntimeError(
                    f"a gradient or state tensor ({tuple(t.shape)}, {t.dtype}, {t.device}) does "
                    f"not match its parameter ({tuple(p.shape)}, {p.dtype}, {device})"
                )
        if s.numel() != 1:
            raise RuntimeError(f"state 'step' must hold one number, not shape {tuple(s.shape)}")
        table_rows += _kernel.tensor_row(
            p.data_ptr(),
            g.data_ptr(),
            m.data_ptr(),
            v.data_ptr(),
            0 if vmax is None else vmax.data_ptr(),
            s.data_ptr(),
            p.numel(),
            gi,
        )
        numels.append(p.numel())
    block_rows = _kernel.block_rows(numels)
    addresses = [a for i, a in enumerate(table_rows) if i % int(_kernel.TENSOR_COLUMNS) < 5]
    aligned = all(a % _kernel.ALIGN_BYTES == 0 for a in addresses)
    host = torch.tensor(block_rows + table_rows, dtype=torch.int64)
    if device.type == "cuda":
        if staging is not None:
            if staging.numel() < host.numel():
                raise RuntimeError(
                    "more tensors to step while capturing a CUDA graph than in the eager step "
                    "before it; run an eager step with the same parameters having gradients"
                )
            host = staging[: host.numel()].copy_(host)
        else:
            host = host.pin_memory()
        table = torch.empty(host.shape, dtype=torch.int64, device=device)
        table.copy_(host, non_blocking=True)
    else:
        table = host
    n_blocks = len(block_rows) // int(_kernel.BLOCK_COLUMNS)
    blocks = table[: len(block_rows)].view(n_blocks, int(_kernel.BLOCK_COLUMNS))
    tensors = table[len(block_rows) :].view(len(numels), int(_kernel.TENSOR_COLUMNS))
    counters = torch.zeros(len(numels), dtype=torch.int32, device=device)
    return _Launch(
        key=key, blocks=blocks, tensors=tensors, counters=counters, aligned=aligned, host=host
    )


def _stand_ins(
    p: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    vmax: torch.Tensor | None,
    write_back: list[tuple[torch.Tensor, torch.Tensor]],
    write_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``p`` and its tensors as the fused kernels can walk them: each as it is where it is
    dense, of ``p``'s dtype and laid out like ``p``, else a copy that is (recorded in
    ``write_back``)."""
    with torch.no_grad():
        layout = _dense_strides(p)
        p_used = p
        if layout is None:  # a parameter with gaps or overlaps: step a dense copy
            p_used = p.contiguous()
            write_back.append((p, p_used))
            layout = _dense_strides(p_used)
        g_used = _matching(g, "the gradient", p_used, layout, write_back if write_grad else [])
        m_used = _matching(m, "exp_avg", p_used, layout, write_back)
        v_used = _matching(v, "exp_avg_sq", p_used, layout, write_back)
        vmax_used = (
            None if vmax is None else _matching(vmax, "max_exp_avg_sq", p_used, layout, write_back)
        )
    return p_used, g_used, m_used, v_used, vmax_used


def _matching(
    t: torch.Tensor,
    name: str,
    p: torch.Tensor,
    layout: tuple[int, ...] | None,
    write_back: list[tuple[torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """``t`` (a gradient or state tensor of ``p``) if it has ``p``'s dtype and dense
    ``layout``, else a copy laid out like ``p``, recorded in ``write_back``."""
    if t.shape != p.shape or t.device != p.device:
        raise RuntimeError(
            f"{name} of a parameter of shape {tuple(p.shape)} on {p.device} has "
            f"shape {tuple(t.shape)} on {t.device}"
        )
    if t.dtype == p.dtype and _dense_strides(t) == layout:
        return t
    stand_in = torch.empty_like(p).copy_(t)
    write_back.append((t, stand_in))
    return stand_in


def _refresh_device_lrs(
    hyper: torch.Tensor, device_lrs: list[tuple[int, torch.Tensor, float]]
) -> None:
    """Write each CUDA Tensor lr, and the decay factor 1 - lr * wd, into the table.

    Device ops in stream order, no host synchronisation (so a captured step replays them
    with the tensor's value at replay time). In float64, one rounding per op, as Python
    computes ``1 - lr * weight_decay`` for a number lr (separate kernels: no fused
    multiply-add).
    """
    with torch.no_grad():
        for gi, lr, weight_decay in device_lrs:
            row = hyper[gi]
            lr64 = row[int(_kernel.HYPER_LR)]
            lr64.copy_(lr)
            row[int(_kernel.HYPER_DECAY_FACTOR)].copy_(torch.rsub(lr64 * weight_decay, 1.0))


class _Same:
    """Compares equal only to a ``_Same`` of the identical object (a CUDA Tensor lr in a group
    signature: comparing its value would synchronise with the device)."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


def _signature(group: Mapping[str, Any]) -> tuple[Any, ...]:
    """The values of a group that the step reads (index 5 is amsgrad)."""
    lr = group["lr"]
    if isinstance(lr, torch.Tensor):
        lr = float(lr.detach()) if lr.device.type == "cpu" else _Same(lr)
    betas = group["betas"]
    return (
        lr,
        tuple(betas) if isinstance(betas, list) else betas,
        group["eps"],
        group["weight_decay"],
        group["maximize"],
        group["amsgrad"],
        group["mode"],
    )


def _hyper_row(group: Mapping[str, Any]) -> list[float]:
    """The kernel's table row of ``group``; a CUDA Tensor lr is written on the device later."""
    lr = group["lr"]
    if isinstance(lr, torch.Tensor):
        lr = float(lr.detach()) if lr.device.type == "cpu" else 0.0
    beta1, beta2 = group["betas"]
    return _kernel.hyper_row(
        lr=float(lr),
        beta1=float(beta1),
        beta2=float(beta2),
        eps=float(group["eps"]),
        weight_decay=float(group["weight_decay"]),
        amsgrad=group["amsgrad"],
        maximize=group["maximize"],
        decoupled=group["mode"] == "adamw",
    )


def _loaded_mode(saved: Mapping[str, Any], current: Mapping[str, Any]) -> Any:
    if "mode" in saved:
        return saved["mode"]
    decoupled = saved.get("decoupled_weight_decay")
    if decoupled is None:
        return current["mode"]
    return "adamw" if decoupled else "adam"


def _upload(dst: torch.Tensor, values: list[Any], dtype: torch.dtype) -> None:
    """Copy host ``values`` into ``dst`` in place, without a host synchronisation on CUDA.

    The staging tensor is pinned and freshly allocated, so the asynchronous copy never reads
    memory that a later upload overwrites (the caching host allocator holds the block until
    the copy has run). In place keeps the device address, which a captured graph reads.
    """
    host = torch.tensor(values, dtype=dtype).reshape(dst.shape)
    if dst.is_cuda:
        dst.copy_(host.pin_memory(), non_blocking=True)
    else:
        dst.copy_(host)


def _is_number(x: object) -> bool:
    """A real number: Python's or numpy's (numpy registers its scalars as ``numbers.Real``)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)
