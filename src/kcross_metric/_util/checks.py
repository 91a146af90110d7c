"""Input validation shared by every metric (the "check inputs" step of each functional core).

Intensity ranges: every metric takes ``data_range=R`` (images in ``[0, R]``, the historical form) or
``data_range=(low, high)`` (e.g. ``(-1, 1)`` for GAN generators with a tanh output, as in
torchmetrics). :func:`intensity_range` parses either into an :class:`IntensityRange`, and
:meth:`IntensityRange.to_internal` maps images ONCE, at a metric's entry, to the package's internal
convention; every metric then computes as before. A range that starts at 0 is used as it is
(``(0, R)`` is exactly ``R``, scores bitwise unchanged); any other range is mapped affinely to
``[0, 1]``, so ``(-1, 1)`` inputs score exactly as the same images rescaled by ``(x + 1) / 2`` with
``data_range=1``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import SupportsFloat, SupportsIndex, TypeVar

import torch

from ..errors import (
    ChannelError,
    ConfigError,
    DeviceMismatchError,
    DTypeError,
    NonFiniteError,
    RangeError,
    ShapeError,
)

#: Values may exceed ``[low, high]`` by this fraction of ``high - low`` (interpolation overshoot).
RANGE_TOLERANCE = 1e-3

_REDUCTIONS = ("none", "mean", "sum")

#: What ``data_range=`` accepts: a number R for ``[0, R]`` or a pair ``(low, high)``.
DataRange = float | tuple[float, float]

_T = TypeVar("_T")


@dataclass(frozen=True)
class IntensityRange:
    """The validated intensity range ``[low, high]`` of a metric's inputs.

    Built by :func:`intensity_range`; ``IntensityRange(0, 1) == intensity_range(1.0)``.
    """

    low: float
    high: float

    @property
    def span(self) -> float:
        """``high - low``."""
        return self.high - self.low

    @property
    def compute_range(self) -> float:
        """The ``data_range`` metrics compute with after :meth:`to_internal`: ``high`` for a range
        starting at 0 (inputs used as they are), else 1 (inputs mapped to ``[0, 1]``)."""
        return self.high if self.low == 0.0 else 1.0

    def to_internal(self, x: _T) -> _T:
        """Map images in ``[low, high]`` to ``[0, compute_range]`` (identity when ``low == 0``).

        Differentiable; works on tensors and numpy arrays; keeps the dtype of a tensor.
        """
        if self.low == 0.0:
            return x
        return (x - self.low) / self.span  # type: ignore[operator,return-value]

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` clipped to ``[low, high]`` (zero gradient where clipped)."""
        return x.clamp(self.low, self.high)

    def __str__(self) -> str:
        return f"[{self.low:g}, {self.high:g}]"


def check_data_range(data_range: object) -> DataRange:
    """Validate ``data_range``: a float for a number (``[0, data_range]``), a ``(low, high)`` tuple of
    floats for a pair. Raises :class:`RangeError` for non-positive or non-finite numbers, pairs of the
    wrong length, non-finite bounds or ``low >= high``."""
    if isinstance(data_range, IntensityRange):
        return (data_range.low, data_range.high)
    pair = _as_pair(data_range)
    if pair is None:
        try:
            value = _to_float(data_range)
        except (TypeError, ValueError) as exc:
            raise RangeError(
                f"data_range must be a positive number R (images in [0, R]) or a pair (low, high), "
                f"got {data_range!r}"
            ) from exc
        if not (value > 0.0 and value < math.inf):
            raise RangeError(f"data_range must be a positive finite number, got {data_range!r}")
        return value
    if len(pair) != 2:
        raise RangeError(
            f"data_range as a range must have exactly two values (low, high), got {len(pair)}: {data_range!r}"
        )
    try:
        low, high = _to_float(pair[0]), _to_float(pair[1])
    except (TypeError, ValueError) as exc:
        raise RangeError(f"data_range bounds must be numbers, got {data_range!r}") from exc
    if not (math.isfinite(low) and math.isfinite(high)):
        raise RangeError(f"data_range bounds must be finite numbers, got {data_range!r}")
    if not low < high:
        raise RangeError(f"data_range must be (low, high) with low < high, got {data_range!r}")
    return (low, high)


