"""Training losses of K-CROSS (paper Sec. III-C), each a plain function on tensors.

* :func:`frequency_loss` - focal frequency loss (Jiang et al. 2021) on complex maps, Eq. 11-12;
* :func:`mmd_loss` - squared MMD, biased estimator, multi-bandwidth RBF kernel, Eq. 13;
* :func:`laplacian_pyramid_l1` - Laplacian pyramid L1 with level weights 2^(-2j), Eq. 14;
* :func:`tumor_loss` - Laplacian L1 + LPIPS on the lesion region, Eq. 14-16;
* :func:`structure_loss` - L1 reconstruction, Eq. 17;
* :func:`inconsistency_loss` - MSE between predicted and rated scores, Eq. 18;
* :func:`ranking_loss` - 2AFC (Bradley-Terry) loss on pairs with a known better side.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..errors import ConfigError

__all__ = [
    "complex_distance",
    "frequency_loss",
    "mmd_loss",
    "laplacian_pyramid",
    "laplacian_pyramid_l1",
    "tumor_loss",
    "structure_loss",
    "inconsistency_loss",
    "ranking_loss",
]


def complex_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| of complex tensors: sqrt(dRe^2 + dIm^2) (paper Eq. 11)."""
    d = a - b
    return torch.sqrt(d.real.square() + d.imag.square() + 1e-12)


def frequency_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Focal frequency loss on complex maps (B,C,H,W): mean of w * |pred - target|^2.

    The focal weight is ``|d|^alpha`` normalized by its maximum per sample and channel, with no
    gradient through the weight (Jiang et al. 2021); averaged over space and channels (Eq. 12).
    """
    dist = complex_distance(pred, target)
    with torch.no_grad():
        weight = dist.pow(alpha)
        weight = weight / weight.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return (weight * dist.square()).mean()


def _pairwise_sq_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x.square().sum(1)[:, None] + y.square().sum(1)[None, :] - 2.0 * x @ y.T).clamp_min(0.0)


def mmd_loss(
    source: torch.Tensor, target: torch.Tensor, n_kernels: int = 5, kernel_mul: float = 2.0
) -> torch.Tensor:
    """Squared MMD (biased) between feature sets (N,F) and (M,F).

    Kernel: sum of ``n_kernels`` RBF kernels whose bandwidths are ``kernel_mul`` apart, centred on the
    mean pairwise squared distance of the pooled samples (bandwidth without gradient).
    """
    if n_kernels < 1:
        raise ConfigError(f"mmd_loss needs n_kernels >= 1, got {n_kernels}")
    x, y = source.flatten(1), target.flatten(1)
    z = torch.cat([x, y])
    d2 = _pairwise_sq_dists(z, z)
    n = z.shape[0]
    with torch.no_grad():
        base = d2.sum() / max(n * n - n, 1)
        base = base.clamp_min(1e-12) / (kernel_mul ** (n_kernels // 2))
    # Added in order from the first term, like sum() did after its exact 0 + first term.
    terms = (torch.exp(-d2 / (base * kernel_mul**i)) for i in range(n_kernels))
    kernel = next(terms)
    for term in terms:
        kernel = kernel + term
    nx = x.shape[0]
    kxx, kyy, kxy = kernel[:nx, :nx], kernel[nx:, nx:], kernel[:nx, nx:]
    return kxx.mean() + kyy.mean() - 2.0 * kxy.mean()


def _binomial_kernel(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device, dtype=dtype) / 16.0
    return (k1[:, None] * k1[None, :])[None, None]


def laplacian_pyramid(x: torch.Tensor, levels: int = 5) -> list[torch.Tensor]:
    """Laplacian pyramid with the 5x5 binomial kernel (Burt & Adelson). (B,1,H,W) -> list of bands."""
    kernel = _binomial_kernel(x.device, x.dtype).expand(x.shape[1], 1, 5, 5)
    bands, current = [], x
    for _ in range(levels - 1):
        if min(current.shape[-2:]) < 2:
            break
        blurred = F.conv2d(F.pad(current, (2, 2, 2, 2), mode="replicate"), kernel, groups=x.shape[1])
        down = blurred[..., ::2, ::2]
        up = F.interpolate(down, size=current.shape[-2:], mode="bilinear", align_corners=False)
        bands.append(current - up)
        current = down
    bands.append(current)
    return bands


def laplacian_pyramid_l1(pred: torch.Tensor, target: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """sum_j 2^(-2j) * L1(Lap_j(pred), Lap_j(target))  (paper Eq. 14)."""
    pp, pt = laplacian_pyramid(pred, levels), laplacian_pyramid(target, levels)
    # laplacian_pyramid always returns at least one band; added in band order, as sum() did.
    terms = ((2.0 ** (-2 * j)) * F.l1_loss(a, b) for j, (a, b) in enumerate(zip(pp, pt)))
    total = next(terms)
    for term in terms:
        total = total + term
    return total


def tumor_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    perceptual_weight: float = 1.0,
) -> torch.Tensor:
    """Laplacian-pyramid L1 + LPIPS on the lesion region (paper Eq. 16).

    ``perceptual(x, y) -> (B,)`` is an LPIPS-like distance on [0, 1] images; ``None`` drops it.
    """
    p, t = pred * mask, target * mask
    loss = laplacian_pyramid_l1(p, t)
    if perceptual is not None and perceptual_weight > 0:
        loss = loss + perceptual_weight * perceptual(p.clamp(0, 1), t.clamp(0, 1)).mean()
    return loss


def structure_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 reconstruction (paper Eq. 17)."""
    return F.l1_loss(pred, target)


def inconsistency_loss(predicted: torch.Tensor, rated: torch.Tensor) -> torch.Tensor:
    """MSE between predicted scores and rating scores on the same scale (paper Eq. 18)."""
    return F.mse_loss(predicted, rated)


def ranking_loss(
    score_a: torch.Tensor,
    score_b: torch.Tensor,
    a_is_better: torch.Tensor,
    temperature: float = 0.05,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """2AFC Bradley-Terry loss: -log P(the better item gets the higher score).

    ``P(a better) = sigmoid((score_a - score_b) / temperature)``; ``a_is_better`` is 1/0 (or a soft
    probability, e.g. 0.5 for ties). ``weight`` (per pair, >= 0) gives the weighted mean
    ``sum(w * loss) / sum(w)``; without it every pair counts the same.
    """
    logits = (score_a - score_b) / temperature
    per_pair = F.binary_cross_entropy_with_logits(logits, a_is_better.to(logits.dtype), reduction="none")
    if weight is None:
        return per_pair.mean()
    weight = weight.to(per_pair.dtype)
    return (weight * per_pair).sum() / weight.sum().clamp_min(torch.finfo(per_pair.dtype).tiny)
