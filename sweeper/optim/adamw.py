"""``FusedAdamW``: AdamW (or coupled-L2 Adam) over flat buffers, one kernel launch per step.

A drop-in for ``torch.optim.AdamW`` (and, with ``mode="adam"``, ``torch.optim.Adam``). What
it promises:

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
- **Packing.** Construction packs every parameter of every group into one flat float32
  buffer on one device: each parameter's ``.data`` becomes a view into it, and a gradient,
  once the parameter has one, lives in a flat gradient buffer, so backward accumulates
  straight into it and a step is one pass over it. Parameters keep their identity, shape and
  values (a non-contiguous parameter becomes contiguous). Build the optimizer after the model
  is on its device: a parameter whose storage moves afterwards (``model.to(...)``) makes the
  next ``step()`` raise ``RuntimeError`` instead of silently training stale buffers. Only
  dense float32 parameters on one cpu or cuda device are accepted (``ValueError`` otherwise;
  torch also takes float64/bf16/complex). A parameter repeated in a group draws torch's
  warning and is updated once per step (torch's list holds it twice and updates it twice).
- **Which parameters step.** As in torch, a parameter is updated when it has a gradient: any
  ``.grad`` that is not None, however it was written (backward, assignment, or in place:
  ``p.grad.add_(g)``, ``p.grad.copy_(g)``), and skipped when ``.grad`` is None, its step count
  too. The one visible difference: ``zero_grad(set_to_none=True)`` leaves a zero view of the
  flat buffer in ``.grad`` of a parameter that had a gradient, instead of None, so the next
  backward accumulates in place (None would make autograd allocate a fresh tensor that
  ``step()`` must copy in). Such a zeroed view counts as "no gradient" until something writes
  to it (each gradient has its own version counter, bumped by every in-place write, which
  ``step()`` compares with the one it saw at ``zero_grad``); note that an in-place op on it
  (e.g. ``clip_grad_norm_``'s scaling) counts as a write. ``zero_grad(set_to_none=False)``
  zeroes gradients that exist and keeps them counting, as torch does. Sparse gradients
  raise ``RuntimeError`` at ``step()``, as torch's AdamW does.
- **Implementations** (``impl``): ``"triton"`` runs ``sweeper.optim.kernel``, compiled on CUDA
  and under Triton's interpreter on the CPU; ``"torch"`` runs ATen's fused Adam/AdamW CPU or
  CUDA kernel through torch's public functional API
  (``torch.optim.adamw.adamw(..., fused=True)``, what ``torch.optim.AdamW(fused=True)`` runs),
  one call per group over per-parameter views of the flat buffers; ``"auto"`` (default) takes
  ``$SWEEPER_ADAMW_IMPL`` when set, else ``"triton"`` on CUDA and ``"torch"`` on the CPU.
  ``implementation`` names what runs, for provenance. torch's ``foreach``/``fused`` flags are
  accepted for drop-in use (``fused=False`` and ``differentiable=True`` are refused: this
  class has only a fused, non-differentiable step); ``capturable=True`` demands an instance
  whose step can be captured.
- **Host work.** With ``impl="triton"`` on CUDA, ``step()`` issues one kernel launch and no
  host synchronisation: per-group hyperparameters live in a small device table, re-uploaded
  (asynchronously) only when a group's values changed, e.g. by an LR scheduler; the step
  count lives on the device. The Python around the launch is a few list passes over cached
  per-parameter facts (storage address, gradient identity, gradient version). After one
  eager warm-up step, ``step()`` can be captured in a CUDA graph (``capturable`` says whether
  this instance can); between replays, call ``sync_hyperparameters()`` after changing a
  group's lr (a CUDA Tensor lr changed in place needs no call).
- **torch.compile.** ``step()`` and ``zero_grad()`` are excluded from compilation
  (``torch.compiler.disable``): a compiled function that calls them graph-breaks there and
  runs them eagerly, and a compiled model trains as with torch's optimizer.
  ``fullgraph=True`` over a function that calls ``step()`` raises torch's own error about
  the graph break (one launch of a hand-written kernel gains nothing from tracing).
- **State.** ``state_dict()`` has torch.optim.AdamW's layout (per parameter ``step``,
  ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` with AMSGrad; the tensors are live views, as
  torch returns live tensors; each group also carries ``decoupled_weight_decay``, so
  ``torch.optim.Adam`` loads the right math), and ``load_state_dict()`` accepts this class's
  state dicts (its own included) and those of ``torch.optim.AdamW`` / ``torch.optim.Adam``,
  copying the values into the flat buffers. ``copy.deepcopy``, ``pickle`` and
  ``torch.save``/``torch.load`` of the optimizer give one that packs its (copied) parameters
  afresh and continues, as torch's optimizers do.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from itertools import chain
from typing import Any

import torch
import torch.optim.optimizer as _torch_optimizer
from torch.optim import Optimizer
from torch.optim.adam import adam as _torch_adam
from torch.optim.adamw import adamw as _torch_adamw

from sweeper.optim import kernel as _kernel

# The hooks every optimizer's step runs (``torch.optim.optimizer.register_optimizer_step_*``).
# torch wraps ``step`` in a function that opens a profiler range (about 8 us per call, even with
# no profiler) and runs these; ``FusedAdamW.step`` runs the same hooks and opens the range only
# while a profiler is on. Private names of torch.optim, read in this one place; when a torch
# lacks them, torch's own wrapper is used instead (``_OWN_STEP_WRAPPER``).
_GLOBAL_PRE_HOOKS: dict[Any, Any] | None = getattr(
    _torch_optimizer, "_global_optimizer_pre_hooks", None
)
_GLOBAL_POST_HOOKS: dict[Any, Any] | None = getattr(
    _torch_optimizer, "_global_optimizer_post_hooks", None
)
_OWN_STEP_WRAPPER = _GLOBAL_PRE_HOOKS is not None and _GLOBAL_POST_HOOKS is not None

IMPL_ENV = "SWEEPER_ADAMW_IMPL"  # overrides impl="auto": "triton", "torch" or "auto"
IMPLS = ("auto", "triton", "torch")
MODES = ("adamw", "adam")
# weight_decay when the caller gives none: torch.optim.AdamW's and torch.optim.Adam's defaults.
DEFAULT_WEIGHT_DECAY = {"adamw": 1e-2, "adam": 0.0}

# Values of ``FusedAdamW.implementation``.
IMPLEMENTATION_TRITON = "triton"  # the Triton kernel, compiled for the GPU
IMPLEMENTATION_TRITON_INTERPRETER = "triton-interpreter"  # the same kernel, interpreted
IMPLEMENTATION_TORCH = "torch-fused-flat"  # ATen's fused Adam(W) kernel over flat-buffer views

_STATE_KEYS = ("exp_avg", "exp_avg_sq")
_data_ptr = torch.Tensor.data_ptr
_grad_of = operator.attrgetter("grad")
_version_of = operator.attrgetter("_version")


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
    Triton's interpreter: always on the CPU, and on CUDA when ``TRITON_INTERPRET=1``.
    """
    if impl not in IMPLS:
        raise ValueError(f"invalid impl={impl!r}: must be 'auto', 'triton' or 'torch'")
    if impl == "auto":
        impl = os.environ.get(IMPL_ENV) or "auto"
        if impl not in IMPLS:
            raise ValueError(f"invalid {IMPL_ENV}={impl!r}: must be 'auto', 'triton' or 'torch'")
    if impl == "auto":
        impl = "triton" if device.type == "cuda" else "torch"
    interpret = impl == "triton" and (device.type != "cuda" or _kernel.interpret_by_default())
    return impl, interpret


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


