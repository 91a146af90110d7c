"""ImageNet AlexNet / VGG16 feature extractors and local loading of their weights.

The architectures are written out as plain ``nn.Sequential`` stacks with torchvision's layer
indices, so state keys are torchvision's (``features.N.weight``) and torchvision is not needed.
Weights are only ever read from local files, in this order:

1. the ``weights_path`` argument (an ``.npz`` file or a directory holding the standard file name);
2. ``$KCROSS_IMAGENET_DIR``;
3. the project's shared folder, ``shared_path("weights", "imagenet")``;
4. torchvision's checkpoint in the torch hub cache, if it is already there (nothing is downloaded),
   with the LPIPS heads / DISTS weights shipped inside the ``lpips`` / ``DISTS_pytorch`` wheels
   when those packages are installed;
5. otherwise :class:`WeightsNotFoundError` saying where to put the files.

``.npz`` files are read with ``allow_pickle=False``, must hold exactly the expected keys and shapes,
and are checked against a ``SHA256SUMS`` file beside them when there is one (``sha256sum`` format).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ChecksumError, ConfigError, WeightsError, WeightsNotFoundError
from ..shared_data import shared_path

__all__ = [
    "ENV_VAR",
    "ALEXNET_FILE",
    "VGG16_FILE",
    "DISTS_FILE",
    "alexnet_features",
    "vgg16_features",
    "L2Pooling",
    "FeatureTaps",
    "expected_keys",
    "load_backbone_state",
    "load_dists_state",
    "verify_sha256",
    "freeze",
]

ENV_VAR = "KCROSS_IMAGENET_DIR"
ALEXNET_FILE = "alexnet_features_torchvision_IMAGENET1K_V1.npz"
VGG16_FILE = "vgg16_features_torchvision_IMAGENET1K_V1.npz"
DISTS_FILE = "dists_alpha_beta.npz"
_FILES = {"alex": ALEXNET_FILE, "vgg": VGG16_FILE}
# torchvision's IMAGENET1K_V1 checkpoints as cached by torch.hub.
_HUB_CHECKPOINTS = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
_LPIPS_HEAD_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)

_VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                     512, 512, 512, "M")


def alexnet_features() -> nn.Sequential:
    """torchvision ``alexnet().features`` (ImageNet AlexNet, Krizhevsky 2014 'one weird trick')."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=False),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=False),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def vgg16_features(pool: Callable[[int], nn.Module] | None = None) -> nn.Sequential:
    """torchvision ``vgg16().features`` (Simonyan & Zisserman 2015); ``pool(channels)`` may replace
    the 2x2 max-pooling layers (DISTS uses L2 pooling)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2) if pool is None else pool(in_ch))
        else:
            layers += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_ch = int(v)
    return nn.Sequential(*layers)


class L2Pooling(nn.Module):
    """DISTS's L2 pooling: ``sqrt(hann3x3 * x^2)`` with stride 2 (Hénaff & Simoncelli 2016).

    (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2)).
    """

    filter: torch.Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = torch.tensor([0.5, 1.0, 0.5], dtype=torch.float64)  # hanning(5)[1:-1]
        g = torch.outer(a, a)
        g = (g / g.sum()).to(torch.float32)
        self.register_buffer("filter", g.expand(channels, 1, 3, 3).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x.pow(2), self.filter.to(x.dtype), stride=2, padding=1, groups=x.shape[1])
        return torch.sqrt(out + 1e-12)


class FeatureTaps(nn.Module):
    """Runs ``features`` (registered under that name, so keys are ``features.N.*``) and returns the
    outputs of the layers whose indices are in ``taps``."""

    def __init__(self, features: nn.Sequential, taps: tuple[int, ...]) -> None:
        super().__init__()
        self.features = features[: max(taps) + 1]
        self.taps = frozenset(taps)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                outs.append(x)
        return outs


def freeze(module: nn.Module) -> nn.Module:
    """No parameter gradients, eval mode (gradients still flow to the inputs)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def _backbone_shapes(net: str) -> dict[str, tuple[int, ...]]:
    seq = alexnet_features() if net == "alex" else vgg16_features()
    return {f"features.{k}": tuple(v.shape) for k, v in seq.state_dict().items()}