def _to_float(value: object) -> float:
    """``float(value)`` for anything ``float()`` takes; ``TypeError`` (as ``float()`` raises) otherwise."""
    if not isinstance(value, (float, int, str, bytes, bytearray, memoryview, SupportsFloat, SupportsIndex)):
        raise TypeError(f"float() argument must be a string or a real number, not {type(value).__name__!r}")
    return float(value)


def _as_pair(value: object) -> list[object] | None:
    """The items of a tuple, list or 1-D tensor/array; None for anything else (a number)."""
    if isinstance(value, (tuple, list)):
        return list(value)
    ndim = getattr(value, "ndim", None)
    if isinstance(ndim, int) and ndim >= 1 and hasattr(value, "tolist"):
        return list(value.reshape(-1).tolist()) if ndim > 1 else list(value.tolist())  # type: ignore[attr-defined]
    return None


def intensity_range(data_range: object) -> IntensityRange:
    """Parse ``data_range`` (a number R, a pair ``(low, high)`` or an :class:`IntensityRange`)."""
    if isinstance(data_range, IntensityRange):
        return data_range
    value = check_data_range(data_range)
    return IntensityRange(*value) if isinstance(value, tuple) else IntensityRange(0.0, value)


def format_data_range(data_range: object) -> str:
    """``data_range`` as written in reprs and reports: ``1`` or ``(-1, 1)``."""
    value = check_data_range(data_range)
    return f"({value[0]:g}, {value[1]:g})" if isinstance(value, tuple) else f"{value:g}"


# Common intensity scales, tried in order when a RangeError suggests a data_range: (low, high,
# how to pass it, smallest max(|low|, |high|) extent that makes the guess plausible).
_COMMON_RANGES: tuple[tuple[float, float, str, float], ...] = (
    (0.0, 1.0, "data_range=1.0", 0.0),
    (-1.0, 1.0, "data_range=(-1, 1)", 0.5),
    (0.0, 255.0, "data_range=255.0", 64.0),
    (0.0, 4095.0, "data_range=4095.0", 1024.0),
    (0.0, 65535.0, "data_range=65535.0", 16384.0),
)


def _range_hint(lo: float, hi: float, expected: IntensityRange, name: str = "x") -> str:
    """What to pass (or do) for values seen in ``[lo, hi]`` that fall outside ``expected``."""
    for low, high, arg, extent in _COMMON_RANGES:
        tol = RANGE_TOLERANCE * (high - low)
        if lo >= low - tol and hi <= high + tol and max(abs(lo), abs(hi)) >= extent:
            if low < 0.0 and lo > -extent:
                continue  # a small negative undershoot of [0, x] is not a signed image
            return f"values look like [{low:g}, {high:g}]: pass {arg}"
    span = expected.span
    if lo >= expected.low - 0.1 * span and hi <= expected.high + 0.1 * span:
        return (
            f"values slightly overshoot {expected} (e.g. a generator without a bounded output layer): "
            f"clamp them, {name}.clamp({expected.low:g}, {expected.high:g}), or pass the data_range= your "
            f"images really take"
        )
    return (
        "pass data_range= (kcross-eval: --data-range) matching your intensity scale: a number R for [0, R] "
        "or a pair (low, high), the fixed range your images can take (not this batch's min and max), or "
        "rescale the input"
    )


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
    data_range: object = None,
    allow_nonfinite: bool = False,
    gray_rgb: bool = False,
) -> torch.Tensor:
    """Validate one image tensor: type, dtype, dimensions, channels, finiteness, intensity range.

    Args:
        data_range: a number R (values in ``[0, R]``), a pair ``(low, high)`` or an
            :class:`IntensityRange`; None skips the range check. Values are checked in the caller's
            units, before any mapping.
        gray_rgb: with ``channels=1``, accept 3 identical channels (grayscale saved as RGB) and
            return the first one, ``x[:, :1]`` (a view: scores are those of the 1-channel image);
            3 channels that differ raise a :class:`ChannelError` that says how to reduce them.

    Returns:
        ``x``, or its single channel when ``gray_rgb`` reduced it.
    """
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
    if gray_rgb and channels == 1 and x.shape[1] == 3 and x.device.type != "meta":
        x = single_channel(x, name, allow_nonfinite=allow_nonfinite)
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
        rng = intensity_range(data_range)
        tol = RANGE_TOLERANCE * rng.span
        lo, hi = float(x.detach().min()), float(x.detach().max())
        if lo < rng.low - tol or hi > rng.high + tol:
            raise RangeError(
                f"{name} has values in [{lo:.4g}, {hi:.4g}], expected {rng}; {_range_hint(lo, hi, rng, name)}"
            )
    return x