class FusedAdamW(Optimizer):
    """AdamW / Adam+L2 with all parameters in one flat buffer; see the module docstring.

    Args:
        params: parameters or parameter groups (dicts), as for any ``torch.optim``
            optimizer. All float32, all on one device (cpu or cuda).
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
            not a float32 dense tensor, or parameters on more than one device. The message
            names the argument and the value.
    """

    # Set by ``_pack``; declared here for readers and type checkers.
    _device: torch.device
    _cuda: bool
    _params: list[torch.Tensor]
    _flat_grad: torch.Tensor
    _grad_views: list[torch.Tensor]
    _has_grad: list[bool]
    _versions: list[int]

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
        self._reset_runtime()
        super().__init__(params, defaults)
        self._pack()
        if capturable and not self.capturable:
            raise ValueError(
                f"invalid capturable=True: the step of {self.implementation!r} on "
                f"{self._device} cannot be captured in a CUDA graph; only impl='triton', "
                "compiled on CUDA, can"
            )

    def _reset_runtime(self) -> None:
        """Attributes that describe no packing yet (construction and unpickling)."""
        self._packed = False
        self._index_of: dict[int, int] = {}
        self._uploaded_active: tuple[bool, ...] | None = None
        self._uploaded_sigs: list[tuple[Any, ...]] | None = None

    # -- pickling, deepcopy, torch.save ----------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """torch's optimizer state plus this class's settings; buffers are re-packed on load."""
        state = super().__getstate__()
        state["_requested_impl"] = self._requested_impl
        state["_weight_decay_follows_mode"] = self._weight_decay_follows_mode
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling re-packs the (copied) parameters and their state into fresh buffers.

        torch's ``load_state_dict`` also calls this, with only ``state`` and
        ``param_groups``; ``load_state_dict`` then installs them itself.
        """
        super().__setstate__(state)
        if "_requested_impl" in state:
            self._reset_runtime()
            self._pack()

    # -- public surface -----------------------------------------------------------------------

    @property
    def implementation(self) -> str:
        """What computes the step: ``"triton"``, ``"triton-interpreter"`` or
        ``"torch-fused-flat"``. Record it with results as provenance."""
        if self._impl == "torch":
            return IMPLEMENTATION_TORCH
        return IMPLEMENTATION_TRITON_INTERPRETER if self._interpret else IMPLEMENTATION_TRITON

    @property
    def capturable(self) -> bool:
        """Whether ``step()`` can be captured in a CUDA graph: only the compiled Triton kernel
        on CUDA can (ATen's fused kernels take lr from the host on every call; the
        interpreter runs on the host)."""
        return self._cuda and self._impl == "triton" and not self._interpret

    @property
    def impl(self) -> str:
        """The resolved ``impl``: ``"triton"`` or ``"torch"``."""
        return self._impl

    @property
    def device(self) -> torch.device:
        """The device every parameter and buffer lives on."""
        return self._device

    def sync_hyperparameters(self) -> None:
        """Upload every group's current hyperparameters to the device if any changed.

        ``step()`` calls this itself. Call it directly only when replaying a captured CUDA
        graph (no Python runs then): after changing a group's lr, before the replay.
        """
        self._sync_groups(capturing=False)

    # torch.compiler.disable: Dynamo must not trace this (it would try to functionalise the
    # fused kernel and a Triton launch); a compiled caller graph-breaks here and runs it eagerly.
    @torch.compiler.disable
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter that has a gradient; returns ``closure()`` if given.

        With ``impl="triton"`` on CUDA this is one kernel launch and no host synchronisation.
        Step hooks (``register_step_pre_hook`` and the global ones) run as for any torch
        optimizer; the profiler sees an ``Optimizer.step#FusedAdamW.step`` range.
        """
        if (
            self._optimizer_step_pre_hooks
            or self._optimizer_step_post_hooks
            or _GLOBAL_PRE_HOOKS
            or _GLOBAL_POST_HOOKS
            or torch.autograd._profiler_enabled()
        ):
            return self._step_with_hooks(closure)
        return self._step(closure)

    if _OWN_STEP_WRAPPER:
        # torch's Optimizer wraps ``step`` unless it is marked as already wrapped.
        step.hooked = True

    @torch.compiler.disable
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the flat gradient buffer (one fill); see the module docstring for semantics.

        ``set_to_none=True``: every parameter counts as having no gradient until one is
        written; ``.grad`` that is a view of the flat buffer stays (zeroed), other gradient
        tensors become None. ``set_to_none=False``: gradients that exist become zeros and
        still count as gradients, as in torch.
        """
        self._flat_grad.zero_()
        views = self._grad_views
        has = self._has_grad
        for i, p in enumerate(self._params):
            grad = p.grad
            if grad is views[i]:
                has[i] = not set_to_none
            elif grad is None:
                has[i] = False
            else:  # a tensor of autograd's or the caller's: torch's treatment, adopted at step
                has[i] = False
                if set_to_none:
                    p.grad = None
                else:
                    if grad.grad_fn is not None:
                        grad.detach_()
                    else:
                        grad.requires_grad_(False)
                    grad.zero_()
        self._versions = list(map(_version_of, views))

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (validated like the constructor's arguments) and re-pack the buffers.

        Re-packing reallocates the flat buffers: a CUDA graph captured before must be
        captured again.
        """
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
        if self._packed:
            self._pack()

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
        """Load this class's state dict or torch.optim.AdamW's / Adam's into the flat buffers.

        A group without ``mode`` takes it from torch's ``decoupled_weight_decay`` (AdamW:
        True, Adam: False), else keeps its current mode. Step counts, moments and
        hyperparameters are copied; parameters without saved state start fresh. Loading this
        optimizer's own live state dict is allowed.
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
        self._uploaded_sigs = None
        self._ensure_max_buffer()
        self._install_loaded_state()

    # -- packing --------------------------------------------------------------------------------

    def _check_params(self, tensors: list[Any]) -> None:
        devices = {p.device for g in self.param_groups for p in g["params"]}
        for k, p in enumerate(tensors):
            if not isinstance(p, torch.Tensor):
                continue  # torch's add_param_group raises its TypeError
            if p.layout != torch.strided:
                raise ValueError(
                    f"invalid params: layout={p.layout} (parameter {k} of the group); "
                    "FusedAdamW packs dense tensors only"
                )
            if p.dtype != torch.float32:
                raise ValueError(
                    f"invalid params: dtype={p.dtype} (parameter {k} of the group); "
                    "FusedAdamW packs float32 parameters only"
                )
            devices.add(p.device)
        if len(devices) > 1:
            names = ", ".join(sorted(str(d) for d in devices))
            raise ValueError(
                f"invalid params: parameters on more than one device ({names}); "
                "FusedAdamW packs one device"
            )
        for device in devices:
            if device.type not in ("cpu", "cuda"):
                raise ValueError(
                    f"invalid params: device={device} is not supported; "
                    "FusedAdamW runs on cpu and cuda"
                )

    def _pack(self) -> None:
        """(Re)build the flat buffers from the current groups, keeping values, grads, state."""
        params: list[torch.Tensor] = []
        group_of: list[int] = []
        seen: set[int] = set()
        for gi, g in enumerate(self.param_groups):
            for p in g["params"]:
                if id(p) not in seen:  # a repeated parameter (torch warned) is packed once
                    seen.add(id(p))
                    params.append(p)
                    group_of.append(gi)
        if not params:
            raise ValueError("invalid params: the parameter groups hold no parameters")
        device = params[0].device
        impl, interpret = resolve_impl(self._requested_impl, device)
        numels = [p.numel() for p in params]
        # The kernel needs ALIGN-aligned offsets for vector loads; ATen's fused kernel takes
        # any offsets, so it packs tightly.
        align = _kernel.ALIGN if impl == "triton" else 1
        offsets, total = _kernel.layout(numels, align)

        old_index = self._index_of
        old_grad_views: list[torch.Tensor] = getattr(self, "_grad_views", [])
        old_has_grad: list[bool] = getattr(self, "_has_grad", [])

        def zeros() -> torch.Tensor:
            return torch.zeros(total, dtype=torch.float32, device=device)

        flat_param, flat_grad = zeros(), zeros()
        exp_avg, exp_avg_sq = zeros(), zeros()
        any_amsgrad = any(g["amsgrad"] for g in self.param_groups)
        max_exp_avg_sq = zeros() if any_amsgrad else None

        def views(flat: torch.Tensor) -> list[torch.Tensor]:
            return [
                flat[o : o + n].view(p.shape)
                for o, n, p in zip(offsets, numels, params, strict=True)
            ]

        param_views = views(flat_param)
        # Gradients alias the flat buffer without being autograd views of it, so each has its
        # own version counter (views share their base's): a write to one gradient is visible
        # as that gradient's version change, and zeroing the whole buffer changes none.
        grad_views = [_alias(flat_grad, o, p.shape) for o, p in zip(offsets, params, strict=True)]
        has_grad: list[bool] = []
        attach: list[bool] = []
        with torch.no_grad():
            for i, p in enumerate(params):
                param_views[i].copy_(p)
                grad = p.grad
                old = old_index.get(id(p))
                if grad is None:
                    present = False
                elif old is not None and grad is old_grad_views[old]:
                    present = old_has_grad[old] or grad._version != self._versions[old]
                else:
                    present = True
                if grad is not None:
                    if grad.layout != torch.strided:
                        raise RuntimeError(_SPARSE_MESSAGE)
                    grad_views[i].copy_(grad)
                has_grad.append(present)
                attach.append(grad is not None)

        if impl == "triton":
            blocks, step_ranges = _kernel.block_table(offsets, numels, group_of, device)
            n_steps = blocks.shape[0]
        else:
            blocks = torch.empty((0, _kernel.BLOCK_COLUMNS), dtype=torch.int64, device=device)
            step_ranges = [(i, i + 1) for i in range(len(params))]
            n_steps = len(params)
        steps = torch.zeros(n_steps, dtype=torch.float32, device=device)

        # Carry existing state (a re-pack after add_param_group, or unpickling) into the new
        # buffers.
        m_views, v_views = views(exp_avg), views(exp_avg_sq)
        vmax_views = views(max_exp_avg_sq) if max_exp_avg_sq is not None else []
        with torch.no_grad():
            for i, p in enumerate(params):
                state = self.state.get(p)
                if not state:
                    continue
                m_views[i].copy_(state["exp_avg"])
                v_views[i].copy_(state["exp_avg_sq"])
                if max_exp_avg_sq is not None and "max_exp_avg_sq" in state:
                    vmax_views[i].copy_(state["max_exp_avg_sq"])
                lo, hi = step_ranges[i]
                steps[lo:hi].copy_(torch.as_tensor(state["step"], dtype=torch.float32))

        self._device = device
        self._cuda = device.type == "cuda"
        self._impl, self._interpret = impl, interpret
        self._kernel = _kernel.adamw_kernel(interpret) if impl == "triton" else None
        self._params = params
        self._group_of = group_of
        self._group_ranges = _group_ranges(group_of, len(self.param_groups))
        self._numels, self._offsets = numels, offsets
        self._flat_param, self._flat_grad = flat_param, flat_grad
        self._exp_avg, self._exp_avg_sq = exp_avg, exp_avg_sq
        self._max_exp_avg_sq = max_exp_avg_sq
        self._param_views = param_views
        self._grad_views = grad_views
        self._m_views, self._v_views, self._vmax_views = m_views, v_views, vmax_views
        self._has_grad = has_grad
        self._blocks = blocks
        self._steps = steps
        self._step_ranges = step_ranges
        self._step_views = [steps[lo] for lo, _ in step_ranges]
        self._index_of = {id(p): i for i, p in enumerate(params)}
        self._hyper = torch.zeros(
            (len(self.param_groups), int(_kernel.HYPER_WIDTH)), dtype=torch.float64, device=device
        )
        self._active = torch.zeros(len(params), dtype=torch.int8, device=device)
        self._device_lrs: list[tuple[int, torch.Tensor, float]] = []
        self._uploaded_active = None
        self._uploaded_sigs = None
        self._amsgrad_any = any_amsgrad

        # Re-point the parameters and their gradients at the flat buffers.
        for i, p in enumerate(params):
            p.data = param_views[i]
            if attach[i]:
                p.grad = grad_views[i]
        self._data_ptrs = list(map(_data_ptr, params))
        self._versions = list(map(_version_of, grad_views))

        state_entries = {p: self._state_entry(i) for i, p in enumerate(params) if self.state.get(p)}
        self.state = defaultdict(dict, state_entries)
        self._state_ready = [bool(self.state.get(p)) for p in params]
        self._n_ready = sum(self._state_ready)
        self._packed = True

    def _state_entry(self, i: int) -> dict[str, torch.Tensor]:
        """torch.optim.AdamW's per-parameter state, as views into the flat buffers."""
        entry = {
            "step": self._step_views[i],
            "exp_avg": self._m_views[i],
            "exp_avg_sq": self._v_views[i],
        }
        if self.param_groups[self._group_of[i]]["amsgrad"]:
            entry["max_exp_avg_sq"] = self._vmax_views[i]
        return entry

    def _ensure_max_buffer(self) -> None:
        """Allocate the AMSGrad buffer (zeros) the first time any group turns AMSGrad on."""
        if self._max_exp_avg_sq is not None:
            return
        if not any(g["amsgrad"] for g in self.param_groups):
            return
        self._max_exp_avg_sq = torch.zeros_like(self._exp_avg)
        self._vmax_views = [
            self._max_exp_avg_sq[o : o + n].view(p.shape)
            for o, n, p in zip(self._offsets, self._numels, self._params, strict=True)
        ]

    def _install_loaded_state(self) -> None:
        """Copy the state torch's ``load_state_dict`` left in ``self.state`` into the buffers."""
        loaded = self.state
        present = [i for i, p in enumerate(self._params) if loaded.get(p)]
        # A state dict of this very optimizer holds views of the buffers being written: copy
        # such values out first (copy_ refuses overlapping source and destination).
        own = {
            t.untyped_storage().data_ptr()
            for t in (self._exp_avg, self._exp_avg_sq, self._max_exp_avg_sq, self._steps)
            if t is not None
        }

        def detached(value: Any) -> Any:
            if isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() in own:
                return value.clone()
            return value

        with torch.no_grad():
            values = {
                i: {k: detached(v) for k, v in loaded[self._params[i]].items()} for i in present
            }
            for i in present:
                p = self._params[i]
                state = values[i]
                missing = [k for k in (*_STATE_KEYS, "step") if k not in state]
                if missing:
                    raise ValueError(f"invalid state_dict: state of parameter {i} lacks {missing}")
                for key, views in (("exp_avg", self._m_views), ("exp_avg_sq", self._v_views)):
                    value = state[key]
                    if tuple(value.shape) != tuple(p.shape):
                        raise ValueError(
                            f"invalid state_dict: {key} of parameter {i} has shape "
                            f"{tuple(value.shape)}, the parameter {tuple(p.shape)}"
                        )
                    views[i].copy_(value)
                if self._max_exp_avg_sq is not None:
                    if "max_exp_avg_sq" in state:
                        self._vmax_views[i].copy_(state["max_exp_avg_sq"])
                    else:
                        self._vmax_views[i].zero_()
                lo, hi = self._step_ranges[i]
                self._steps[lo:hi].copy_(torch.as_tensor(state["step"], dtype=torch.float32))
            present_set = set(present)
            for i in range(len(self._params)):
                if i in present_set:
                    continue
                self._m_views[i].zero_()
                self._v_views[i].zero_()
                if self._max_exp_avg_sq is not None:
                    self._vmax_views[i].zero_()
                lo, hi = self._step_ranges[i]
                self._steps[lo:hi].zero_()
        self.state = defaultdict(dict, {self._params[i]: self._state_entry(i) for i in present})
        self._state_ready = [i in present_set for i in range(len(self._params))]
        self._n_ready = len(present)

    # -- one step -------------------------------------------------------------------------------

    def _step_with_hooks(self, closure: Callable[[], float] | None) -> float | None:
        """``_step`` inside what torch's step wrapper adds: the profiler range and the hooks."""
        with torch.autograd.profiler.record_function(f"Optimizer.step#{type(self).__name__}.step"):
            args: tuple[Any, ...] = (self,) if closure is None else (self, closure)
            kwargs: dict[str, Any] = {}
            for pre_hook in chain(
                (_GLOBAL_PRE_HOOKS or {}).values(), self._optimizer_step_pre_hooks.values()
            ):
                result = pre_hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError(
                            f"{self.step} must return None or a tuple of (new_args, new_kwargs), "
                            f"but got {result}."
                        )
                    args, kwargs = result
            out = self._step(*args[1:], **kwargs)
            self._optimizer_step_code()
            for post_hook in chain(
                self._optimizer_step_post_hooks.values(), (_GLOBAL_POST_HOOKS or {}).values()
            ):
                post_hook(self, args, kwargs)
            return out

    def _step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        capturing = self._cuda and torch.cuda.is_current_stream_capturing()
        if capturing and not self.capturable:
            raise RuntimeError(
                "capturing FusedAdamW.step in a CUDA graph needs impl='triton', compiled"
            )
        self._sync_groups(capturing)
        active = self._collect_active()
        if not any(active):
            return loss
        if active != self._uploaded_active:
            if capturing:
                raise RuntimeError(
                    "the set of parameters with gradients changed while capturing a CUDA "
                    "graph; run one eager step with the same gradients before capturing"
                )
            self._upload_active(active)
        if self._n_ready != len(active):
            self._ensure_state(active)
        if self._impl == "triton":
            self._step_triton()
        else:
            self._step_torch(active)
        return loss

    def _sync_groups(self, capturing: bool) -> None:
        """Validate and upload the groups' hyperparameters if any changed since last time."""
        sigs = [_signature(g) for g in self.param_groups]
        if sigs == self._uploaded_sigs:
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
        self._ensure_max_buffer()
        amsgrad_changed = self._uploaded_sigs is None or any(
            old[5] != new[5] for old, new in zip(self._uploaded_sigs, sigs, strict=True)
        )
        if amsgrad_changed:
            for i, p in enumerate(self._params):
                if self._state_ready[i]:
                    self.state[p] = self._state_entry(i)
        self._amsgrad_any = any(g["amsgrad"] for g in self.param_groups)
        self._device_lrs = device_lrs
        if self._impl == "triton":
            rows = [_hyper_row(g) for g in self.param_groups]
            with torch.no_grad():
                _upload(self._hyper, rows, torch.float64)
        self._uploaded_sigs = sigs

    def _collect_active(self) -> tuple[bool, ...]:
        """Per parameter: does it have a gradient? Adopts gradient tensors that are not ours.

        The common case costs three passes over cached lists: storage addresses (the
        parameters were not moved), gradient identities (every ``.grad`` is our view) and
        gradient versions (which were written since ``zero_grad``).
        """
        params = self._params
        if list(map(_data_ptr, params)) != self._data_ptrs:
            self._raise_moved()
        views = self._grad_views
        has = self._has_grad
        grads = list(map(_grad_of, params))
        if not all(map(operator.is_, grads, views)):
            for i, grad in enumerate(grads):
                if grad is None:
                    has[i] = False
                elif grad is not views[i]:
                    self._adopt_grad(i, params[i], grad)
                    grads[i] = views[i]
        versions = list(map(_version_of, views))
        if versions != self._versions:
            seen = self._versions
            for i, version in enumerate(versions):
                if version != seen[i] and grads[i] is views[i]:
                    has[i] = True
            self._versions = versions
        return tuple(has)

    def _raise_moved(self) -> None:
        for i, p in enumerate(self._params):
            if p.data_ptr() != self._data_ptrs[i]:
                raise RuntimeError(
                    f"parameter {i} no longer lives in FusedAdamW's flat buffer (was the model "
                    "moved, or a parameter's .data replaced, after the optimizer was built?); "
                    "build the optimizer after moving the model"
                )

    def _adopt_grad(self, i: int, p: torch.Tensor, grad: torch.Tensor) -> None:
        """Copy a gradient tensor that is not our view into the flat buffer; attach the view."""
        if grad.layout != torch.strided:
            raise RuntimeError(_SPARSE_MESSAGE)
        view = self._grad_views[i]
        with torch.no_grad():
            view.copy_(grad)
        p.grad = view
        self._has_grad[i] = True

    def _upload_active(self, active: tuple[bool, ...]) -> None:
        if self._impl == "triton":
            _upload(self._active, list(active), torch.int8)
        self._uploaded_active = active

    def _ensure_state(self, active: tuple[bool, ...]) -> None:
        """Expose state for parameters stepped for the first time (torch's lazy init)."""
        for i, a in enumerate(active):
            if a and not self._state_ready[i]:
                self.state[self._params[i]] = self._state_entry(i)
                self._state_ready[i] = True
                self._n_ready += 1

    def _step_triton(self) -> None:
        if self._device_lrs:
            self._refresh_device_lrs()
        if self._cuda and torch.cuda.current_device() != self._device.index:
            with torch.cuda.device(self._device):
                self._launch()
        else:
            self._launch()

    def _launch(self) -> None:
        _kernel.launch(
            self._kernel,
            param=self._flat_param,
            grad=self._flat_grad,
            exp_avg=self._exp_avg,
            exp_avg_sq=self._exp_avg_sq,
            max_exp_avg_sq=self._max_exp_avg_sq if self._amsgrad_any else None,
            blocks=self._blocks,
            steps=self._steps,
            active=self._active,
            hyper=self._hyper,
        )

    def _refresh_device_lrs(self) -> None:
        """Write each CUDA Tensor lr, and the decay factor 1 - lr * wd, into the table.

        Device ops in stream order, no host synchronisation (so a captured step replays them
        with the tensor's value at replay time). In float64, one rounding per op, as Python
        computes ``1 - lr * weight_decay`` for a number lr (separate kernels: no fused
        multiply-add).
        """
        with torch.no_grad():
            for gi, lr, weight_decay in self._device_lrs:
                row = self._hyper[gi]
                lr64 = row[int(_kernel.HYPER_LR)]
                lr64.copy_(lr)
                row[int(_kernel.HYPER_DECAY_FACTOR)].copy_(torch.rsub(lr64 * weight_decay, 1.0))

    def _step_torch(self, active: tuple[bool, ...]) -> None:
        """ATen's fused Adam(W), one call per group over per-parameter views of the buffers.

        Through torch's public functional API (``torch.optim.adamw.adamw`` /
        ``torch.optim.adam.adam`` with ``fused=True``), which increments each step count and
        calls the same ATen kernel as ``torch.optim.AdamW(fused=True)``; per-parameter views,
        not spans of the flat buffer, because it takes one step count per tensor.
        """
        for group, (lo, hi) in zip(self.param_groups, self._group_ranges, strict=True):
            idx = [i for i in range(lo, hi) if active[i]]
            if not idx:
                continue
            amsgrad = group["amsgrad"]
            beta1, beta2 = group["betas"]
            fn = _torch_adamw if group["mode"] == "adamw" else _torch_adam
            fn(
                [self._param_views[i] for i in idx],
                [self._grad_views[i] for i in idx],
                [self._m_views[i] for i in idx],
                [self._v_views[i] for i in idx],
                [self._vmax_views[i] for i in idx] if amsgrad else [],
                [self._step_views[i] for i in idx],
                fused=True,
                amsgrad=amsgrad,
                beta1=float(beta1),
                beta2=float(beta2),
                lr=group["lr"] if isinstance(group["lr"], torch.Tensor) else float(group["lr"]),
                weight_decay=float(group["weight_decay"]),
                eps=float(group["eps"]),
                maximize=group["maximize"],
            )


_SPARSE_MESSAGE = "FusedAdamW does not support sparse gradients"  # torch: "AdamW does not ..."


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


def _group_ranges(group_of: list[int], n_groups: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` parameter-index range of each group (groups are packed in order)."""
    ranges = []
    start = 0
    for gi in range(n_groups):
        end = start
        while end < len(group_of) and group_of[end] == gi:
            end += 1
        ranges.append((start, end))
        start = end
    return ranges


def _alias(flat: torch.Tensor, offset: int, shape: torch.Size) -> torch.Tensor:
    """A contiguous tensor of ``shape`` over ``flat``'s memory from ``offset`` on, that is not
    an autograd view of ``flat``: it has a version counter of its own."""
    strides = []
    stride = 1
    for size in reversed(shape):
        strides.append(stride)
        stride *= max(size, 1)
    alias = torch.empty(0, dtype=flat.dtype, device=flat.device)
    with torch.no_grad():
        alias.set_(flat.untyped_storage(), flat.storage_offset() + offset, shape, strides[::-1])
    return alias


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