def expected_keys(net: str, *, heads: bool) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a backbone ``.npz`` (``heads=True`` adds the LPIPS v0.1 linear heads)."""
    shapes = _backbone_shapes(net)
    if heads:
        for i, c in enumerate(_LPIPS_HEAD_CHANNELS[net]):
            shapes[f"lpips_lin{i}.weight"] = (1, c, 1, 1)
    return shapes


# ---------------------------------------------------------------------------------------------
# Integrity


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def verify_sha256(path: Path) -> bool:
    """Check ``path`` against ``SHA256SUMS`` in its folder (lines ``<hex>  <name>``).

    Returns True if verified, False if there is no SHA256SUMS or it does not list the file (a
    warning is issued in the latter case). Raises :class:`ChecksumError` on a mismatch.
    """
    sums = path.parent / "SHA256SUMS"
    if not sums.is_file():
        return False
    recorded = None
    for line in sums.read_text(encoding="utf-8").splitlines():
        parts = line.strip().split()
        if len(parts) == 2 and parts[1].lstrip("*") == path.name:
            recorded = parts[0].lower()
    if recorded is None:
        warnings.warn(f"{sums} does not list {path.name}; its SHA-256 was not verified", stacklevel=3)
        return False
    actual = _sha256(path)
    if actual != recorded:
        raise ChecksumError(
            f"SHA-256 of {path} is {actual} but {sums} records {recorded}: the file is corrupt, "
            f"truncated or was replaced; restore the original file"
        )
    return True


def _read_npz(path: Path, required: Mapping[str, tuple[int, ...]],
              optional: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, torch.Tensor]:
    """Load a pickle-free npz with strict key and shape matching -> float32 tensors."""
    optional = optional or {}
    verify_sha256(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise WeightsError(f"cannot read weight file {path} as a pickle-free .npz: {exc}") from exc
    missing = sorted(set(required) - set(arrays))
    unexpected = sorted(set(arrays) - set(required) - set(optional))
    if missing or unexpected:
        raise WeightsError(
            f"weight file {path} does not match the architecture: missing keys {missing}, "
            f"unexpected keys {unexpected}"
        )
    out = {}
    for k, arr in arrays.items():
        want = required.get(k, optional.get(k))
        if tuple(arr.shape) != tuple(want):  # type: ignore[arg-type]
            raise WeightsError(f"weight {k!r} in {path} has shape {tuple(arr.shape)}, expected {want}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise WeightsError(f"weight {k!r} in {path} has dtype {arr.dtype}, expected floating point")
        out[k] = torch.from_numpy(arr.astype(np.float32))
    return out


# ---------------------------------------------------------------------------------------------
# Resolution


def _candidates(filename: str, weights_path: str | os.PathLike[str] | None) -> tuple[Path | None, list[str]]:
    """First existing file among the documented locations, plus the list of places tried."""
    tried: list[str] = []
    if weights_path is not None:
        p = Path(weights_path).expanduser()
        if p.is_dir():
            p = p / filename
        if not p.is_file():
            raise WeightsNotFoundError(f"weights_path {weights_path!s}: no file {p}")
        return p, tried
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser() / filename
        if p.is_file():
            return p, tried
        tried.append(f"${ENV_VAR} ({p})")
    else:
        tried.append(f"${ENV_VAR} (not set)")
    p2 = shared_path("weights", "imagenet", filename)
    if p2 is not None and p2.is_file():
        return p2, tried
    tried.append("shared folder weights/imagenet/ (not found)")
    return None, tried


def _hub_checkpoint(net: str) -> Path | None:
    p = Path(torch.hub.get_dir()) / "checkpoints" / _HUB_CHECKPOINTS[net]
    return p if p.is_file() else None


def _package_file(package: str, *parts: str) -> Path | None:
    """A data file shipped inside an installed package, located without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        p = Path(base).joinpath(*parts)
        if p.is_file():
            return p
    return None


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusable file
        raise WeightsError(f"cannot read {path} as a tensor-only checkpoint: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict")
    return {k: v.float() for k, v in state.items() if isinstance(v, torch.Tensor)}