def single_channel(x: torch.Tensor, name: str, *, allow_nonfinite: bool = False) -> torch.Tensor:
    """(B, 3, ...) whose three channels are identical (grayscale saved as RGB) -> ``x[:, :1]``.

    Channels that differ raise :class:`ChannelError` saying how to reduce them (NaN/Inf values raise
    :class:`NonFiniteError` first: they never compare equal). Other channel counts pass unchanged.
    """
    if x.shape[1] != 3:
        return x
    first = x[:, :1]
    if bool((x[:, 1:] == first).all()):
        return first
    if not allow_nonfinite and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise NonFiniteError(f"{name} contains NaN or Inf values")
    raise ChannelError(
        f"{name} must have 1 channel(s) in dim 1, got 3 that differ (shape {tuple(x.shape)}); 3 identical "
        f"channels (grayscale saved as RGB) are accepted, otherwise reduce them to one first: "
        f"{name}.mean(dim=1, keepdim=True) for a grayscale image whose channels drifted apart, "
        f"kcross_metric.baselines.rgb_to_gray({name}) for the luminance of a colour image, or "
        f"{name}[:, :1] to score one channel"
    )


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


def prepare_image_pair(
    x: object,
    y: object,
    *,
    data_range: object,
    ndims: Iterable[int] = (4, 5),
    channels: int | None = None,
    gray_rgb: bool = False,
    names: tuple[str, str] = ("x", "y"),
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Full check of a (test, reference) pair, then the one mapping to the internal convention.

    Values are checked against ``data_range`` (a number R for ``[0, R]`` or ``(low, high)``) in the
    caller's units; the pair is then mapped with :meth:`IntensityRange.to_internal`.

    Returns:
        ``(x, y, compute_range)``: the mapped pair (unchanged for a range starting at 0) and the
        ``data_range`` to compute with (R, or 1 for a mapped range).
    """
    rng = intensity_range(data_range)
    ndims = tuple(ndims)
    xt = check_tensor(x, names[0], ndims=ndims, channels=channels, data_range=rng, gray_rgb=gray_rgb)
    yt = check_tensor(y, names[1], ndims=ndims, channels=channels, data_range=rng, gray_rgb=gray_rgb)
    check_pair(xt, yt, names)
    return rng.to_internal(xt), rng.to_internal(yt), rng.compute_range


def check_device(device: str | torch.device | int) -> torch.device:
    """Parse a device name (``"cpu"``, ``"cuda:0"``, ...) and refuse one that cannot compute here.

    Raises :class:`ConfigError` for an unknown name, a CUDA/MPS device on a machine without it, a
    CUDA index beyond the available GPUs, or ``"meta"`` (tensors without data).
    """
    try:
        dev = torch.device(device)
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
