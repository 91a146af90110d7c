"""Shared CLI plumbing: exit codes, one-line errors, atomic writes that never clobber, and the
loading of one case that ``kcross-score`` and its folder mode share."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._util.files import atomic_write_text, check_output_path

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_ERROR",
    "EXIT_OK",
    "add_imagenet_option",
    "add_threads_option",
    "apply_imagenet_option",
    "apply_threads_option",
    "atomic_write_text",
    "check_output_path",
    "check_report_path",
    "load_inputs",
    "run_main",
    "set_folder_variable",
]

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2


def add_threads_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--threads", default="auto", metavar="N|auto",
        help="torch intra-op threads on the CPU (default auto: $OMP_NUM_THREADS if set, else the cores "
             "other work leaves free now, measured in a quarter of a second; see docs/benchmarks.md)")


def _is_cpu(device: Any) -> bool:
    import torch

    try:
        return torch.device(str(device).lower()).type == "cpu"
    except (RuntimeError, ValueError):  # an unknown device: the command reports it where it is used
        return False


def apply_threads_option(value: str, device: Any) -> int:
    """Set torch's intra-op threads from ``--threads`` (for CPU work); returns the number in use.

    ``auto`` keeps an explicit ``OMP_NUM_THREADS`` (torch already follows it) and otherwise takes
    :func:`kcross_metric._util.threads.recommended_threads`: on a machine where another job holds a
    core, two threads are 2x slower than one (docs/benchmarks.md, "Threads").
    """
    import torch

    from ..errors import ConfigError

    text = str(value).strip().lower()
    if text != "auto":
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"--threads must be a whole number >= 1 or 'auto', got {value!r}")
        torch.set_num_threads(n)
    elif _is_cpu(device) and not os.environ.get("OMP_NUM_THREADS"):
        from .._util.threads import recommended_threads

        torch.set_num_threads(recommended_threads())
    return torch.get_num_threads()


def check_report_path(report: Path, overwrite: bool, *, folder_mode: bool = False) -> Path:
    """``--report``: an .html path whose folder exists; an existing file only with ``--overwrite``."""
    from ..errors import ConfigError

    if report.is_dir():
        raise ConfigError(f"--report {report} is a directory, expected an .html file path")
    if report.exists() and not overwrite:
        hint = (" (in folder mode --overwrite also starts a fresh CSV; to rebuild the report from the "
                "CSV, remove the old report or give another --report path)") if folder_mode else ""
        raise ConfigError(f"--report {report} exists; pass --overwrite to replace it{hint}")
    return check_output_path(report, overwrite=True)


def run_main(body: Callable[[], int], debug: bool, prog: str) -> int:
    """Run a CLI body: bad input -> exit 2 with one line; other failures -> exit 1."""
    from ..errors import KCrossError

    try:
        return body()
    # OSError covers unreadable inputs and unwritable outputs (permissions, full disk, ...).
    except (KCrossError, ValueError, OSError, TypeError) as exc:
        if debug:
            traceback.print_exc()
        # errors raised deep in the library may say what to do in command-line words too
        print(f"{prog}: error: {getattr(exc, 'cli_message', None) or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def add_imagenet_option(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--imagenet-dir", type=Path, default=None, metavar="DIR",
        help="folder holding the ImageNet backbones of LPIPS/DISTS/DFD-VGG (torchvision's "
        "alexnet-owt-7be5be79.pth / vgg16-397923af.pth, or the project's .npz files); default: "
        "$KCROSS_IMAGENET_DIR, the torch hub cache, else downloaded there on first use",
    )


def set_folder_variable(flag: str, folder: Path | None, variable: str) -> None:
    """A folder flag that the library reads through an environment variable: check that the
    folder exists, then set the variable for this process (nothing when the flag is not given)."""
    from ..errors import ConfigError

    if folder is None:
        return
    if not folder.is_dir():
        raise ConfigError(f"{flag} {folder}: no such folder")
    os.environ[variable] = str(folder.expanduser().resolve())


def apply_imagenet_option(imagenet_dir: Path | None) -> None:
    """Make ``--imagenet-dir`` the place the backbones are looked for first (for this process)."""
    from ..baselines._backbones import ENV_VAR

    set_folder_variable("--imagenet-dir", imagenet_dir, ENV_VAR)


def load_inputs(
    fake: Path,
    real: Path,
    source: Path | None = None,
    mask: Path | None = None,
    *,
    resample: bool = False,
    device: Any = "cpu",
) -> dict[str, Any]:
    """Load one case as (1,1,D,H,W) float32 tensors in [0, 1] (``mask``: 0/1), as ``kcross-score`` does.

    Every volume is checked to lie on the real volume's grid (or resampled onto it) and normalized
    by its own robust percentiles inside the real volume's brain mask.
    """
    import numpy as np
    import torch

    from ..data.io import (
        brain_mask,
        check_same_grid,
        load_volume,
        normalize_volume,
        resample_to,
    )

    real_vol = load_volume(real)
    others = {"fake": fake, "source": source, "mask": mask}
    vols = {}
    for name, path in others.items():
        if path is None:
            continue
        vol = load_volume(path)
        if resample:
            vol = resample_to(vol, real_vol, order=0 if name == "mask" else 1)
        else:
            check_same_grid(vol, real_vol, names=(name, "real"))
        vols[name] = vol
    brain = brain_mask(real_vol.data)
    if not brain.any():
        from ..errors import EmptyReferenceError

        raise EmptyReferenceError(f"real volume {real} is constant (e.g. all zero): no brain to compare against; "
                                  "check the file")
    brain_or_none = brain

    def tensor(arr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None, None].to(device)

    out = {
        "real": tensor(normalize_volume(real_vol.data, brain_or_none)),
        "fake": tensor(normalize_volume(vols["fake"].data, brain_or_none)),
    }
    if "source" in vols:
        out["source"] = tensor(normalize_volume(vols["source"].data, brain_or_none))
    if "mask" in vols:
        out["mask"] = tensor((vols["mask"].data > 0.5).astype(np.float32))
    return out
