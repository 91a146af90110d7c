"""ImageNet AlexNet / VGG16 feature extractors, and where their weights come from.

The architectures are written out as plain ``nn.Sequential`` stacks with torchvision's layer
indices, so state keys are torchvision's (``features.N.weight``) and torchvision is not needed.
The small learned heads on top (LPIPS v0.1 linear layers, DISTS alpha/beta: 5,574 numbers) ship
inside the package (``weights/imagenet_heads.safetensors``, SHA-256 in ``weights/SHA256SUMS``).
The backbone weights are looked for, in this order:

1. the ``weights_path`` argument: a file (``.npz`` of this project's format, or torchvision's
   ``.pth`` checkpoint) or a folder holding one under its standard name;
2. ``$KCROSS_IMAGENET_DIR``, a folder holding one of those files;
3. ``$KCROSS_SHARED_DIR/weights/imagenet`` (the project's shared folder);
4. torchvision's checkpoint in the torch hub cache (``torch.hub.get_dir()/checkpoints``, where
   torchvision and lpips keep it too);
5. a download of that checkpoint from ``$KCROSS_IMAGENET_URL`` (default torchvision's
   https://download.pytorch.org/models/) into the torch hub cache, checked against the SHA-256
   prefix torchvision publishes in the file name, as ``torch.hub`` does; skipped when
   ``$KCROSS_OFFLINE`` is set (``1``/``true``/``yes``);
6. otherwise :class:`BackboneNotFoundError`, naming what was tried and how to pre-fetch.

:func:`fetch_backbones` pre-fetches (``kcross-score --fetch-backbones`` on the command line).
``.npz`` files are read with ``allow_pickle=False``, ``.pth`` files with ``weights_only=True``;
both must hold exactly the expected keys and shapes. An ``.npz`` is checked against a
``SHA256SUMS`` file beside it when there is one (``sha256sum`` format).
"""


from __future__ import annotations

import hashlib
import http.client
import os
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._util.files import atomic_write, sha256_file
from .._util.shared_data import shared_path
from ..errors import BackboneNotFoundError, ChecksumError, ConfigError, WeightsError, WeightsNotFoundError
from ..weights import SearchFolder, bundled_dir, folder_from_env, load_safetensors, locate_file, read_checksums

__all__ = [
    "ENV_VAR",
    "OFFLINE_ENV_VAR",
    "URL_ENV_VAR",
    "TORCHVISION_URL",
    "TORCHVISION_CHECKPOINTS",
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
    "backbone_available",
    "fetch_backbones",
    "offline",
    "verify_sha256",
    "freeze",
]

ENV_VAR = "KCROSS_IMAGENET_DIR"
OFFLINE_ENV_VAR = "KCROSS_OFFLINE"
URL_ENV_VAR = "KCROSS_IMAGENET_URL"
TORCHVISION_URL = "https://download.pytorch.org/models/"
HEADS_FILE = "imagenet_heads.safetensors"
ALEXNET_FILE = "alexnet_features_torchvision_IMAGENET1K_V1.npz"
VGG16_FILE = "vgg16_features_torchvision_IMAGENET1K_V1.npz"
DISTS_FILE = "dists_alpha_beta.npz"
_FILES = {"alex": ALEXNET_FILE, "vgg": VGG16_FILE}
#: torchvision's IMAGENET1K_V1 checkpoints: file name (as torch.hub caches it) and the SHA-256
#: prefix torchvision publishes in that name
TORCHVISION_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "alex": ("alexnet-owt-7be5be79.pth", "7be5be79"),
    "vgg": ("vgg16-397923af.pth", "397923af"),
}
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
        _HASH_CACHE[key] = sha256_file(path)
    return _HASH_CACHE[key]


def verify_sha256(path: Path) -> bool:
    """Check ``path`` against ``SHA256SUMS`` in its folder (lines ``<hex>  <name>``).

    Returns True if verified, False if there is no SHA256SUMS or it does not list the file (a
    warning is issued in the latter case). Raises :class:`ChecksumError` on a mismatch.
    """
    sums = path.parent / "SHA256SUMS"
    if not sums.is_file():
        return False
    recorded = read_checksums(sums).get(path.name)
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


