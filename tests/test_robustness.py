"""Robustness of every public entry point (issue 9).

* typed errors whose messages say what was wrong and what was expected (devices, dtypes, NaN/Inf,
  tolerance of the intensity range, too-small images and thin volumes, masks);
* defined scores (never NaN) on empty and constant images, for K-CROSS and every baseline;
* hypothesis properties over shapes, dtypes, data ranges and value patterns;
* weights: nothing on the K-CROSS load path can unpickle;
* NIfTI grids and orientations at the CLI;
* CLI exit codes, one-line errors, ``--overwrite`` and atomic writes interrupted mid-way.

What the per-module tests already check (e.g. NaN in ``x``, shape mismatch, uint8 input, the
minimum size of each baseline) is not repeated here.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import imagenet_available
from kcross_metric import KCross, create_metric, metric_info
from kcross_metric._util.checks import RANGE_TOLERANCE, check_device
from kcross_metric.baselines.psnr import PSNR_MAX_DB
from kcross_metric.data.io import check_same_grid, load_volume
from kcross_metric.errors import (
    ChannelError,
    ChecksumError,
    ConfigError,
    DeviceMismatchError,
    DTypeError,
    GridMismatchError,
    ImageTooSmallError,
    NonFiniteError,
    RangeError,
    ShapeError,
    WeightsError,
)

CLASSICAL = ["mae", "psnr", "ssim", "ms_ssim", "nlpd", "gmsd"]
DEEP = ["lpips_alex", "lpips_vgg", "dists"]
BASELINES = CLASSICAL + DEEP
ALL = ["kcross", *BASELINES]

#: Smallest valid H = W of each metric with its default settings.
MIN_SIZE = {"kcross": 1, "mae": 1, "psnr": 1, "ssim": 11, "ms_ssim": 161, "nlpd": 32, "gmsd": 4,
            "lpips_alex": 31, "lpips_vgg": 16, "dists": 16}
#: Value for identical inputs (PSNR is capped, GMSD/NLPD carry a 1e-10 sqrt offset).
BEST = {"kcross": 1.0, "mae": 0.0, "psnr": PSNR_MAX_DB, "ssim": 1.0, "ms_ssim": 1.0, "nlpd": 0.0,
        "gmsd": 0.0, "lpips_alex": 0.0, "lpips_vgg": 0.0, "dists": 0.0}

_MODELS: dict[str, Any] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """One intra-op thread: the 2 cores are shared with training runs, and OpenMP threads fighting
    for them make small K-CROSS calls ~10x slower. Nothing tested here depends on threading."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _metric(name: str, data_range: float = 1.0) -> Any:
    if name in DEEP and not imagenet_available():
        pytest.skip("ImageNet backbones not on disk (tests never download them)")
    key = f"{name}@{data_range:g}"
    if key not in _MODELS:
        _MODELS[key] = (KCross.untrained(seed=0, data_range=data_range) if name == "kcross"
                        else create_metric(name, data_range=data_range))
    return _MODELS[key]


def _size(name: str) -> int:
    return max(MIN_SIZE[name], 16)


