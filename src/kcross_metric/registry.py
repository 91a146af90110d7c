"""Metric registry: ``create_metric(name, **kwargs)`` and ``list_metrics()`` with metadata.

Entries name their class by import path, so listing metrics imports nothing heavy. Every registered
class is an ``nn.Module`` whose ``forward(x, y)`` (``forward(fake, real, source=None)`` for K-CROSS)
returns per-sample values of shape (B,) unless a reduction is asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = ["MetricInfo", "register_metric", "list_metrics", "metric_info", "create_metric"]


@dataclass(frozen=True)
class MetricInfo:
    """What a user needs to know to use a metric correctly."""

    name: str
    target: str  #: "package.module:ClassName"
    higher_is_better: bool
    differentiable: bool
    supports_3d: bool
    score_range: tuple[float, float]
    full_reference: bool = True
    uses_source: bool = False
    description: str = ""


_REGISTRY: dict[str, MetricInfo] = {}


def register_metric(info: MetricInfo) -> MetricInfo:
    key = info.name.lower()
    if key in _REGISTRY and _REGISTRY[key] != info:
        raise ConfigError(f"a different metric is already registered as {info.name!r}")
    _REGISTRY[key] = info
    return info


def list_metrics() -> list[str]:
    """Names of all registered metrics, sorted."""
    return sorted(_REGISTRY)


def metric_info(name: str) -> MetricInfo:
    key = name.lower()
    if key not in _REGISTRY:
        raise ConfigError(f"unknown metric {name!r}; available: {', '.join(list_metrics())}")
    return _REGISTRY[key]


def create_metric(name: str, **kwargs: Any) -> Any:
    """Build the ``nn.Module`` of a registered metric, e.g. ``create_metric("ssim", data_range=1.0)``.

    Every registered metric takes ``data_range`` as a number R (inputs in ``[0, R]``) or a pair
    ``(low, high)``, e.g. ``create_metric("ssim", data_range=(-1, 1))`` for [-1, 1] GAN tensors.
    """
    info = metric_info(name)
    module_name, _, class_name = info.target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**kwargs)


_INF = float("inf")

for _info in (
    MetricInfo("kcross", "kcross_metric.core.metric:KCross", True, True, True, (0.0, 1.0), uses_source=True,
               description="K-CROSS: k-space, lesion and structure aware cross-modality score"),
    MetricInfo("mae", "kcross_metric.baselines.mae:MAE", False, True, True, (0.0, _INF),
               description="mean absolute error"),
    MetricInfo("psnr", "kcross_metric.baselines.psnr:PSNR", True, True, True, (0.0, _INF),
               description="peak signal-to-noise ratio in dB"),
    MetricInfo("ssim", "kcross_metric.baselines.ssim:SSIM", True, True, True, (-1.0, 1.0),
               description="structural similarity (Wang et al. 2004), Gaussian window"),
    MetricInfo("ms_ssim", "kcross_metric.baselines.ms_ssim:MSSSIM", True, True, True, (0.0, 1.0),
               description="multi-scale SSIM (Wang et al. 2003)"),
    MetricInfo("nlpd", "kcross_metric.baselines.nlpd:NLPD", False, True, False, (0.0, _INF),
               description="normalized Laplacian pyramid distance (Laparra et al. 2016)"),
    MetricInfo("gmsd", "kcross_metric.baselines.gmsd:GMSD", False, True, False, (0.0, _INF),
               description="gradient magnitude similarity deviation (Xue et al. 2014)"),
    MetricInfo("lpips_alex", "kcross_metric.baselines.lpips:LPIPSAlex", False, True, False, (0.0, _INF),
               description="LPIPS v0.1 on ImageNet AlexNet features"),
    MetricInfo("lpips_vgg", "kcross_metric.baselines.lpips:LPIPSVGG", False, True, False, (0.0, _INF),
               description="LPIPS v0.1 on ImageNet VGG16 features"),
    MetricInfo("dists", "kcross_metric.baselines.dists:DISTS", False, True, False, (0.0, 1.0),
               description="deep image structure and texture similarity (Ding et al. 2022)"),
):
    register_metric(_info)

# Deep feature distances (kcross_metric.baselines.dfd): plain VGG16 feature MSE, its random-weight control and
# the in-domain self-supervised SSFD encoder (bundled ssfd.safetensors).
for _info in (
    MetricInfo("dfd_vgg16", "kcross_metric.baselines.dfd:DFDVGG16", False, True, False, (0.0, _INF),
               description="deep feature distance: ImageNet VGG16 relu1_2..relu5_3 feature MSE"),
    MetricInfo("dfd_random", "kcross_metric.baselines.dfd:DFDRandom", False, True, False, (0.0, _INF),
               description="deep feature distance control: VGG16 architecture with seeded random weights"),
    MetricInfo("dfd_ssfd", "kcross_metric.baselines.dfd:DFDSSFD", False, True, False, (0.0, _INF),
               description="deep feature distance: in-domain self-supervised MR U-Net encoder (SSFD), level 4"),
):
    register_metric(_info)
