"""2.5D tri-planar volume scoring (kcross_metric.evaluation.volume25d)."""

from __future__ import annotations

import pytest
import torch

from conftest import need_imagenet
from kcross_metric.baselines.mae import MAE
from kcross_metric.core.metric import KCross
from kcross_metric.data.phantom import make_phantom
from kcross_metric.errors import ConfigError, ImageTooSmallError, InputError, ShapeError
from kcross_metric.evaluation.volume25d import plane_slices, score_25d
from kcross_metric.registry import list_metrics

SHAPE = (16, 20, 18)


@pytest.fixture(scope="module")
def volumes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    p = make_phantom(SHAPE, contrasts=("t1", "t2"), seed=0)
    real, source = p["t2"], p["t1"]
    g = torch.Generator().manual_seed(0)
    fake = (real + 0.05 * torch.randn(real.shape, generator=g)).clamp(0, 1)
    return fake, real, source


def _manual_plane_mae(fake: torch.Tensor, real: torch.Tensor, axis: int) -> torch.Tensor:
    """Mean over slices with brain (real > 0.01) of the slice MAE, per sample."""
    out = []
    for b in range(fake.shape[0]):
        f, r = fake[b, 0].movedim(axis - 2, 0), real[b, 0].movedim(axis - 2, 0)
        vals = [(f[k] - r[k]).abs().mean() for k in range(f.shape[0]) if bool((r[k] > 0.01).any())]
        out.append(torch.stack(vals).mean())
    return torch.stack(out)


def test_plane_values_match_manual_loop(volumes) -> None:  # type: ignore[no-untyped-def]
    fake, real, _ = volumes
    fake2 = torch.cat([fake, real.flip(-1)])
    real2 = torch.cat([real, real])
    r = score_25d("mae", fake2, real2)
    for plane, axis in (("axial", 2), ("coronal", 3), ("sagittal", 4)):
        torch.testing.assert_close(r.planes[plane], _manual_plane_mae(fake2, real2, axis))
    torch.testing.assert_close(r.value, (r.planes["axial"] + r.planes["coronal"] + r.planes["sagittal"]) / 3)
    assert r.value.shape == (2,) and r.metric == "mae" and r.higher_is_better is False


def test_plane_slices_axes() -> None:
    v = torch.arange(3 * 4 * 5, dtype=torch.float32).view(1, 1, 3, 4, 5)
    assert plane_slices(v, "axial").shape == (1, 3, 1, 4, 5)
    assert plane_slices(v, "coronal").shape == (1, 4, 1, 3, 5)
    assert plane_slices(v, "sagittal").shape == (1, 5, 1, 3, 4)
    torch.testing.assert_close(plane_slices(v, "coronal")[0, 2, 0], v[0, 0, :, 2, :])


def test_slices_without_brain_are_skipped() -> None:
    real = torch.zeros(1, 1, 8, 10, 10)
    real[:, :, 4:, 2:8, 2:8] = 0.5  # brain only in axial slices 4..7
    fake = real.clone()
    fake[:, :, :4] = 0.3  # differences only where the real volume has no brain
    r = score_25d("mae", fake, real)
    assert int(r.n_slices["axial"]) == 4 and int(r.n_slices["coronal"]) == 6 and int(r.n_slices["sagittal"]) == 6
    assert float(r.planes["axial"]) == 0.0  # the differing axial slices are not scored
    # coronal slices 2..7 span D=8 x W=10; 4x10 of their 80 pixels differ by 0.3
    torch.testing.assert_close(r.planes["coronal"], torch.tensor([0.3 * 40 / 80]))
    # an explicit mask restricting to D in 6..7 changes the counts
    mask = torch.zeros_like(real)
    mask[:, :, 6:] = 1
    assert int(score_25d("mae", fake, real, brain_mask=mask).n_slices["axial"]) == 2


