"""Input validation shared by every metric (the "check inputs" step of each functional core)."""

from __future__ import annotations

from typing import Iterable

import torch

from .errors import (
    ChannelError,
    ConfigError,
    DeviceMismatchError,
    DTypeError,
    NonFiniteError,
    RangeError,
    ShapeError,
)

#: Values may exceed ``[0, data_range]`` by this fraction of ``data_range`` (interpolation overshoot).
RANGE_TOLERANCE = 1e-3

_REDUCTIONS = ("none", "mean", "sum")


def check_data_range(data_range: float) -> float:
    """Return ``data_range`` as a float, refusing non-positive or non-finite values."""
    try:
        value = float(data_range)
    except (TypeError, ValueError) as exc:
        raise RangeError(f"data_range must be a positive number, got {data_range!r}") from exc
    if not (value > 0.0 and value < float("inf")):
        raise RangeError(f"data_range must be a positive finite number, got {data_range!r}")
    return value


def check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ConfigError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply a ``none|mean|sum`` reduction to per-sample values of shape (B,)."""
    if reduction == "none":
        return values
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    raise ConfigError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def check_tensor(
    x: object,
    name: str,
    *,
    ndims: Iterable[int] = (4, 5),
    channels: int | None = None,
    data_range: float | None = None,
    allow_nonfinite: bool = False,
) -> torch.Tensor:
    """Validate one image tensor: type, dtype, dimensions, channels, finiteness, intensity range."""
    if not isinstance(x, torch.Tensor):
        raise DTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise DTypeError(
            f"{name} must be a floating-point tensor (float16/bfloat16/float32/float64), got {x.dtype}"
        )
    ndims = tuple(ndims)
    if x.dim() not in ndims:
        layouts = {4: "(B,C,H,W)", 5: "(B,C,D,H,W)"}
        expected = " or ".join(layouts.get(n, f"{n}-D") for n in ndims)
        raise ShapeError(f"{name} must be {expected}, got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or any(s == 0 for s in x.shape):
        raise ShapeError(f"{name} has an empty dimension: shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ChannelError(
            f"{name} must have {channels} channel(s) in dim 1, got {x.shape[1]} (shape {tuple(x.shape)})"
        )
    if x.device.type == "meta":
        # A meta tensor has a shape but no values: nothing more to check here. A pair with one
        # meta tensor is then refused by check_pair (DeviceMismatchError).
        return x
    if not allow_nonfinite and not bool(torch.isfinite(x).all()):
        raise NonFiniteError(f"{name} contains NaN or Inf values")
    if data_range is not None:
        tol = RANGE_TOLERANCE * data_range
        lo, hi = float(x.detach().min()), float(x.detach().max())
        if lo < -tol or hi > data_range + tol:
            raise RangeError(
                f"{name} has values in [{lo:.4g}, {hi:.4g}], expected [0, {data_range:g}] "
                f"(pass data_range= matching your intensity scale, or rescale the input)"
            )
    return x


def check_pair(
    a: torch.Tensor,
    b: torch.Tensor,
    names: tuple[str, str] = ("fake", "real"),
) -> None:
    """Check that two validated tensors can be compared: same shape, device and dtype."""
    if a.shape != b.shape:
        raise ShapeError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.device != b.device:
        raise DeviceMismatchError(
            f"{names[0]} is on {a.device} but {names[1]} is on {b.device}; move both to one device"
        )
    if a.dtype != b.dtype:
        raise DTypeError(f"{names[0]} is {a.dtype} but {names[1]} is {b.dtype}; use one dtype for both")


def check_image_pair(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float,
    ndims: Iterable[int] = (4, 5),
    channels: int | None = None,
    names: tuple[str, str] = ("x", "y"),
) -> float:
    """Full check of a (test, reference) pair. Returns the validated ``data_range``."""
    dr = check_data_range(data_range)
    ndims = tuple(ndims)
    check_tensor(x, names[0], ndims=ndims, channels=channels, data_range=dr)
    check_tensor(y, names[1], ndims=ndims, channels=channels, data_range=dr)
    check_pair(x, y, names)
    return dr


def check_device(device: object) -> torch.device:
    """Parse a device name (``"cpu"``, ``"cuda:0"``, ...) and refuse one that cannot compute here.

    Raises :class:`ConfigError` for an unknown name, a CUDA/MPS device on a machine without it, a
    CUDA index beyond the available GPUs, or ``"meta"`` (tensors without data).
    """
    try:
        dev = torch.device(device)  # type: ignore[arg-type]
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError(f"invalid device {device!r}, expected e.g. 'cpu' or 'cuda:0' ({exc})") from exc
    if dev.type == "meta":
        raise ConfigError("device 'meta' holds no data and cannot compute scores; use 'cpu' or 'cuda'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was requested but CUDA is not available here; use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {device!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} was requested but MPS is not available here; use 'cpu'")
    return dev