def _pair(name: str, b: int = 1, data_range: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = _size(name)
    y = torch.rand(b, 1, s, s, generator=g) * data_range
    x = (0.8 * y + 0.2 * data_range * torch.rand(b, 1, s, s, generator=g)).clamp(0, data_range)
    return x, y


def _in_range(values: torch.Tensor, name: str, tol: float = 1e-5) -> bool:
    lo, hi = metric_info(name).score_range
    return bool(((values >= lo - tol) & (values <= hi + tol)).all())


# =============================================================================================
# Typed errors with clear messages
# =============================================================================================


@pytest.mark.parametrize("name", ALL)
def test_device_mismatch_is_a_typed_error_naming_both_devices(name: str) -> None:
    m = _metric(name)
    x, y = _pair(name)
    # "meta" stands in for a second device (cuda) on CPU-only machines.
    for a, b in ((x, y.to("meta")), (x.to("meta"), y)):
        with pytest.raises(DeviceMismatchError, match=r"is on (cpu|meta) but .* is on (meta|cpu); move both to one device"):
            m(a, b)


def test_kcross_source_and_mask_device_mismatch() -> None:
    m = _metric("kcross")
    x, y = _pair("kcross")
    with pytest.raises(DeviceMismatchError, match="source is on meta"):
        m(x, y, y.to("meta"))
    with pytest.raises(DeviceMismatchError, match="mask is on meta but fake is on cpu"):
        m(x, y, mask=torch.zeros_like(y, device="meta"))


@pytest.mark.parametrize("name", ALL)
def test_dtype_mismatch_message_names_both_dtypes(name: str) -> None:
    x, y = _pair(name)
    with pytest.raises(DTypeError, match=r"torch.float16 but .* is torch.float32; use one dtype for both"):
        _metric(name)(x.half(), y)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_nonfinite_reference_is_refused(name: str, bad: float) -> None:
    x, y = _pair(name)
    y[0, 0, 3, 5] = bad
    with pytest.raises(NonFiniteError, match=r"(real|y) contains NaN or Inf values"):
        _metric(name)(x, y)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("data_range", [1.0, 4095.0])
def test_range_tolerance_boundary(name: str, data_range: float) -> None:
    """Overshoot up to RANGE_TOLERANCE * data_range is accepted (interpolation), beyond is refused."""
    m = _metric(name, data_range)
    x, y = _pair(name, data_range=data_range)
    tol = RANGE_TOLERANCE * data_range
    inside = x.clone()
    inside[0, 0, 0, 0], inside[0, 0, 1, 1] = data_range + 0.5 * tol, -0.5 * tol
    out = m(inside, y)
    assert out.shape == (1,) and torch.isfinite(out).all()
    for value in (data_range + 2 * tol, -2 * tol):
        outside = x.clone()
        outside[0, 0, 2, 2] = value
        with pytest.raises(RangeError, match=rf"values in \[.*\], expected \[0, {data_range:g}\].*data_range="):
            m(outside, y)


@pytest.mark.parametrize("name", ALL)
def test_structural_errors_say_what_was_expected(name: str) -> None:
    m = _metric(name)
    x, y = _pair(name)
    with pytest.raises(ShapeError, match=r"must be \(B,C,H,W\).*got shape \(1, \d+, \d+\)"):
        m(x[:, 0], y[:, 0])
    with pytest.raises(ShapeError, match=r"empty dimension: shape \(0, 1,"):
        m(x[:0], y[:0])
    with pytest.raises(ShapeError, match=r"same shape, got \(1, 1, \d+, \d+\) and \(1, 1, \d+, \d+\)"):
        m(x, y[..., 1:, :])
    with pytest.raises(DTypeError, match="must be a torch.Tensor, got ndarray"):
        m(x.numpy(), y)
    with pytest.raises(DTypeError, match="floating-point tensor"):
        m(torch.ones_like(x, dtype=torch.int32), torch.ones_like(y, dtype=torch.int32))


@pytest.mark.parametrize("name", ["kcross", "lpips_alex", "lpips_vgg", "dists"])
def test_channel_errors(name: str) -> None:
    s = _size(name)
    x = torch.rand(1, 2, s, s)
    expected = r"must have 1 channel\(s\) in dim 1, got 2" if name == "kcross" else r"1-channel .* or 3-channel .* got 2"
    with pytest.raises(ChannelError, match=expected):
        _metric(name)(x, x)


@pytest.mark.parametrize("name", CLASSICAL)
def test_classical_baselines_score_any_channel_count(name: str) -> None:
    s = _size(name)
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 2, s, s, generator=g)
    out = _metric(name)(y.flip(-1), y)
    assert out.shape == (2,) and torch.isfinite(out).all()


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "abc", None])
@pytest.mark.parametrize("name", ALL)
def test_bad_data_range_is_refused_before_any_weights_are_read(name: str, value: object) -> None:
    with pytest.raises(RangeError, match="data_range must be a positive"):
        if name == "kcross":
            KCross.untrained(data_range=value)  # type: ignore[arg-type]
        else:
            create_metric(name, data_range=value)


