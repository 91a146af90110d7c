"""torchmetrics classes for K-CROSS and every registered baseline, and K-CROSS as a training loss.

For validation loops, on one or many processes (DDP). Each class wraps the package's
``nn.Module`` for that metric, built once in ``__init__``, and keeps **running sums** (sum of
per-sample values and their count, ``dist_reduce_fx="sum"``) so memory and all-reduce cost stay
constant however many batches are seen:

    >>> from kcross_metric.integrations.metrics import KCrossMetric, SSIMMetric
    >>> val_kcross = KCrossMetric(weights="kcross.safetensors", data_range=1.0)  # doctest: +SKIP
    >>> for fake, real, source in loader:                                        # doctest: +SKIP
    ...     val_kcross.update(fake, real, source)
    >>> val_kcross.compute()  # mean per-sample K-CROSS over everything seen (all ranks)  # doctest: +SKIP

``compute()`` is the mean of the per-sample values, each sample (a (1,H,W) slice or a (1,D,H,W)
volume) counting once, whatever the batch sizes; for PSNR that is the mean of per-image PSNR. The
sums are float64, so the result does not depend on how samples are split over ranks and batches
beyond float64 rounding. ``keep_per_sample=True`` also keeps every value (a list state,
concatenated across ranks in rank order) for :meth:`RegistryMetric.per_sample`.

:func:`kcross_loss` returns ``1 - K-CROSS`` averaged over the batch as a loss for training a
generator: differentiable with respect to ``fake``, with the metric's networks frozen.

This module needs ``torchmetrics>=1.0`` (``pip install "kcross-metric[metrics]"``);
``import kcross_metric`` never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from torch import nn

from .._util.checks import check_reduction, intensity_range, reduce
from ..errors import ConfigError, ShapeError
from ..registry import MetricInfo, create_metric, list_metrics, metric_info

try:
    from torchmetrics import Metric
    from torchmetrics.utilities import dim_zero_cat
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "kcross_metric.integrations.metrics needs torchmetrics>=1.0, which is not installed: "
        'pip install "kcross-metric[metrics]" (or pip install "torchmetrics>=1.0")'
    ) from _exc

if TYPE_CHECKING:
    from ..core.metric import KCross

__all__ = [
    "RegistryMetric",
    "metric_class",
    "KCrossMetric",
    "MAEMetric",
    "PSNRMetric",
    "SSIMMetric",
    "MSSSIMMetric",
    "NLPDMetric",
    "GMSDMetric",
    "LPIPSAlexMetric",
    "LPIPSVGGMetric",
    "DISTSMetric",
    "KCrossLoss",
    "kcross_loss",
]

#: Keyword arguments consumed by ``torchmetrics.Metric`` itself (the rest go to the wrapped metric).
_TORCHMETRICS_KWARGS = (
    "compute_on_cpu",
    "dist_sync_on_step",
    "process_group",
    "dist_sync_fn",
    "distributed_available_fn",
    "sync_on_compute",
    "compute_with_cache",
)


def _bound(value: float) -> float | None:
    return value if abs(value) != float("inf") else None


class RegistryMetric(Metric):
    """Running mean of a registered metric's per-sample values, as a torchmetrics ``Metric``.

    ``RegistryMetric("ssim", data_range=1.0)`` returns an :class:`SSIMMetric`; every name of
    :func:`kcross_metric.list_metrics` works (metrics registered later get a class made on first
    use). ``higher_is_better``, ``is_differentiable`` and the plot bounds come from the registry.

    Args:
        name: registry name (``"kcross"``, ``"ssim"``, ``"lpips_vgg"``...); the named subclasses
            fill it in.
        keep_per_sample: also keep every per-sample value (list state, ``dist_reduce_fx="cat"``),
            returned by :meth:`per_sample`. Memory then grows with the number of samples.
        module: an already built per-sample metric module to wrap instead of building one
            (e.g. ``KCross.untrained(seed=0)``); its ``reduction`` must be ``"none"`` (K-CROSS's
            reduction is bypassed). Not combined with ``metric_kwargs``.
        state_dtype: dtype of the running sums (float64 by default: sums do not depend on the
            order samples arrive in, to float64 rounding; use float32 on devices without float64).
        channels_last: convert the wrapped networks' weights and 4-D inputs to
            ``torch.channels_last``. Measured on a 2-core AMD EPYC (Zen 4) CPU, 4 slices of
            256x256, one thread: K-CROSS 1.17x, LPIPS-VGG 1.26x, DISTS 1.27x, LPIPS-Alex 1.17x
            faster; values differ from the default layout by float32 rounding only (K-CROSS
            < 1e-6, tested). No gain for single slices (docs/benchmarks.md). A ``module=`` passed
            in is converted in place.
        **kwargs: torchmetrics options (``dist_sync_on_step``, ``process_group``,
            ``sync_on_compute``, ``compute_with_cache``, ``compute_on_cpu``, ...); everything else
            goes to the metric's constructor (``data_range``, ``weights``, ``win_size``...).
            ``reduction`` is refused: the wrapper needs per-sample values.

    States: ``value_sum`` (scalar, ``state_dtype``), ``count`` (int64 scalar), both summed across
    processes; ``values`` (list of (B,) tensors) if ``keep_per_sample``.

    ``update(fake, real, source=None, mask=None)``: ``fake``/``real`` (B,1,H,W) or (B,1,D,H,W) in
    ``[0, data_range]``, or in ``[low, high]`` for ``data_range=(low, high)`` such as ``(-1, 1)``
    (mapped once to [0, 1] by the wrapped metric: values equal those of the rescaled images); see
    the wrapped metric for the layouts it takes (K-CROSS also takes 3 identical channels).
    ``source`` and ``mask`` only for metrics that use them (K-CROSS). ``compute()``: scalar mean
    (``state_dtype``), NaN before any update. Move the metric to the model's device with
    ``.to(device)`` (the wrapped networks and the states move together).
    """

    metric_name: ClassVar[str] = ""
    full_state_update: bool | None = False
    is_differentiable: bool | None = None
    higher_is_better: bool | None = None

    value_sum: torch.Tensor
    count: torch.Tensor
    # a list state (keep_per_sample=True); torchmetrics concatenates it into a tensor only while synced
    values: list[torch.Tensor]

    def __new__(cls, *args: Any, **kwargs: Any) -> RegistryMetric:
        if cls is RegistryMetric:
            name = args[0] if args else kwargs.get("name")
            if not isinstance(name, str):
                raise ConfigError(
                    f"RegistryMetric needs a metric name (one of {', '.join(list_metrics())}), got {name!r}"
                )
            return super().__new__(metric_class(name))
        return super().__new__(cls)

    def __init__(
        self,
        name: str | None = None,
        *,
        keep_per_sample: bool = False,
        module: nn.Module | None = None,
        state_dtype: torch.dtype = torch.float64,
        channels_last: bool = False,
        **kwargs: Any,
    ) -> None:
        own = type(self).metric_name
        if name is not None and own and name.lower() != own:
            raise ConfigError(
                f"{type(self).__name__} wraps {own!r}, got the name {name!r} "
                "(metric options are keyword arguments, e.g. weights=...)"
            )
        self.info: MetricInfo = metric_info(own or (name or ""))
        tm_kwargs = {k: kwargs.pop(k) for k in _TORCHMETRICS_KWARGS if k in kwargs}
        super().__init__(**tm_kwargs)
        if "reduction" in kwargs:
            raise ConfigError(
                f"{type(self).__name__} accumulates per-sample values; do not pass reduction= "
                f"(got {kwargs['reduction']!r})"
            )
        if not isinstance(state_dtype, torch.dtype) or not state_dtype.is_floating_point:
            raise ConfigError(f"state_dtype must be a floating-point torch.dtype, got {state_dtype!r}")
        if module is None:
            module = create_metric(self.info.name, reduction="none", **kwargs)
        else:
            if kwargs:
                raise ConfigError(
                    f"pass either module= or the metric's options, not both (got {', '.join(sorted(kwargs))})"
                )
            if not isinstance(module, nn.Module):
                raise ConfigError(f"module must be an nn.Module, got {type(module).__name__}")
            if self.info.name == "kcross" and not callable(getattr(module, "score", None)):
                raise ConfigError(f"module must be a KCross (with .score()), got {type(module).__name__}")
            if self.info.name != "kcross" and getattr(module, "reduction", "none") != "none":
                raise ConfigError(
                    f"module must return per-sample values: build it with reduction='none', "
                    f"got reduction={module.reduction!r}"
                )
        self.channels_last = bool(channels_last)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        self.module = module
        self.keep_per_sample = bool(keep_per_sample)
        self.add_state("value_sum", default=torch.zeros((), dtype=state_dtype), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        if self.keep_per_sample:
            self.add_state("values", default=[], dist_reduce_fx="cat")

    # ------------------------------------------------------------------ per-sample values
    def _per_sample(
        self, fake: torch.Tensor, real: torch.Tensor, source: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        if not (self.info.uses_source or source is None) or (mask is not None and self.info.name != "kcross"):
            given = "source=" if source is not None else "mask="
            raise ConfigError(f"metric {self.info.name!r} does not take {given}; pass fake and real only")
        if self.channels_last and fake.dim() == 4:
            cl = torch.channels_last
            fake, real = fake.contiguous(memory_format=cl), real.contiguous(memory_format=cl)
            source = source.contiguous(memory_format=cl) if source is not None else None
        if self.info.name == "kcross":
            # the kcross module is a KCross: built by create_metric, or a module= that __init__ checked for .score()
            return cast("KCross", self.module).score(fake, real, source, mask).score
        return self.module(fake, real) if source is None else self.module(fake, real, source)

    def update(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        source: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> None:
        """Score one batch and add its per-sample values to the running sums."""
        values = self._per_sample(fake, real, source, mask)
        if not isinstance(values, torch.Tensor) or values.dim() != 1 or values.shape[0] != fake.shape[0]:
            raise ShapeError(
                f"{self.info.name} must return per-sample values of shape ({fake.shape[0]},), got "
                f"{tuple(getattr(values, 'shape', ()))}"
            )
        self.value_sum = self.value_sum + values.to(self.value_sum.dtype).sum()
        self.count = self.count + values.shape[0]
        if self.keep_per_sample:
            # The float dtype of the metric (what torchmetrics uses for a rank with no values), no graph.
            self.values.append(values.detach().to(self.dtype))

    def compute(self) -> torch.Tensor:
        """Mean per-sample value over everything seen since the last ``reset()`` (all ranks)."""
        return self.value_sum / self.count

    def per_sample(self) -> torch.Tensor:
        """Every per-sample value seen (all ranks, rank by rank, each in update order), shape (N,)."""
        if not self.keep_per_sample:
            raise ConfigError(f"{type(self).__name__} was built without keep_per_sample=True")
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self.sync_on_compute):
            values: list[torch.Tensor] | torch.Tensor = self.values
            if isinstance(values, list):
                values = dim_zero_cat(values) if values else torch.zeros(0, dtype=self.dtype, device=self.device)
            return values.clone()

    def extra_repr(self) -> str:
        return f"metric={self.info.name!r}, keep_per_sample={self.keep_per_sample}, channels_last={self.channels_last}"


_CLASSES: dict[str, type[RegistryMetric]] = {}


def _subclass(name: str, class_name: str, doc: str) -> type[RegistryMetric]:
    info = metric_info(name)
    attrs = {
        "__doc__": doc,
        "__module__": __name__,
        "__qualname__": class_name,
        "metric_name": info.name,
        "higher_is_better": info.higher_is_better,
        "is_differentiable": info.differentiable,
        "plot_lower_bound": _bound(info.score_range[0]),
        "plot_upper_bound": _bound(info.score_range[1]),
        "plot_legend_name": info.name,
    }
    cls = type(class_name, (RegistryMetric,), attrs)
    _CLASSES[info.name] = cls
    return cls


def metric_class(name: str) -> type[RegistryMetric]:
    """The :class:`RegistryMetric` subclass of a registered metric (made on first use if needed)."""
    info = metric_info(name)  # ConfigError for unknown names
    if info.name not in _CLASSES:
        class_name = "".join(part.capitalize() for part in info.name.split("_")) + "Metric"
        _subclass(info.name, class_name, f"Running mean of ``{info.name}`` ({info.description}).")
    return _CLASSES[info.name]


def _doc(name: str, extra: str = "") -> str:
    info = metric_info(name)
    better = "higher" if info.higher_is_better else "lower"
    return (
        f"torchmetrics running mean of {info.description} ({better} is better), "
        f"see :class:`RegistryMetric` and ``{info.target}``.{extra}"
    )


KCrossMetric = _subclass(
    "kcross",
    "KCrossMetric",
    _doc(
        "kcross",
        "\n\n``KCrossMetric(weights=None, data_range=1.0, ...)`` (``data_range=(-1, 1)`` for [-1, 1]"
        " images) takes :class:`~kcross_metric.KCross`'s"
        " options as keywords (or ``module=KCross.untrained(seed=0)``); ``update(fake, real,"
        " source=None, mask=None)`` with slices (B,1,H,W) or volumes (B,1,D,H,W).",
    ),
)
MAEMetric = _subclass("mae", "MAEMetric", _doc("mae"))
PSNRMetric = _subclass("psnr", "PSNRMetric", _doc("psnr", " The mean of per-image PSNR."))
SSIMMetric = _subclass("ssim", "SSIMMetric", _doc("ssim"))
MSSSIMMetric = _subclass("ms_ssim", "MSSSIMMetric", _doc("ms_ssim"))
NLPDMetric = _subclass("nlpd", "NLPDMetric", _doc("nlpd"))
GMSDMetric = _subclass("gmsd", "GMSDMetric", _doc("gmsd"))
LPIPSAlexMetric = _subclass("lpips_alex", "LPIPSAlexMetric", _doc("lpips_alex"))
LPIPSVGGMetric = _subclass("lpips_vgg", "LPIPSVGGMetric", _doc("lpips_vgg"))
DISTSMetric = _subclass("dists", "DISTSMetric", _doc("dists"))


# ---------------------------------------------------------------------------------- as a loss
class KCrossLoss(nn.Module):
    """``1 - K-CROSS`` as a training loss for a generator (Xie et al., K-CROSS, used as an objective).

    Differentiable with respect to ``fake``; the metric's networks are frozen (``requires_grad``
    False, eval mode) and are not among the parameters an optimizer should get.

    Args:
        metric: a :class:`~kcross_metric.KCross` (its ``reduction`` is ignored; per-sample
            scores are taken from :meth:`KCross.score`). ``None`` builds ``KCross(**kwargs)``, with
            no reference cache unless ``reference_cache_mb`` is given.
        reduction: ``"mean"`` (default) | ``"sum"`` | ``"none"`` over the batch.
        clamp: clip ``fake`` into the metric's ``data_range`` (``[0, R]`` or ``[low, high]``) first
            (gradient zero where clipped) instead of raising
            :class:`~kcross_metric.errors.RangeError` for out-of-range generator output.
        **kwargs: :class:`KCross` options when ``metric`` is None.

    ``forward(fake, real, source=None, mask=None)``: tensors as for K-CROSS, (B,1,H,W) or
    (B,1,D,H,W) in ``[0, data_range]``, or in ``[low, high]`` for ``data_range=(low, high)``
    (``kcross_loss(KCross(data_range=(-1, 1)))`` takes a tanh generator's output as it is) -> loss
    in [0, 1] (scalar, or (B,) for ``"none"``). Loss and gradients are those of computing the loss on
    ``(fake - low) / (high - low)`` yourself (with ``data_range=1``).
    """

    def __init__(
        self, metric: nn.Module | None = None, *, reduction: str = "mean", clamp: bool = False, **kwargs: Any
    ) -> None:
        super().__init__()
        from ..core.metric import KCross

        if metric is None:
            # a generator's batches bring new references: a reference cache would fill and never be hit
            kwargs.setdefault("reference_cache_mb", 0)
            metric = KCross(**kwargs)
        elif kwargs:
            raise ConfigError(f"pass either metric= or KCross options, not both (got {', '.join(sorted(kwargs))})")
        if not isinstance(metric, KCross):
            raise ConfigError(f"metric must be a KCross, got {type(metric).__name__}")
        self.metric = metric
        self.metric.requires_grad_(False)
        self.metric.eval()
        self.reduction = check_reduction(reduction)
        self.clamp = bool(clamp)

    def forward(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        source: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.clamp:
            fake = intensity_range(self.metric.data_range).clamp(fake)
        scores = self.metric.score(fake, real, source, mask).score
        return reduce(1.0 - scores, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, clamp={self.clamp}"


def kcross_loss(metric: nn.Module | None = None, **kwargs: Any) -> KCrossLoss:
    """``KCrossLoss(metric, **kwargs)``: ``1 - K-CROSS`` averaged over the batch (see :class:`KCrossLoss`)."""
    return KCrossLoss(metric, **kwargs)