def offline() -> bool:
    """True when ``$KCROSS_OFFLINE`` forbids downloads."""
    from ..weights import _env_true

    return _env_true(OFFLINE_ENV_VAR)


def _bundled_heads() -> dict[str, torch.Tensor]:
    """The package's own file, checked against the package's SHA256SUMS ($KCROSS_WEIGHTS_DIR, which
    is about K-CROSS weights, does not replace it)."""

    path = bundled_dir() / HEADS_FILE
    return load_safetensors(path, expected_sha256=read_checksums(bundled_dir() / "SHA256SUMS")[HEADS_FILE])


def _lpips_heads(net: str) -> dict[str, torch.Tensor]:
    heads = _bundled_heads()
    return {f"lpips_lin{i}.weight": heads[f"lpips_{net}.lin{i}.weight"] for i in range(len(_LPIPS_HEAD_CHANNELS[net]))}


def _hub_checkpoint_path(net: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_CHECKPOINTS[net][0]


def _local_backbone(net: str, weights_path: str | os.PathLike[str] | None) -> tuple[Path | None, list[str]]:
    """The first local file of steps 1-4 (see the module docstring) and the places tried."""
    checkpoint = TORCHVISION_CHECKPOINTS[net][0]
    places = [
        SearchFolder(f"${ENV_VAR}", folder_from_env(ENV_VAR)),
        SearchFolder("shared folder weights/imagenet/", shared_path("weights", "imagenet")),
        # torchvision's checkpoint only: torchvision and lpips keep it there too
        SearchFolder("torch hub cache", _hub_checkpoint_path(net).parent, (checkpoint,)),
    ]
    path, _, tried = locate_file((_FILES[net], checkpoint), places, explicit=weights_path, what=f"{net} backbone")
    return path, tried


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusable file
        raise WeightsError(f"cannot read {path} as a tensor-only checkpoint: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict")
    return {k: v.float() for k, v in state.items() if isinstance(v, torch.Tensor)}


def _read_checkpoint(path: Path, net: str) -> dict[str, torch.Tensor]:
    """``features.*`` of a torchvision AlexNet/VGG16 checkpoint (the classifier is ignored)."""
    shapes = expected_keys(net, heads=False)
    state = {k: v for k, v in _torch_load(path).items() if k in shapes}
    if set(state) != set(shapes) or any(tuple(state[k].shape) != s for k, s in shapes.items()):
        raise WeightsError(f"{path} does not hold torchvision's ImageNet {net} features "
                           f"(expected keys {sorted(shapes)[:3]}... with their shapes)")
    return state


#: seconds without data after which a download is abandoned (a firewall that drops packets
#: must not hang the caller)
DOWNLOAD_TIMEOUT = 60.0


def _download(net: str, folder: Path) -> Path:
    """torchvision's checkpoint of ``net`` into ``folder``, checked against its hash prefix; the
    file appears only once complete and checked (temp file + rename)."""
    import urllib.request

    name, prefix = TORCHVISION_CHECKPOINTS[net]
    base = os.environ.get(URL_ENV_VAR, "").strip() or TORCHVISION_URL
    url = base.rstrip("/") + "/" + name
    target = folder / name
    print(f"kcross-metric: downloading {url} to {target}", file=sys.stderr, flush=True)

    def write(tmp: Path) -> None:
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response, open(tmp, "wb") as out:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if not digest.hexdigest().startswith(prefix):
            raise ChecksumError(f"{url}: SHA-256 {digest.hexdigest()} does not start with {prefix}, the "
                                f"prefix torchvision publishes for {name}; the file was not kept")

    try:
        atomic_write(target, write, make_parents=True)
    except ChecksumError:
        raise
    # URLError/HTTPError/timeouts/disk errors (OSError), cut or garbled responses (HTTPException),
    # a malformed $KCROSS_IMAGENET_URL (ValueError)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise WeightsNotFoundError(f"cannot download {url}: {type(exc).__name__}: {exc}") from exc
    return target


def load_backbone_state(net: str, weights_path: str | os.PathLike[str] | None = None, *,
                        heads: bool) -> dict[str, torch.Tensor]:
    """State of the AlexNet (``net="alex"``) or VGG16 (``"vgg"``) features, keys ``features.N.*``,
    plus ``lpips_lin{0..4}.weight`` if ``heads``. See the module docstring for the search order."""
    if net not in _FILES:
        raise ConfigError(f"net must be 'alex' or 'vgg', got {net!r}")
    path, tried = _local_backbone(net, weights_path)
    if path is None:
        if offline():
            tried.append(f"download (${OFFLINE_ENV_VAR} is set)")
        else:
            try:
                path = _download(net, _hub_checkpoint_path(net).parent)
            except WeightsNotFoundError as exc:
                tried.append(f"download ({exc})")
    if path is None:
        raise BackboneNotFoundError(net, tried, _FILES[net], TORCHVISION_CHECKPOINTS[net][0], ENV_VAR)
    if path.suffix == ".npz":
        required = expected_keys(net, heads=False)
        optional = {k: v for k, v in expected_keys(net, heads=True).items() if k not in required}
        state = _read_npz(path, required, optional)
        partial = sorted(set(optional) - set(state))
        if partial and len(partial) < len(optional):  # all heads or none, never a mix with ours
            raise WeightsError(f"weight file {path} does not match the architecture: missing keys {partial}")
    else:
        state = _read_checkpoint(path, net)
    if heads and not all(k in state for k in expected_keys(net, heads=True)):
        state.update(_lpips_heads(net))
    wanted = expected_keys(net, heads=heads)
    return {k: v for k, v in state.items() if k in wanted}


def backbone_available(net: str) -> bool:
    """Whether :func:`load_backbone_state` finds ``net`` without the network (steps 2-4)."""
    return _local_backbone(net, None)[0] is not None


def fetch_backbones(nets: tuple[str, ...] = ("alex", "vgg"), folder: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Download torchvision's checkpoints of ``nets`` (hash-checked) into ``folder`` (default the
    torch hub cache, where they are found automatically; another folder is then passed as
    ``weights_path=`` or ``$KCROSS_IMAGENET_DIR``). Files already there are kept, not re-downloaded.
    Returns net -> file."""
    out: dict[str, Path] = {}
    if folder is not None and not Path(folder).expanduser().is_dir():
        raise ConfigError(f"folder {folder} does not exist (create it first)")
    for net in nets:
        if net not in _FILES:
            raise ConfigError(f"net must be 'alex' or 'vgg', got {net!r}")
        target_dir = _hub_checkpoint_path(net).parent if folder is None else Path(folder).expanduser()
        name, prefix = TORCHVISION_CHECKPOINTS[net]
        target = target_dir / name
        if target.is_file() and not _sha256(target).startswith(prefix):
            warnings.warn(f"{target} does not have the published hash prefix {prefix}: fetching it again",
                          stacklevel=2)
            target.unlink()
        if not target.is_file():
            target_dir.mkdir(parents=folder is None, exist_ok=True)  # the hub cache is ours to create
            _download(net, target_dir)
        _read_checkpoint(target, net)
        out[net] = target
    return out


def load_dists_state(weights_path: str | os.PathLike[str] | None = None) -> dict[str, torch.Tensor]:
    """DISTS ``alpha`` and ``beta``, each (1, 1475, 1, 1): from ``weights_path`` (a
    ``dists_alpha_beta.npz`` file or its folder) if given, else the values shipped in the package."""
    shapes = {"alpha": (1, sum(DISTS_CHANNELS), 1, 1), "beta": (1, sum(DISTS_CHANNELS), 1, 1)}
    if weights_path is not None:
        path, _, _ = locate_file((DISTS_FILE,), (), explicit=weights_path, what="DISTS alpha_beta_path")
        assert path is not None  # an explicit path is found or raises
        return _read_npz(path, shapes)
    heads = _bundled_heads()
    return {"alpha": heads["dists.alpha"], "beta": heads["dists.beta"]}