def _from_hub_cache(net: str, heads: bool) -> dict[str, torch.Tensor] | None:
    ckpt = _hub_checkpoint(net)
    if ckpt is None:
        return None
    shapes = expected_keys(net, heads=False)
    state = {k: v for k, v in _torch_load(ckpt).items() if k in shapes}
    if set(state) != set(shapes) or any(tuple(state[k].shape) != s for k, s in shapes.items()):
        raise WeightsError(f"{ckpt} does not hold torchvision's {net} features")
    if heads:
        head_file = _package_file("lpips", "weights", "v0.1", f"{net}.pth")
        if head_file is None:
            return None
        lins = _torch_load(head_file)
        for i, c in enumerate(_LPIPS_HEAD_CHANNELS[net]):
            w = lins.get(f"lin{i}.model.1.weight")
            if w is None or tuple(w.shape) != (1, c, 1, 1):
                raise WeightsError(f"{head_file} does not hold the LPIPS v0.1 head lin{i}")
            state[f"lpips_lin{i}.weight"] = w
    return state


def load_backbone_state(net: str, weights_path: str | os.PathLike[str] | None = None, *,
                        heads: bool) -> dict[str, torch.Tensor]:
    """State of the AlexNet (``net="alex"``) or VGG16 (``"vgg"``) features, keys ``features.N.*``,
    plus ``lpips_lin{0..4}.weight`` if ``heads``. See the module docstring for the search order."""
    if net not in _FILES:
        raise ConfigError(f"net must be 'alex' or 'vgg', got {net!r}")
    filename = _FILES[net]
    path, tried = _candidates(filename, weights_path)
    if path is not None:
        required = expected_keys(net, heads=heads)
        optional = {} if heads else {k: v for k, v in expected_keys(net, heads=True).items() if k not in required}
        state = _read_npz(path, required, optional)
        return {k: v for k, v in state.items() if k in required}
    cached = _from_hub_cache(net, heads)
    if cached is not None:
        return cached
    tried.append(f"torch hub cache ({Path(torch.hub.get_dir()) / 'checkpoints' / _HUB_CHECKPOINTS[net]}"
                 + (" and the lpips package's v0.1 heads)" if heads else ")"))
    raise WeightsNotFoundError(
        f"ImageNet {net} weights not found; tried: {'; '.join(tried)}. Pass weights_path= an "
        f"{filename} file (or its folder), or set ${ENV_VAR} to the folder holding it. Weights are "
        f"never downloaded."
    )


def load_dists_state(weights_path: str | os.PathLike[str] | None = None) -> dict[str, torch.Tensor]:
    """DISTS ``alpha`` and ``beta``, each (1, 1475, 1, 1)."""
    shapes = {"alpha": (1, sum(DISTS_CHANNELS), 1, 1), "beta": (1, sum(DISTS_CHANNELS), 1, 1)}
    path, tried = _candidates(DISTS_FILE, weights_path)
    if path is not None:
        return _read_npz(path, shapes)
    pkg = _package_file("DISTS_pytorch", "weights.pt")
    if pkg is not None:
        state = _torch_load(pkg)
        if all(k in state and tuple(state[k].shape) == s for k, s in shapes.items()):
            return {k: state[k] for k in shapes}
        raise WeightsError(f"{pkg} does not hold DISTS alpha/beta of shape {shapes['alpha']}")
    tried.append("the DISTS_pytorch package (not installed)")
    raise WeightsNotFoundError(
        f"DISTS alpha/beta not found; tried: {'; '.join(tried)}. Pass alpha_beta_path= a "
        f"{DISTS_FILE} file (or its folder), or set ${ENV_VAR} to the folder holding it."
    )
