"""``FusedAdamW``: AdamW (or coupled-L2 Adam) over flat buffers, one kernel launch per step.

What it promises:

- **Math.** ``mode="adamw"`` is ``torch.optim.AdamW`` (decoupled weight decay) and
  ``mode="adam"`` is ``torch.optim.Adam`` with ``weight_decay`` (coupled L2): the same
  formulas in the same order (``sweeper.optim.reference`` spells them out). Results agree with
  torch to float32 rounding (tested at atol 1e-6, rtol 1e-5), not bit for bit. Every
  hyperparameter, ``mode`` included, may differ per parameter group.
- **Packing.** Construction packs every parameter of every group into one flat float32
  buffer on one device: each parameter's ``.data`` becomes a view into it and its ``.grad`` a
  view into a flat gradient buffer, so backward accumulates straight into the flat buffer and
  a step is one pass over it. Parameters keep their identity, shape and values (a
  non-contiguous parameter becomes contiguous). Build the optimizer after the model is on its
  device: a parameter whose storage moves afterwards (``model.to(...)``) makes the next
  ``step()`` raise ``RuntimeError`` instead of silently training stale buffers.
- **Skipping.** A parameter that got no gradient this step is left untouched, its step
  count too, as torch does. It got one if autograd accumulated into its ``.grad`` since the
  last ``zero_grad()``, or if its ``.grad`` was assigned a tensor; ``.grad = None`` means none.
- **zero_grad.** ``zero_grad(set_to_none=True)`` (the default) zeroes the whole gradient
  buffer in one fill and marks every parameter as having no gradient, with torch's meaning:
  parameters that then receive none are skipped. The one visible difference from torch:
  ``.grad`` of a parameter that requires grad stays a zero view instead of becoming None, so
  the next backward accumulates in place into the flat buffer (None would make autograd
  allocate a fresh tensor that ``step()`` must copy in). ``zero_grad(set_to_none=False)``
  zeroes the gradients and keeps them counting as gradients, as torch does.
- **Implementations** (``impl``): ``"triton"`` runs ``sweeper.optim.kernel``, compiled on CUDA
  and under Triton's interpreter on the CPU; ``"torch"`` runs ATen's fused Adam/AdamW CPU or
  CUDA kernel (``torch._fused_adamw_``, what ``torch.optim.AdamW(fused=True)`` runs) over
  contiguous spans of the flat buffers, one call per group; ``"auto"`` (default) takes
  ``$SWEEPER_ADAMW_IMPL`` when set, else ``"triton"`` on CUDA and ``"torch"`` on the CPU.
  ``implementation`` names what runs, for provenance.
- **Host work.** With ``impl="triton"`` on CUDA, ``step()`` issues one kernel launch and no
  host synchronisation: per-group hyperparameters live in a small device table, re-uploaded
  (asynchronously) only when a group's values changed, e.g. by an LR scheduler; the step
  count lives on the device. After one eager warm-up step, ``step()`` can be captured in a
  CUDA graph (``capturable`` says whether this instance can); between replays, call
  ``sync_hyperparameters()`` after changing a group's lr.
- **State.** ``state_dict()`` has torch.optim.AdamW's layout (per parameter ``step``,
  ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` with AMSGrad; the tensors are live views, as
  torch returns live tensors), and ``load_state_dict()`` accepts this class's state dicts and
  those of ``torch.optim.AdamW`` / ``torch.optim.Adam``, copying the values into the flat
  buffers.
"""

from __future__ import annotations

import contextlib
import math
import os
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, overload

import torch
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

from sweeper.optim import kernel as _kernel

IMPL_ENV = "SWEEPER_ADAMW_IMPL"  # overrides impl="auto": "triton", "torch" or "auto"
IMPLS = ("auto", "triton", "torch")
MODES = ("adamw", "adam")

# Values of ``FusedAdamW.implementation``.
IMPLEMENTATION_TRITON = "triton"  # the Triton kernel, compiled for the GPU
IMPLEMENTATION_TRITON_INTERPRETER = "triton-interpreter"  # the same kernel, interpreted
IMPLEMENTATION_TORCH = "torch-fused-flat"  # ATen's fused Adam(W) kernel over flat spans

