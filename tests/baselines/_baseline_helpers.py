"""Shared fixtures-by-function for the baseline tests: real reference data and generic checks."""

from __future__ import annotations

import csv
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import need_shared

CALIB_NAMES = ("I03.bmp", "I04.bmp", "I06.bmp", "I08.bmp", "I19.bmp")


@cache
def _official(path: Path) -> dict[str, tuple[float, ...]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    assert tuple(header[1:]) == CALIB_NAMES, header  # the test data's layout, not user input
    return {r[0]: tuple(float(v) for v in r[1:]) for r in rows[1:]}


def official(method: str) -> np.ndarray:
    """Official values of ``method`` for the 5 TID2013 pairs (results_official.csv)."""
    path = need_shared("data", "iqa-calibration", "results_official.csv")
    return np.array(_official(path)[method])


@cache
def _load_pairs(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    image = pytest.importorskip("PIL.Image")
    dist, ref = [], []
    for name in CALIB_NAMES:
        for folder, out in (("dist_dir", dist), ("ref_dir", ref)):
            arr = np.asarray(image.open(root / folder / name).convert("RGB"), dtype=np.float64)
            out.append(torch.from_numpy(arr).permute(2, 0, 1).contiguous())
    return torch.stack(dist), torch.stack(ref)


def calibration_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """(distorted, reference) RGB batches (5, 3, 384, 512), float64 in [0, 255]."""
    return _load_pairs(need_shared("data", "iqa-calibration"))


def mr_slice() -> torch.Tensor:
    """Real T1 coronal slice (256, 256), float64 in [0, 1]."""
    arr = np.load(need_shared("data", "t1_coronal_slice.npy"), allow_pickle=False)
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))


def degraded(img: torch.Tensor, seed: int = 0, noise: float = 0.05) -> torch.Tensor:
    """A plausible synthesis error: blur + noise + intensity bias, clipped to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = img[None, None] if img.dim() == 2 else img[None, None] if img.dim() == 3 else img
    nd = x.dim() - 2
    pool = torch.nn.functional.avg_pool2d if nd == 2 else torch.nn.functional.avg_pool3d
    blurred = pool(x, 3, stride=1, padding=1, count_include_pad=False)
    out = 0.9 * blurred + 0.03 + noise * torch.randn(x.shape, generator=g, dtype=x.dtype)
    return out.clamp(0, 1).reshape(img.shape)


@cache
def _brats_crop(path: Path) -> torch.Tensor:
    nib = pytest.importorskip("nibabel")
    vol = np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)
    vol = np.clip(vol, 0, None) / float(vol.max())
    crop = vol[80:160, 70:170, 50:110]  # 80 x 100 x 60 through the tumour region
    return torch.from_numpy(np.ascontiguousarray(crop))


def brats_crop() -> torch.Tensor:
    """Crop (80, 100, 60) of BraTS-GLI-00000-000 T1n, float64 in [0, 1] (scaled by the volume max)."""
    folder = need_shared("data", "brats", "BraTS-GLI-00000-000")
    return _brats_crop(folder / "BraTS-GLI-00000-000-t1n.nii.gz")


def assert_batch_independent(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                             x: torch.Tensor, y: torch.Tensor, atol: float = 1e-6) -> None:
    """A sample's value must not depend on the other samples of its batch."""
    batched = fn(x, y)
    assert batched.shape == (x.shape[0],)
    singles = torch.cat([fn(x[i : i + 1], y[i : i + 1]) for i in range(x.shape[0])])
    torch.testing.assert_close(batched, singles, atol=atol, rtol=1e-5)
    # Reordering / replacing the other samples changes nothing for sample 0.
    perm = torch.flip(torch.arange(x.shape[0]), dims=(0,))
    torch.testing.assert_close(fn(x[perm], y[perm]), batched[perm], atol=atol, rtol=1e-5)
    other = torch.cat([x[:1], torch.zeros_like(x[1:])])
    torch.testing.assert_close(fn(other, y)[0], batched[0], atol=atol, rtol=1e-5)