def test_thin_volumes() -> None:
    thin = torch.rand(1, 1, 10, 32, 32)
    with pytest.raises(ImageTooSmallError, match=r"SSIM needs every spatial dimension >= 11 .* \(10, 32, 32\)"):
        _metric("ssim")(thin, thin)
    with pytest.raises(ImageTooSmallError, match=r"MS-SSIM needs every spatial dimension >= 161"):
        _metric("ms_ssim")(thin, thin)
    # Metrics without a window accept a single slice, K-CROSS scores it.
    one = torch.rand(2, 1, 1, 24, 24)
    for name in ("mae", "psnr", "kcross"):
        out = _metric(name)(one * 0.5, one)
        assert out.shape == (2,) and torch.isfinite(out).all() and _in_range(out, name)


def test_kcross_mask_validation() -> None:
    m = _metric("kcross")
    x, y = _pair("kcross")
    bad = torch.zeros_like(y)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="mask contains NaN"):
        m(x, y, mask=bad)
    with pytest.raises(ShapeError, match=r"mask must have the inputs' shape"):
        m(x, y, mask=torch.zeros(1, 1, 8, 8))
    # Boolean and integer masks are fine.
    assert torch.equal(m(x, y, mask=torch.zeros_like(y, dtype=torch.bool)), m(x, y, mask=torch.zeros_like(y, dtype=torch.int64)))


def test_check_device_messages() -> None:
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="invalid device 'nonsense'"):
        check_device("nonsense")
    with pytest.raises(ConfigError, match="meta"):
        check_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            check_device("cuda:0")


# =============================================================================================
# Empty and constant images: defined scores, never NaN
# =============================================================================================

_DEGENERATE = {
    "zero-zero": (0.0, 0.0),
    "const-const": (0.4, 0.4),
    "const-other-const": (0.3, 0.7),
    "zero-noise": (0.0, None),
    "noise-zero": (None, 0.0),
    "full-zero": (1.0, 0.0),
}