_STATE_KEYS = ("exp_avg", "exp_avg_sq")


def check_hyperparameters(group: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the argument and its value if ``group`` has a bad one.

    ``group`` holds ``lr``, ``betas``, ``eps``, ``weight_decay``, ``amsgrad``, ``maximize``
    and ``mode``, as a parameter group (or the constructor's arguments) does.
    """
    lr = group["lr"]
    if not (_is_number(lr) and math.isfinite(lr) and lr >= 0):
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


class FusedAdamW(Optimizer):
    """AdamW / Adam+L2 with all parameters in one flat buffer; see the module docstring.

    Args:
        params: parameters or parameter groups (dicts), as for any ``torch.optim``
            optimizer. All float32, all on one device (cpu or cuda).
        lr: learning rate, >= 0.
        betas: coefficients of the running averages of the gradient and its square, each
            in [0, 1).
        eps: added to the denominator after the square root, >= 0.
        weight_decay: decoupled decay (``mode="adamw"``) or L2 coefficient
            (``mode="adam"``), >= 0.
        amsgrad: normalise by the running maximum of the second moment.
        maximize: ascend instead of descend.
        mode: ``"adamw"`` (torch.optim.AdamW) or ``"adam"`` (torch.optim.Adam with L2).
        impl: ``"auto"``, ``"triton"`` or ``"torch"`` (keyword only); see ``resolve_impl``.

    Raises:
        ValueError: a bad hyperparameter, ``mode`` or ``impl``, a parameter that is not a
            float32 dense tensor, a parameter repeated in a group, or parameters on more
            than one device. The message names the argument and the value.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
        mode: str = "adamw",
        *,
        impl: str = "auto",
    ) -> None:
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
        self._packed = False
        self._hooks: dict[int, RemovableHandle] = {}
        self._index_of: dict[int, int] = {}
        self._uploaded_active: tuple[bool, ...] | None = None
        self._uploaded_sigs: list[tuple[Any, ...]] | None = None
        super().__init__(params, defaults)
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
        return self._device.type == "cuda" and self._impl == "triton" and not self._interpret

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

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter that has a gradient; returns ``closure()`` if given.

        With ``impl="triton"`` on CUDA this is one kernel launch and no host synchronisation.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        capturing = self._device.type == "cuda" and torch.cuda.is_current_stream_capturing()
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
        self._ensure_state(active)
        if self._impl == "triton":
            self._step_triton()
        else:
            self._step_torch(active)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the flat gradient buffer (one fill); see the module docstring for semantics.

        ``set_to_none=True``: every parameter counts as having no gradient until backward
        reaches it or its ``.grad`` is assigned; ``.grad`` of a parameter that requires grad
        stays a zero view of the flat buffer (torch would set None), others become None.
        ``set_to_none=False``: gradients become zeros and still count as gradients.
        """
        self._flat_grad.zero_()
        for i, p in enumerate(self._params):
            if p.requires_grad and id(p) not in self._hooks:
                self._register_hook(p)
            view = self._grad_views[i]
            grad = p.grad
            hooked = id(p) in self._hooks
            if grad is not view:
                if grad is not None:
                    if set_to_none:
                        grad = None
                    else:
                        grad.zero_()  # as torch does to the tensor it keeps
                        self._has_grad[i] = True
                if grad is None:
                    self._has_grad[i] = False
                    if hooked:
                        p.grad = view
                    else:
                        p.grad = None
                else:
                    p.grad = view
            elif set_to_none:
                self._has_grad[i] = False
                if not hooked:
                    p.grad = None

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
        check_hyperparameters({**self.defaults, **param_group})
        super().add_param_group(param_group)
        self.param_groups[-1]["betas"] = tuple(self.param_groups[-1]["betas"])
        if self._packed:
            self._pack()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load this class's state dict or torch.optim.AdamW's / Adam's into the flat buffers.

        A group without ``mode`` takes it from torch's ``decoupled_weight_decay`` (AdamW:
        True, Adam: False), else keeps its current mode. Step counts, moments and
        hyperparameters are copied; parameters without saved state start fresh.
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
        self._uploaded_sigs = None
        self._ensure_max_buffer()
        self._install_loaded_state()

    # -- packing --------------------------------------------------------------------------------

    def _check_params(self, tensors: list[Any]) -> None:
        seen: set[int] = set()
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
            if id(p) in seen:
                raise ValueError(
                    f"invalid params: parameter {k} appears twice in the group; "
                    "each parameter must appear once"
                )
            seen.add(id(p))
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
        """(Re)build the flat buffers from the current groups, keeping values and state."""
        params = [p for g in self.param_groups for p in g["params"]]
        group_of = [gi for gi, g in enumerate(self.param_groups) for _ in g["params"]]
        if not params:
            raise ValueError("invalid params: the parameter groups hold no parameters")
        device = params[0].device
        impl, interpret = resolve_impl(self._requested_impl, device)
        numels = [p.numel() for p in params]
        # The kernel needs ALIGN-aligned offsets for vector loads; ATen's fused kernel needs
        # contiguous groups, which tight packing keeps free of padding.
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

        param_views, grad_views = views(flat_param), views(flat_grad)
        has_grad: list[bool] = []
        with torch.no_grad():
            for i, p in enumerate(params):
                param_views[i].copy_(p)
                grad = p.grad
                old = old_index.get(id(p))
                if grad is None:
                    present = False
                elif old is not None and grad is old_grad_views[old]:
                    present = old_has_grad[old]
                else:
                    present = True
                if present and grad is not None:
                    if grad.is_sparse:
                        raise RuntimeError("FusedAdamW does not support sparse gradients")
                    grad_views[i].copy_(grad)
                has_grad.append(present)

        if impl == "triton":
            blocks, step_ranges = _kernel.block_table(offsets, numels, group_of, device)
            n_steps = blocks.shape[0]
        else:
            blocks = torch.empty((0, _kernel.BLOCK_COLUMNS), dtype=torch.int64, device=device)
            step_ranges = [(i, i + 1) for i in range(len(params))]
            n_steps = len(params)
        steps = torch.zeros(n_steps, dtype=torch.float32, device=device)
        host_steps = [0.0] * len(params)

        # Carry existing state (a re-pack after add_param_group) into the new buffers.
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
                steps[lo:hi].copy_(state["step"])
                host_steps[i] = float(state["step"])

        self._device = device
        self._impl, self._interpret = impl, interpret
        self._params = params
        self._group_of = group_of
        self._group_ranges = _group_ranges(group_of, len(self.param_groups))
        self._numels, self._offsets = numels, offsets
        self._flat_param, self._flat_grad = flat_param, flat_grad
        self._exp_avg, self._exp_avg_sq = exp_avg, exp_avg_sq
        self._max_exp_avg_sq = max_exp_avg_sq
        self._grad_views = grad_views
        self._m_views, self._v_views, self._vmax_views = m_views, v_views, vmax_views
        self._has_grad = has_grad
        self._blocks = blocks
        self._steps = steps
        self._step_ranges = step_ranges
        self._step_views = [steps[lo] for lo, _ in step_ranges]
        self._host_steps = host_steps
        self._index_of = {id(p): i for i, p in enumerate(params)}
        self._hyper = torch.zeros(
            (len(self.param_groups), int(_kernel.HYPER_WIDTH)), dtype=torch.float64, device=device
        )
        self._active = torch.zeros(len(params), dtype=torch.int8, device=device)
        self._active_float = torch.zeros(len(params), dtype=torch.float32, device=device)
        self._uploaded_active = None
        self._uploaded_sigs = None
        self._amsgrad_any = any_amsgrad

        # Re-point the parameters and their gradients at the flat buffers.
        for i, p in enumerate(params):
            p.data = param_views[i]
            if p.requires_grad and id(p) not in self._hooks:
                self._register_hook(p)
            if has_grad[i] or id(p) in self._hooks:
                p.grad = grad_views[i]
            else:
                p.grad = None
        self._data_ptrs = [p.data_ptr() for p in params]

        state_entries = {p: self._state_entry(i) for i, p in enumerate(params) if self.state.get(p)}
        self.state = defaultdict(dict, state_entries)
        self._state_ready = [bool(self.state.get(p)) for p in params]
        self._n_ready = sum(self._state_ready)
        self._packed = True

    def release_parameters(self) -> None:
        """Stop tracking gradients of this optimizer's parameters (remove its grad hooks).

        For handing the same parameters to a new optimizer (a pack whose members changed):
        the old one's hooks would keep marking gradients for an optimizer no longer used.
        """
        for handle in self._hooks.values():
            handle.remove()
        self._hooks.clear()

    def _register_hook(self, p: torch.Tensor) -> None:
        self._hooks[id(p)] = p.register_post_accumulate_grad_hook(_grad_hook(weakref.ref(self)))

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
        with torch.no_grad():
            # Copy first, zero later: the loaded tensors may be this optimizer's own views.
            for i in present:
                p = self._params[i]
                state = loaded[p]
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
                step = torch.as_tensor(state["step"], dtype=torch.float32)
                lo, hi = self._step_ranges[i]
                self._steps[lo:hi].copy_(step)
                self._host_steps[i] = float(step)
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
                self._host_steps[i] = 0.0
        self.state = defaultdict(dict, {self._params[i]: self._state_entry(i) for i in present})
        self._state_ready = [i in present_set for i in range(len(self._params))]
        self._n_ready = len(present)

    # -- one step -------------------------------------------------------------------------------

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
        for group in self.param_groups:
            check_hyperparameters(group)
        self._ensure_max_buffer()
        amsgrad_changed = self._uploaded_sigs is None or any(
            old[5] != new[5] for old, new in zip(self._uploaded_sigs, sigs, strict=True)
        )
        if amsgrad_changed:
            for i, p in enumerate(self._params):
                if self._state_ready[i]:
                    self.state[p] = self._state_entry(i)
        self._amsgrad_any = any(g["amsgrad"] for g in self.param_groups)
        if self._impl == "triton":
            rows = [
                _kernel.hyper_row(
                    lr=g["lr"],
                    beta1=g["betas"][0],
                    beta2=g["betas"][1],
                    eps=g["eps"],
                    weight_decay=g["weight_decay"],
                    amsgrad=g["amsgrad"],
                    maximize=g["maximize"],
                    decoupled=g["mode"] == "adamw",
                )
                for g in self.param_groups
            ]
            _upload(self._hyper, rows, torch.float64)
        self._uploaded_sigs = sigs

    def _collect_active(self) -> tuple[bool, ...]:
        """Per parameter: did it get a gradient this step? Adopts foreign ``.grad`` tensors."""
        active = []
        for i, p in enumerate(self._params):
            if p.data_ptr() != self._data_ptrs[i]:
                raise RuntimeError(
                    f"parameter {i} no longer lives in FusedAdamW's flat buffer (was the model "
                    "moved, or a parameter's .data replaced, after the optimizer was built?); "
                    "build the optimizer after moving the model"
                )
            grad = p.grad
            if grad is self._grad_views[i]:
                active.append(self._has_grad[i])
            elif grad is None:
                self._has_grad[i] = False
                active.append(False)
            else:
                self._adopt_grad(i, p, grad)
                active.append(True)
        return tuple(active)

    def _adopt_grad(self, i: int, p: torch.Tensor, grad: torch.Tensor) -> None:
        """Copy a gradient tensor that is not our view into the flat buffer; attach the view."""
        if grad.is_sparse:
            raise RuntimeError("FusedAdamW does not support sparse gradients")
        view = self._grad_views[i]
        view.copy_(grad)
        p.grad = view
        self._has_grad[i] = True
        if p.requires_grad and id(p) not in self._hooks:
            self._register_hook(p)

    def _upload_active(self, active: tuple[bool, ...]) -> None:
        if self._impl == "triton":
            _upload(self._active, list(active), torch.int8)
        else:
            _upload(self._active_float, list(active), torch.float32)
        self._uploaded_active = active

    def _ensure_state(self, active: tuple[bool, ...]) -> None:
        """Expose state for parameters stepped for the first time (torch's lazy init)."""
        if self._n_ready == len(self._params):
            return
        for i, a in enumerate(active):
            if a and not self._state_ready[i]:
                self.state[self._params[i]] = self._state_entry(i)
                self._state_ready[i] = True
                self._n_ready += 1

    def _step_triton(self) -> None:
        kernel = _kernel.adamw_kernel(self._interpret)
        device_ctx = (
            torch.cuda.device(self._device)
            if self._device.type == "cuda"
            else contextlib.nullcontext()
        )
        with device_ctx:
            _kernel.launch(
                kernel,
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

    def _step_torch(self, active: tuple[bool, ...]) -> None:
        """ATen's fused Adam(W) over contiguous spans of the flat buffers, one call per group.

        A span is a run of consecutive parameters of one group that all have a gradient and
        the same step count (ATen takes one step tensor per tensor it updates); normally a
        whole group is one span.
        """
        spans_per_group = [self._spans(lo, hi, active) for lo, hi in self._group_ranges]
        self._steps.add_(self._active_float)
        for i, a in enumerate(active):
            if a:
                self._host_steps[i] += 1.0
        for group, spans in zip(self.param_groups, spans_per_group, strict=True):
            if not spans:
                continue
            cuts = [
                (self._offsets[a], self._offsets[b - 1] + self._numels[b - 1]) for a, b in spans
            ]
            fused = torch._fused_adamw_ if group["mode"] == "adamw" else torch._fused_adam_
            beta1, beta2 = group["betas"]
            fused(
                [self._flat_param[s:e] for s, e in cuts],
                [self._flat_grad[s:e] for s, e in cuts],
                [self._exp_avg[s:e] for s, e in cuts],
                [self._exp_avg_sq[s:e] for s, e in cuts],
                [self._max_exp_avg_sq[s:e] for s, e in cuts]
                if group["amsgrad"] and self._max_exp_avg_sq is not None
                else [],
                [self._step_views[a] for a, _ in spans],
                lr=float(group["lr"]),
                beta1=float(beta1),
                beta2=float(beta2),
                weight_decay=float(group["weight_decay"]),
                eps=float(group["eps"]),
                amsgrad=group["amsgrad"],
                maximize=group["maximize"],
            )

    def _spans(self, lo: int, hi: int, active: tuple[bool, ...]) -> list[tuple[int, int]]:
        """Runs ``[a, b)`` of parameters in ``[lo, hi)`` that are active with equal steps."""
        spans: list[tuple[int, int]] = []
        i = lo
        while i < hi:
            if not active[i]:
                i += 1
                continue
            j = i + 1
            while j < hi and active[j] and self._host_steps[j] == self._host_steps[i]:
                j += 1
            spans.append((i, j))
            i = j
        return spans


def _grad_hook(ref: weakref.ReferenceType[FusedAdamW]) -> Callable[[torch.Tensor], None]:
    """A post-accumulate-grad hook: marks the parameter as having a gradient this step."""

    def hook(param: torch.Tensor) -> None:
        optimizer = ref()
        if optimizer is not None:
            i = optimizer._index_of.get(id(param))
            if i is not None:
                optimizer._has_grad[i] = True

    return hook


def _signature(group: Mapping[str, Any]) -> tuple[Any, ...]:
    """The values of a group that the step reads (index 5 is amsgrad)."""
    betas = group["betas"]
    return (
        group["lr"],
        tuple(betas) if isinstance(betas, tuple | list) else betas,
        group["eps"],
        group["weight_decay"],
        group["maximize"],
        group["amsgrad"],
        group["mode"],
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
    return isinstance(x, int | float) and not isinstance(x, bool)
