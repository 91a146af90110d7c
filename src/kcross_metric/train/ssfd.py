"""Self-supervised training of the SSFD encoder (in-painting of zeroed 16x16 patches).

Recipe (Adamson et al. 2023, see ``docs/dfd-and-25d.md``): a U-Net (:class:`SSFDInpainter`) sees a
slice z-scored per image, with 25-50 % of its 16x16 patches set to zero, and is trained with MSE to
restore the whole (clean, z-scored) slice. Augmentation: left-right flip, intensity gain and
Gaussian noise (std drawn per image) before the z-score. Only TRAINING-split slices are used
(:func:`kcross_metric.train.data.build_slices` with ``"train"``), every contrast as its own image;
slices are downsampled (area average) to ``size`` pixels to fit the CPU budget.

Usage::

    kcross-train ssfd --config src/kcross_metric/train/configs/ssfd.yaml \
        --run runs/ssfd --export src/kcross_metric/weights/ssfd.safetensors --overwrite

The exported file holds the encoder levels 1..``tap_level`` only (what :meth:`DFD.ssfd` runs);
the decoder and level 5 stay in the run directory's ``model.safetensors``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..baselines._ssfd import SSFD_CHANNELS, SSFDEncoder, SSFDInpainter, zscore
from ..errors import ConfigError
from ..weights import save_safetensors
from .config import config_dict, load_config
from .runner import RunDir, run_epochs, seed_everything

__all__ = ["SSFDConfig", "export_encoder", "load_ssfd_config", "load_training_images", "patch_mask", "train_ssfd"]


@dataclass
class SSFDConfig:
    seed: int = 0
    source_size: int = 256  #: crop/pad size of build_slices
    size: int = 128  #: training resolution (area downsampling from source_size)
    slice_range: tuple[int, int] | None = (30, 130)
    min_brain_fraction: float = 0.05
    channels: tuple[int, ...] = SSFD_CHANNELS
    tap_level: int = 4
    patch: int = 16
    mask_fraction: tuple[float, float] = (0.25, 0.5)
    noise_std_max: float = 0.03  #: Gaussian noise std (units of the [0,1] image), uniform in [0, max]
    epochs: int = 10
    steps_per_epoch: int = 40
    batch_size: int = 16
    lr: float = 1e-3
    val_cases: tuple[str, ...] = ("BraTS-GLI-00001-000",)
    val_slices: int = 32
    threads: int = 2
    data_root: str | None = None


def load_ssfd_config(path: str | Path | None, **overrides: Any) -> SSFDConfig:
    """The SSFD training config at ``path`` (default: the shipped ``ssfd.yaml``) with ``overrides``."""
    cfg = load_config(SSFDConfig, path, **overrides)
    for key in ("channels", "mask_fraction", "val_cases"):
        val = getattr(cfg, key)
        if isinstance(val, list):
            setattr(cfg, key, tuple(val))
    lo, hi = cfg.mask_fraction
    if not 0.0 <= lo <= hi <= 1.0:
        raise ConfigError(f"mask_fraction must satisfy 0 <= lo <= hi <= 1, got {cfg.mask_fraction}")
    if cfg.size % cfg.patch or cfg.size % 2 ** (len(cfg.channels) - 1):
        raise ConfigError(f"size {cfg.size} must be divisible by patch {cfg.patch} and by 2**(levels-1)")
    if not 1 <= cfg.tap_level <= len(cfg.channels):
        raise ConfigError(f"tap_level must be in 1..{len(cfg.channels)}, got {cfg.tap_level}")
    return cfg


def load_training_images(cases: str | tuple[str, ...], cfg: SSFDConfig) -> torch.Tensor:
    """All contrasts of ``cases`` (a split name or case ids) as (N, 1, size, size) in [0, 1]."""
    from .data import build_slices

    sets = build_slices(cases, size=cfg.source_size, slice_range=cfg.slice_range,
                        min_brain_fraction=cfg.min_brain_fraction, root=cfg.data_root)
    images = torch.cat([t for s in sets.values() for t in s.images.values()])
    if cfg.size != cfg.source_size:
        images = F.interpolate(images, size=(cfg.size, cfg.size), mode="area")
    return images.clamp(0.0, 1.0)


def patch_mask(n: int, size: int, patch: int, fraction: tuple[float, float],
               generator: torch.Generator) -> torch.Tensor:
    """(n, 1, size, size) 0/1 mask, 1 on a random ``fraction`` (uniform in the range) of the
    non-overlapping ``patch`` x ``patch`` tiles of each image."""
    g = size // patch
    scores = torch.rand(n, g * g, generator=generator)
    frac = fraction[0] + (fraction[1] - fraction[0]) * torch.rand(n, 1, generator=generator)
    k = torch.round(frac * g * g)
    ranks = scores.argsort(dim=1).argsort(dim=1).float()
    tiles = (ranks < k).float().view(n, 1, g, g)
    return tiles.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)


def _corrupt(clean: torch.Tensor, cfg: SSFDConfig, generator: torch.Generator,
             noise: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target): target = z-scored clean slice, input = z-scored noisy slice with zeroed patches."""
    n = clean.shape[0]
    noisy = clean
    if noise and cfg.noise_std_max > 0:
        std = cfg.noise_std_max * torch.rand(n, 1, 1, 1, generator=generator)
        noisy = clean + std * torch.randn(clean.shape, generator=generator)
    mask = patch_mask(n, clean.shape[-1], cfg.patch, cfg.mask_fraction, generator)
    return zscore(noisy) * (1.0 - mask), zscore(clean)


