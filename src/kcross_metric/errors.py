"""Typed exceptions raised by kcross-metric.

Every error a user can trigger with bad input is a subclass of :class:`ValueError` (or
:class:`TypeError` for wrong types), so ``except ValueError`` keeps working, while the specific
classes let callers react precisely. Messages say what was wrong and what was expected.
"""

from __future__ import annotations

__all__ = [
    "KCrossError",
    "InputError",
    "ShapeError",
    "ChannelError",
    "RangeError",
    "NonFiniteError",
    "DeviceMismatchError",
    "DTypeError",
    "ImageTooSmallError",
    "FileFormatError",
    "GridMismatchError",
    "WeightsError",
    "ChecksumError",
    "WeightsNotFoundError",
    "BackboneNotFoundError",
    "EmptyReferenceError",
    "DataNotFoundError",
    "UntrainedWeightsError",
    "ConfigError",
    "OutputExistsError",
]


class KCrossError(Exception):
    """Base class of every exception raised on purpose by kcross-metric."""


class InputError(KCrossError, ValueError):
    """An input tensor, array or file does not meet the documented contract."""


class ShapeError(InputError):
    """Wrong number of dimensions, or shapes of paired inputs that do not match."""


class ChannelError(ShapeError):
    """Wrong number of channels (K-CROSS takes single-channel MR images)."""


class RangeError(InputError):
    """Intensities outside ``[0, data_range]`` beyond the tolerance, or a bad ``data_range``."""


class NonFiniteError(InputError):
    """NaN or infinite values in an input."""


class DeviceMismatchError(InputError):
    """Paired tensors live on different devices."""


class DTypeError(KCrossError, TypeError):
    """A tensor has an unsupported dtype, or paired tensors have different dtypes."""


class ImageTooSmallError(ShapeError):
    """An image or volume is too small for the metric's window or pyramid."""


class FileFormatError(InputError):
    """A file is unreadable, truncated, of the wrong kind, or has an unsupported layout (e.g. 4-D NIfTI)."""


class GridMismatchError(InputError):
    """Two volumes are not on the same voxel grid (shape, spacing or orientation)."""


class WeightsError(KCrossError, ValueError):
    """Base class for problems with weight files."""


class ChecksumError(WeightsError):
    """A weight file's SHA-256 does not match the recorded value (tampered or truncated)."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """No weight file could be found locally or reached remotely."""


class _WithCliMessage(Exception):
    """An error whose ``str()`` says what to do in Python terms and :attr:`cli_message` in
    command-line terms (the CLIs print the latter)."""

    def __init__(self, message: str, cli_message: str | None = None) -> None:
        super().__init__(message)
        self.cli_message = cli_message or message

    def __reduce__(self) -> tuple[object, ...]:  # keep cli_message through pickling (worker processes)
        return (type(self), (str(self), self.cli_message))


class DataNotFoundError(_WithCliMessage, KCrossError, FileNotFoundError):
    """Training or evaluation data (the shared data folder, the extra set) is not where it was looked for."""


class EmptyReferenceError(_WithCliMessage, InputError):
    """The real (reference) volume has no brain to compare against: constant, empty or all background."""


class BackboneNotFoundError(WeightsNotFoundError):
    """ImageNet backbone weights (LPIPS, DISTS, DFD-VGG) are neither on disk nor downloadable.

    ``str()`` gives the advice in Python terms; :attr:`cli_message` in command-line terms.
    """

    def __init__(self, net: str, tried: list[str], npz_name: str, checkpoint_name: str, env_var: str) -> None:
        self.net, self.tried = net, list(tried)
        self._init_args = (net, list(tried), npz_name, checkpoint_name, env_var)
        where = (f"ImageNet {net} weights not found; tried: {'; '.join(tried)}")
        files = f"{checkpoint_name} (torchvision) or {npz_name}"
        super().__init__(
            f"{where}. On a machine with internet they are downloaded on first use; offline, run "
            f"kcross_metric.baselines.fetch_backbones() (or `kcross-score --fetch-backbones`) where "
            f"there is internet and copy the torch hub cache, or pass weights_path= a file {files} "
            f"(or its folder), or set ${env_var} to the folder holding it."
        )
        self.cli_message = (
            f"{where}. Run `kcross-score --fetch-backbones` once on a machine with internet (files go "
            f"to the torch hub cache, found automatically afterwards), or pass --imagenet-dir DIR (or "
            f"set {env_var}=DIR) with DIR holding {files}."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), self._init_args)


class UntrainedWeightsError(WeightsError):
    """Pretrained weights were requested but only an untrained architecture is available."""


class ConfigError(KCrossError, ValueError):
    """An argument or configuration value is invalid."""


class OutputExistsError(KCrossError, FileExistsError):
    """An output file exists and overwriting was not requested."""