def test_deterministic_and_batch_size_invariant(volumes) -> None:  # type: ignore[no-untyped-def]
    fake, real, _ = volumes
    a = score_25d("ssim", fake, real, slice_batch_size=3)
    b = score_25d("ssim", fake, real, slice_batch_size=64)
    for p in a.planes:
        torch.testing.assert_close(a.planes[p], b.planes[p])
    assert a.higher_is_better is True and float(a.value) < 1.0


class _ShapeRecorder(MAE):
    def __init__(self) -> None:
        super().__init__(data_range=1.0)
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        self.shapes.append(tuple(x.shape[-2:]))
        return super().forward(x, y)


def test_anisotropic_spacing_resamples_in_plane(volumes) -> None:  # type: ignore[no-untyped-def]
    fake, real, _ = volumes
    rec = _ShapeRecorder()
    score_25d(rec, fake, real, spacing=(2.0, 1.0, 1.0), planes=("axial", "coronal"))
    d, h, w = SHAPE
    assert set(rec.shapes) == {(h, w), (2 * d, w)}  # axial untouched, coronal D upsampled x2
    iso = score_25d("mae", fake, real, spacing=(1.0, 1.0, 1.0))
    torch.testing.assert_close(iso.value, score_25d("mae", fake, real).value)
    with pytest.raises(ConfigError):
        score_25d("mae", fake, real, spacing=(1.0, 0.0, 1.0))


def test_small_slices_padded_or_refused(volumes) -> None:  # type: ignore[no-untyped-def]
    fake, real, _ = volumes
    r = score_25d("nlpd", fake, real, planes=("axial",))  # NLPD needs 32x32; slices are 20x18
    assert bool(torch.isfinite(r.value).all()) and float(r.value) > 0
    with pytest.raises(ImageTooSmallError):
        score_25d("nlpd", fake, real, planes=("axial",), pad_small=False)


_IMAGENET = {"dists", "dfd_vgg16", "lpips_alex", "lpips_vgg"}  # backbones from disk (tests never download)
_HEAVY = {"dists", "dfd_vgg16", "dfd_random", "lpips_vgg", "ms_ssim"}  # VGG16 passes / 161x161 padding


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _HEAVY else n
                                  for n in list_metrics() if n not in ("kcross", "dfd_ssfd")])
def test_every_registry_metric(name: str, volumes) -> None:  # type: ignore[no-untyped-def]
    if name in _IMAGENET:
        need_imagenet()
    fake, real, _ = volumes
    small = (slice(None), slice(None), slice(6, 8))  # 2 axial slices keep the heavy metrics fast
    f, r = fake[small], real[small]
    res = score_25d(name, f, r, planes=("axial",))
    same = score_25d(name, r, r, planes=("axial",))
    assert res.value.shape == (1,) and bool(torch.isfinite(res.value).all())
    assert (float(res.value) < float(same.value)) if res.higher_is_better else (float(res.value) > float(same.value))


@pytest.mark.slow
def test_kcross_uses_source(volumes) -> None:  # type: ignore[no-untyped-def]
    fake, real, source = volumes
    metric = KCross.untrained(seed=0)
    cut = (slice(None), slice(None), slice(5, 7))
    r = score_25d(metric, fake[cut], real[cut], source[cut], planes=("axial",))
    assert r.value.shape == (1,) and 0.0 <= float(r.value) <= 1.0 and r.higher_is_better


def test_input_errors(volumes) -> None:  # type: ignore[no-untyped-def]
    fake, real, _ = volumes
    with pytest.raises(ShapeError):
        score_25d("mae", fake[:, :, 0], real[:, :, 0])
    with pytest.raises(ConfigError):
        score_25d("mae", fake, real, planes=("transverse",))
    with pytest.raises(ConfigError):
        score_25d("not_a_metric", fake, real)
    with pytest.raises(InputError):
        score_25d("mae", torch.zeros_like(real), torch.zeros_like(real))
    with pytest.raises(ConfigError):
        score_25d(MAE(reduction="mean"), fake, real)
    with pytest.raises(ShapeError):
        score_25d("mae", fake, real, brain_mask=torch.ones(1, 1, 2, 2, 2))