@pytest.mark.parametrize("case", list(_DEGENERATE))
@pytest.mark.parametrize("name", ALL)
def test_empty_and_constant_images_give_defined_scores(name: str, case: str) -> None:
    data_range = 255.0
    s = _size(name)
    g = torch.Generator().manual_seed(3)

    def image(level: float | None) -> torch.Tensor:
        if level is None:
            return torch.rand(2, 1, s, s, generator=g) * data_range
        return torch.full((2, 1, s, s), level * data_range)

    a, b = _DEGENERATE[case]
    with torch.no_grad():
        out = _metric(name, data_range)(image(a), image(b))
    assert out.shape == (2,) and torch.isfinite(out).all(), out
    assert _in_range(out, name), out
    if a == b:
        torch.testing.assert_close(out, torch.full_like(out, BEST[name]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", ["zero-zero", "zero-noise", "noise-zero"])
def test_kcross_empty_volumes_and_gradients(case: str) -> None:
    from kcross_metric.errors import EmptyReferenceError

    m = _metric("kcross")
    g = torch.Generator().manual_seed(4)
    noise = torch.rand(1, 1, 3, 32, 32, generator=g)
    zero = torch.zeros_like(noise)
    fake, real = {"zero-zero": (zero, zero), "zero-noise": (zero, noise), "noise-zero": (noise, zero)}[case]
    if case == "zero-noise":
        res = m.score(fake, real)
        assert torch.isfinite(res.score).all() and 0.0 <= float(res.score) <= 1.0
        assert all(torch.isfinite(v).all() for v in res.branches.values())
    else:  # no brain in the real volume: an error naming it, never a silent score
        with pytest.raises(EmptyReferenceError, match=r"\[0\]"):
            m.score(fake, real)
    # gradients stay finite on empty slices (2-D scoring has no brain-slice selection)
    fake2 = fake[:, :, 0].clone().requires_grad_(True)
    out = m(fake2, real[:, :, 0])
    if case == "zero-zero":
        assert float(out) == pytest.approx(1.0, abs=1e-5)
    out.sum().backward()
    assert fake2.grad is not None and torch.isfinite(fake2.grad).all()


# =============================================================================================
# Property-based tests
# =============================================================================================

_PATTERNS = ("constant", "zero", "sparse", "noise", "checkerboard")
_SETTINGS: dict[str, Any] = {"deadline": None, "derandomize": True, "database": None,
                             "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


def _pattern(kind: str, shape: tuple[int, ...], data_range: float, seed: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "constant":
        x = torch.full(shape, float(torch.rand(1, generator=g)), dtype=torch.float64)
    elif kind == "zero":
        x = torch.zeros(shape, dtype=torch.float64)
    elif kind == "sparse":
        x = torch.rand(shape, generator=g, dtype=torch.float64) * (torch.rand(shape, generator=g) < 0.05)
    elif kind == "noise":
        x = torch.rand(shape, generator=g, dtype=torch.float64)
    else:
        idx = torch.stack(torch.meshgrid(*[torch.arange(n) for n in shape[2:]], indexing="ij")).sum(0)
        x = ((idx % 2).to(torch.float64) * (0.2 + 0.8 * float(torch.rand(1, generator=g)))).expand(shape)
    return (x * data_range).to(dtype).contiguous()


@st.composite
def _cases(draw: st.DrawFn, name: str, lo: int, hi: int, volumes: bool, dtypes: tuple[torch.dtype, ...],
           max_depth: int = 12) -> dict[str, Any]:
    dtype = draw(st.sampled_from(dtypes))
    # 4095 is not representable in float16: rounding would push the maximum out of [0, 4095].
    data_range = draw(st.sampled_from((1.0, 255.0) if dtype == torch.float16 else (1.0, 255.0, 4095.0)))
    b = draw(st.integers(1, 3))
    h, w = draw(st.integers(lo, hi)), draw(st.integers(lo, hi))
    spatial: tuple[int, ...] = (h, w)
    if volumes and draw(st.booleans()):
        spatial = (draw(st.integers(MIN_SIZE[name], max(MIN_SIZE[name], max_depth))), h, w)
    shape = (b, 1, *spatial)
    px, py = draw(st.sampled_from(_PATTERNS)), draw(st.sampled_from(_PATTERNS))
    sx, sy = draw(st.integers(0, 2**16)), draw(st.integers(0, 2**16))
    return {"x": _pattern(px, shape, data_range, sx, dtype), "y": _pattern(py, shape, data_range, sy, dtype),
            "data_range": data_range}


def _check_properties(name: str, case: dict[str, Any]) -> None:
    m = _metric(name, case["data_range"])
    x, y = case["x"], case["y"]
    info = metric_info(name)
    if name == "kcross" and y.dim() == 5:
        from kcross_metric.errors import EmptyReferenceError

        try:  # the metric's own slice rule, on the reference as the metric maps it to [0, 1]
            m.brain_slices((y.float() * (1.0 / float(case["data_range"]))).clamp(0, 1))
        except EmptyReferenceError:  # a reference volume without brain: refused, never scored
            with pytest.raises(EmptyReferenceError):
                m(x, y)
            return
    with torch.no_grad():
        out, same = m(x, y), m(y, y)
    b = x.shape[0]
    assert out.shape == (b,) and same.shape == (b,)
    assert torch.isfinite(out).all() and torch.isfinite(same).all(), (out, same)
    assert _in_range(out, name) and _in_range(same, name), (out, same, info.score_range)
    best = torch.full_like(same, BEST[name])
    torch.testing.assert_close(same, best, atol=1e-5 if name != "psnr" else 1e-3, rtol=0)
    # nothing scores better than the reference itself
    assert bool((out <= same + 1e-5).all() if info.higher_is_better else (out >= same - 1e-5).all()), (out, same)


_CLASSICAL_SPACE = {
    "mae": (1, 40, True), "psnr": (1, 40, True), "ssim": (11, 40, True), "ms_ssim": (161, 176, False),
    "nlpd": (32, 64, False), "gmsd": (4, 64, False),
}
_ALL_FLOATS = (torch.float32, torch.float64, torch.float16)


@pytest.mark.parametrize("name", CLASSICAL)
@settings(max_examples=40, **_SETTINGS)
@given(data=st.data())
def test_properties_classical(name: str, data: st.DataObject) -> None:
    lo, hi, volumes = _CLASSICAL_SPACE[name]
    _check_properties(name, data.draw(_cases(name, lo, hi, volumes, _ALL_FLOATS)))


@pytest.mark.parametrize("name", DEEP)
@settings(max_examples=12, **_SETTINGS)
@given(data=st.data())
def test_properties_deep(name: str, data: st.DataObject) -> None:
    lo = MIN_SIZE[name]
    _check_properties(name, data.draw(_cases(name, lo, lo + 24, False, _ALL_FLOATS)))


@settings(max_examples=25, **_SETTINGS)
@given(data=st.data())
def test_properties_kcross(data: st.DataObject) -> None:
    _check_properties("kcross", data.draw(_cases("kcross", 1, 48, True, _ALL_FLOATS, max_depth=4)))


# =============================================================================================
# Weights: the K-CROSS load path never unpickles
# =============================================================================================


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An architecture-valid (random init) weight file listed in a SHA256SUMS beside it."""
    from kcross_metric.weights import save_safetensors, write_checksums

    path = tmp_path_factory.mktemp("w") / "kcross.safetensors"
    save_safetensors({k: v.contiguous() for k, v in KCross.untrained(seed=0).nets.state_dict().items()}, path)
    write_checksums(path.parent)
    return path


def test_kcross_weight_loading_never_unpickles(weights_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("an unpickling function was called while loading weights")

    for module, attr in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, attr, forbidden)
    loaded = KCross(weights_file)
    x, y = _pair("kcross", seed=5)
    assert torch.equal(loaded(x, y), _metric("kcross")(x, y))  # same parameters as untrained(seed=0)
    assert loaded.version["pretrained"] is True and len(str(loaded.version["weights_sha256"])) == 64


def test_kcross_refuses_tampered_pickled_and_foreign_weights(weights_file: Path, tmp_path: Path) -> None:
    from kcross_metric.weights import save_safetensors, write_checksums

    folder = tmp_path / "tampered"
    folder.mkdir()
    blob = bytearray(weights_file.read_bytes())
    (folder / "kcross.safetensors").write_bytes(bytes(blob))
    write_checksums(folder)
    blob[-1] ^= 0x01
    (folder / "kcross.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ChecksumError, match="tampered"):
        KCross(folder / "kcross.safetensors")
    (folder / "kcross.safetensors").write_bytes(bytes(blob[: len(blob) // 2]))
    with pytest.raises(ChecksumError):
        KCross(folder)  # a folder resolves to its kcross.safetensors, still verified

    pt = tmp_path / "kcross.pt"
    torch.save({"w": torch.zeros(1)}, pt)
    with pytest.raises(WeightsError, match="only '.safetensors'"):
        KCross(pt)
    disguised = tmp_path / "disguised.safetensors"
    disguised.write_bytes(pt.read_bytes())
    with pytest.raises(WeightsError, match="never unpickles"):
        KCross(disguised)
    foreign = tmp_path / "foreign.safetensors"
    save_safetensors({"conv.weight": torch.zeros(2, 2)}, foreign)
    with pytest.raises(WeightsError, match="missing keys"):
        KCross(foreign)


def _keyword_constant(call: ast.Call, key: str) -> object:
    """The literal value of keyword ``key`` in ``call`` (None if absent or not a literal)."""
    for kw in call.keywords:
        if kw.arg == key and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def test_source_tree_has_no_unrestricted_unpickling() -> None:
    """Static guarantee: no pickle import, ``torch.load`` only with ``weights_only=True``,
    ``np.load`` only with ``allow_pickle=False``."""
    root = Path(__import__("kcross_metric").__file__).parent
    problems = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                if any(n.split(".")[0] in {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"} for n in names):
                    problems.append(f"{where}: imports {names}")
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            if node.func.attr != "load" or not isinstance(owner, ast.Name):
                continue
            if owner.id == "torch" and _keyword_constant(node, "weights_only") is not True:
                problems.append(f"{where}: torch.load without weights_only=True")
            if owner.id in {"np", "numpy"} and _keyword_constant(node, "allow_pickle") is not False:
                problems.append(f"{where}: np.load without allow_pickle=False")
    assert not problems, "\n".join(problems)


# =============================================================================================
# NIfTI grids and orientations at the CLI
# =============================================================================================


def _volume(seed: int) -> np.ndarray:
    """A (x, y, z) = (32, 32, 4) float32 'head': zero background, brain in the middle slices."""
    rng = np.random.default_rng(seed)
    data = np.zeros((32, 32, 4), np.float32)
    data[6:26, 8:24, 1:3] = 0.2 + 0.8 * rng.random((20, 16, 2))
    return data


@pytest.fixture(scope="module")
def nifti(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("nii")
    real = _volume(0)
    fake = np.clip(real + 0.1 * np.random.default_rng(1).random(real.shape).astype(np.float32) * (real > 0), 0, 1)
    ras = np.diag([1.0, 1.0, 2.0, 1.0])
    paths = {"real": d / "real.nii.gz", "fake": d / "fake.nii.gz"}
    nib.save(nib.Nifti1Image(real, ras), paths["real"])
    nib.save(nib.Nifti1Image(fake, ras), paths["fake"])
    # the same voxels stored left-right and anterior-posterior flipped, with the matching LPS affine
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [31.0, 31.0]
    paths["fake_lps"] = d / "fake_lps.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(fake[::-1, ::-1, :]), ras @ flip), paths["fake_lps"])
    # same array and voxel size, but an oblique grid (15 degrees in the axial plane): no voxel
    # permutation maps it onto the real grid
    c, s = np.cos(np.deg2rad(15.0)), np.sin(np.deg2rad(15.0))
    rot = np.array([[c, -s, 0.0, 0.0], [s, c, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0, 0, 0, 1.0]])
    paths["fake_rot"] = d / "fake_rot.nii.gz"
    nib.save(nib.Nifti1Image(fake, rot), paths["fake_rot"])
    return paths


def test_grid_check_refuses_an_oblique_grid_and_accepts_another_voxel_order(nifti: dict[str, Path]) -> None:
    real = load_volume(nifti["real"])
    check_same_grid(load_volume(nifti["fake_lps"]), real)  # same world grid, other storage order
    with pytest.raises(GridMismatchError, match=r"(?s)fake and real are not on the same voxel grid: affines differ .*Resample"):
        check_same_grid(load_volume(nifti["fake_rot"]), real)


def test_cli_score_is_independent_of_the_stored_orientation(nifti: dict[str, Path], weights_file: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from kcross_metric.cli.score import main

    scores = []
    for fake in ("fake", "fake_lps"):
        assert main([str(nifti[fake]), str(nifti["real"]), "--weights", str(weights_file), "--json"]) == 0
        scores.append(json.loads(capsys.readouterr().out)["kcross"])
    assert scores[0] == scores[1] and 0.0 <= scores[0] <= 1.0
    assert main([str(nifti["fake_rot"]), str(nifti["real"]), "--weights", str(weights_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kcross-score: error:") and "same voxel grid" in err and "Traceback" not in err


# =============================================================================================
# CLI: exit codes, one-line errors, --overwrite, atomic writes
# =============================================================================================


def _one_line_error(err: str, prog: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error:") and "Traceback" not in err, err


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("device, needle", [("nonsense", "invalid device"), ("meta", "meta"), ("cuda:0", "CUDA")])
def test_cli_score_bad_device_is_exit_2(nifti: dict[str, Path], weights_file: Path, device: str, needle: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from kcross_metric.cli.score import main

    if device == "cuda:0" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main([str(nifti["fake"]), str(nifti["real"]), "--weights", str(weights_file), "--device", device]) == 2
    err = capsys.readouterr().err
    _one_line_error(err, "kcross-score")
    assert needle in err


def test_cli_score_debug_shows_traceback(nifti: dict[str, Path], weights_file: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from kcross_metric.cli.score import main

    args = [str(nifti["fake_rot"]), str(nifti["real"]), "--weights", str(weights_file)]
    assert main(args + ["--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "GridMismatchError" in err


def test_cli_score_out_must_be_a_file(nifti: dict[str, Path], weights_file: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from kcross_metric.cli.score import main

    args = [str(nifti["fake"]), str(nifti["real"]), "--weights", str(weights_file), "--out", str(tmp_path), "--overwrite"]
    assert main(args) == 2
    _one_line_error(capsys.readouterr().err, "kcross-score")


@pytest.mark.parametrize("failure, existing", [(OSError, False), (OSError, True), (KeyboardInterrupt, True)])
def test_cli_score_interrupted_write_leaves_target_untouched(
    nifti: dict[str, Path], weights_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], existing: bool, failure: type[BaseException],
) -> None:
    from kcross_metric.cli.score import main

    out = tmp_path / "res.json"
    if existing:
        out.write_text("previous result")
    before = _listing(tmp_path)

    def interrupted(src: object, dst: object) -> None:
        raise failure("simulated interruption during the rename")

    monkeypatch.setattr(os, "replace", interrupted)
    code = main([str(nifti["fake"]), str(nifti["real"]), "--weights", str(weights_file), "--out", str(out),
                 "--overwrite"])
    assert code == (2 if failure is OSError else 130)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert _listing(tmp_path) == before  # no temp file left, nothing new
    assert (out.read_text(encoding="utf-8") == "previous result") if existing else not out.exists()
    if failure is KeyboardInterrupt:
        return
    monkeypatch.undo()  # the same command then succeeds
    assert main([str(nifti["fake"]), str(nifti["real"]), "--weights", str(weights_file), "--out", str(out),
                 "--overwrite"]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["kcross"] >= 0.0 and _listing(tmp_path) == ["res.json"]


@pytest.fixture
def rated_set(tmp_path: Path) -> Path:
    rng = np.random.default_rng(2)
    real = (0.2 + 0.6 * rng.random((24, 24))).astype(np.float32)
    np.save(tmp_path / "real.npy", real)
    lines = ["fake,real,source,score"]
    for i in range(5):
        np.save(tmp_path / f"fake{i}.npy", np.clip(real + np.float32(0.04 * i), 0, 1))
        lines.append(f"fake{i}.npy,real.npy,,{1.0 - 0.2 * i:.1f}")
    (tmp_path / "set.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    return tmp_path / "set.csv"


def _eval_args(rated_set: Path, *extra: str) -> list[str]:
    return ["rated", str(rated_set), "--metrics", "mae,psnr", "--data-range", "1", "--n-boot", "0", *extra]


@pytest.mark.parametrize("existing", [False, True])
def test_cli_eval_interrupted_write_leaves_targets_untouched(
    rated_set: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], existing: bool,
) -> None:
    from kcross_metric.cli.eval import main

    folder = rated_set.parent / "out"
    md, csv_out = folder / "t.md", folder / "t.csv"
    if existing:
        md.write_text("old md")
        csv_out.write_text("old csv")
    before = _listing(folder)
    args = _eval_args(rated_set, "--out", str(md), "--csv-out", str(csv_out), "--overwrite")

    def interrupted(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(os, "replace", interrupted)
    assert main(args) == 2
    err = capsys.readouterr().err
    _one_line_error(err, "kcross-eval")
    assert "No space left" in err
    assert _listing(folder) == before
    if existing:
        assert md.read_text(encoding="utf-8") == "old md" and csv_out.read_text(encoding="utf-8") == "old csv"

    def keyboard(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", keyboard)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert _listing(folder) == before
    monkeypatch.undo()
    assert main(args) == 0
    assert md.read_text(encoding="utf-8").startswith("# ") and "srocc" in csv_out.read_text(encoding="utf-8").splitlines()[0]
    assert _listing(folder) == ["t.csv", "t.md"]


def test_cli_eval_exit_codes_and_debug(rated_set: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from kcross_metric.cli.eval import main

    assert main(_eval_args(rated_set)) == 0
    assert "| mae |" in capsys.readouterr().out
    assert main(_eval_args(rated_set, "--device", "nonsense")) == 2
    _one_line_error(capsys.readouterr().err, "kcross-eval")
    assert main(_eval_args(rated_set, "--data-range", "0.5")) == 2  # values up to 0.84 > 0.5
    err = capsys.readouterr().err
    _one_line_error(err, "kcross-eval")
    assert "expected [0, 0.5]" in err
    target = rated_set.parent / "out" / "t.md"

    def interrupted(src: object, dst: object) -> None:
        raise OSError("simulated")

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(OSError, match="simulated"):
        main(_eval_args(rated_set, "--out", str(target), "--debug"))
    assert not target.exists() and _listing(target.parent) == []