def export_encoder(model: SSFDInpainter, cfg: SSFDConfig, out: str | Path, *,
                   metadata: dict[str, str] | None = None) -> str:
    """Save encoder levels 1..tap_level to ``out`` (safetensors); returns its SHA-256."""
    enc = SSFDEncoder(cfg.channels, depth=cfg.tap_level)
    full = model.encoder.state_dict()
    enc.load_state_dict({k: v for k, v in full.items() if k in enc.state_dict()}, strict=True)
    tensors = {k: v.detach().contiguous().cpu().float() for k, v in enc.state_dict().items()}
    meta = {"architecture": "SSFDEncoder", "channels": json.dumps(list(cfg.channels[: cfg.tap_level])),
            "tap_level": str(cfg.tap_level), "input": "1 channel, z-scored per image",
            "train_size": str(cfg.size)}
    meta.update(metadata or {})
    return save_safetensors(tensors, out, metadata=meta, overwrite=True)


def train_ssfd(cfg: SSFDConfig, run_path: str | Path, *, resume: bool = True,
               verbose: bool = True) -> tuple[SSFDInpainter, list[dict[str, Any]]]:
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    t0 = time.time()
    train_images = load_training_images("train", cfg)
    val_images = load_training_images(tuple(cfg.val_cases), cfg) if cfg.val_cases else None
    if val_images is not None and len(val_images) > cfg.val_slices:
        idx = torch.linspace(0, len(val_images) - 1, cfg.val_slices).round().long()
        val_images = val_images[idx]
    val_pair = None
    if val_images is not None:
        val_pair = _corrupt(val_images, cfg, torch.Generator().manual_seed(12345), noise=False)
    if verbose:
        print(json.dumps({"train_images": len(train_images), "val_images": 0 if val_images is None else len(val_images),
                          "data_seconds": round(time.time() - t0, 1)}), flush=True)

    model = SSFDInpainter(cfg.channels)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def train_epoch(generator: torch.Generator) -> dict[str, float]:
        total = 0.0
        for _ in range(cfg.steps_per_epoch):
            idx = torch.randint(len(train_images), (cfg.batch_size,), generator=generator)
            clean = train_images[idx]
            flip = torch.rand(cfg.batch_size, generator=generator) < 0.5
            clean = torch.where(flip[:, None, None, None], clean.flip(-1), clean)
            gain = 0.9 + 0.2 * torch.rand(cfg.batch_size, 1, 1, 1, generator=generator)
            clean = (clean * gain).clamp(0.0, 1.0)
            inp, target = _corrupt(clean, cfg, generator)
            loss = F.mse_loss(model(inp), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        return {"loss": total / cfg.steps_per_epoch}

    def validate() -> dict[str, float]:
        inp, target = val_pair  # type: ignore[misc]  # only passed to run_epochs when set
        return {"mse": float(F.mse_loss(model(inp), target))}

    def lr_at(epoch: int) -> float:  # cosine decay to 5 % over the run
        import math

        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * epoch / max(cfg.epochs, 1))))

    records = run_epochs(RunDir(run_path), model, optimizer, epochs=cfg.epochs, seed=cfg.seed,
                         config=config_dict(cfg), train_epoch=train_epoch,
                         validate=validate if val_pair is not None else None, resume=resume,
                         verbose=verbose, lr_at=lr_at)
    return model, records


if __name__ == "__main__":  # pragma: no cover - the old entry point, moved to the CLI
    import sys

    sys.exit(f"python -m {__spec__.name if __spec__ else __name__} was replaced by `kcross-train ssfd` (same options)")
