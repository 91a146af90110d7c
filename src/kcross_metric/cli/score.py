"""``kcross-score``: score synthesized NIfTI volumes with K-CROSS.

    kcross-score fake.nii.gz real.nii.gz [--source src.nii.gz] [--mask lesion.nii.gz] [--json]
    kcross-score FAKE_DIR REAL_DIR [--source-dir DIR] [--mask-dir DIR] --out scores.csv
                 [--metrics kcross,ssim,psnr,...] [--per-slice] [--report report.html]
    kcross-score --demo [--report demo.html]
    kcross-score --fetch-backbones [--imagenet-dir DIR]

Each volume is read in the package's axis convention (RAS+, axial slices along the first axis),
checked to lie on the real volume's grid (or resampled onto it with ``--resample``), normalized to
[0, 1] by its own robust percentiles inside the real volume's brain mask
(docs/io-and-normalization.md), and scored slice by slice. With two folders, files are paired by
name and every pair is scored into a resumable CSV (:mod:`.folder`). ``--report`` writes a
self-contained HTML report (:mod:`kcross_metric.report`). Exit codes: 0 success, 2 bad input
(one-line message; ``--debug`` shows the traceback), 1 other errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import (
    EXIT_OK,
    add_imagenet_option,
    add_threads_option,
    apply_imagenet_option,
    apply_threads_option,
    atomic_write_text,
    check_output_path,
    check_report_path,
    load_inputs,
    run_main,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kcross-score",
        description="Score synthesized brain MR volumes with K-CROSS (higher is better, in [0, 1]). "
        "FAKE and REAL are two volumes (NIfTI; MetaImage, NRRD or DICOM series folders with "
        "kcross-metric[sitk]), or two folders whose volume files are paired by name.",
    )
    p.add_argument("fake", nargs="?", type=Path,
                   help="synthesized volume (.nii/.nii.gz; .mha/.mhd/.nrrd/.nhdr or a DICOM series folder with "
                        "kcross-metric[sitk]), or a folder of volume files")
    p.add_argument("real", nargs="?", type=Path, help="real target-modality volume (same formats), or a folder")
    p.add_argument("--source", type=Path, default=None, help="source-modality volume the fake was made from")
    p.add_argument("--mask", type=Path, default=None, help="lesion mask volume (overrides the segmenter)")
    p.add_argument("--resample", action="store_true", help="resample fake/source/mask onto the real volume's grid")
    p.add_argument("--weights", type=Path, default=None, help="weights file (default: bundled weights)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--slice-batch-size", type=int, default=4, help="slices scored at once (memory bound)")
    add_threads_option(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--slices", action="store_true", help="include per-slice scores in the output")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="also write the JSON result to this file (folder mode: the CSV of scores, resumed if it exists)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="allow --out/--report to replace an existing file (folder mode: start a fresh CSV)",
    )
    p.add_argument("--demo", action="store_true", help="score built-in phantom pairs (no files needed)")
    g = p.add_argument_group("folders and reports")
    g.add_argument("--source-dir", type=Path, default=None, help="folder mode: source volumes, paired by name")
    g.add_argument("--mask-dir", type=Path, default=None, help="folder mode: lesion masks, paired by name")
    g.add_argument(
        "--metrics",
        default=None,
        help="comma-separated registry metrics besides K-CROSS, e.g. kcross,ssim,psnr,lpips_alex; 3-D "
        "where the metric supports it and the volume is large enough, else the mean over the axial slices "
        "K-CROSS scored",
    )
    g.add_argument("--per-slice", action="store_true", help="folder mode: also write per-slice rows to OUT_slices.csv")
    g.add_argument("--report", type=Path, default=None, help="write a self-contained HTML report to this file")
    g.add_argument("--report-slices", type=int, default=3, help="worst slices shown per volume in the report (default 3)")
    add_imagenet_option(g)
    g.add_argument(
        "--fetch-backbones", action="store_true",
        help="download the ImageNet backbones of LPIPS/DISTS/DFD-VGG (SHA-256 prefix checked) into the "
        "torch hub cache, or into --imagenet-dir DIR, and exit; for machines that will run offline",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _result_dict(result: Any, *, slices: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kcross": float(result.score[0]),
        "branches": {k: float(v[0]) for k, v in result.branches.items()},
        "higher_is_better": True,
        "version": {k: v for k, v in result.version.items()},
    }
    if result.slice_used is not None:
        used = result.slice_used[0]
        out["slices_scored"] = int(used.sum())
        out["slices_total"] = int(used.numel())
        out["slices_with_lesion"] = int(result.has_lesion[0].sum())
        if slices:
            out["slice_scores"] = [None if not u else float(s) for s, u in zip(result.slice_scores[0], used)]
    return out


def _print_text(name: str, res: dict[str, Any]) -> None:
    b = res["branches"]
    print(f"{name}: K-CROSS {res['kcross']:.4f}  (higher is better, range [0, 1])")
    print(f"  branches: complex {b['complex']:.4f}  tumor {b['tumor']:.4f}  structure {b['structure']:.4f}")
    if "slices_scored" in res:
        print(f"  slices scored {res['slices_scored']}/{res['slices_total']}, with lesion {res['slices_with_lesion']}")
    if res.get("metrics"):
        print("  " + "  ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items()))
    v = res["version"]
    sha = str(v.get("weights_sha256") or "")[:12]
    print(f"  kcross-metric {v.get('kcross_metric')}, weights {v.get('weights')} sha256 {sha}")


def _load_inputs(args: argparse.Namespace) -> dict[str, Any]:
    return load_inputs(args.fake, args.real, args.source, args.mask, resample=args.resample, device=args.device)


def _baselines(args: argparse.Namespace) -> Any:
    from .folder import BaselineSet, parse_metrics

    names = parse_metrics(args.metrics)
    return BaselineSet(names, args.device, args.slice_batch_size) if names else None


def _write_single_report(args: argparse.Namespace, entries: list[Any]) -> None:
    from ..report import build_report, write_report

    write_report(args.report, build_report(entries, worst_n=args.report_slices), overwrite=args.overwrite)


def _check_report_path(args: argparse.Namespace) -> None:
    from ..errors import ConfigError

    if args.report_slices < 0:
        raise ConfigError(f"--report-slices must be >= 0, got {args.report_slices}")
    if args.report is not None:
        check_report_path(args.report, args.overwrite)


def _demo(args: argparse.Namespace) -> int:
    import torch

    from ..core.metric import KCross
    from ..data.phantom import make_pair
    from ..report import ReportEntry

    _check_report_path(args)
    metric = KCross(args.weights, slice_batch_size=args.slice_batch_size).to(args.device)
    baselines = _baselines(args)
    results, entries = {}, []
    for label, blur, fade in (("mild", 0.5, 0.1), ("severe", 2.0, 0.9)):
        fake, real, source, _ = make_pair((256, 256), source="t1", target="t2", seed=0, blur_sigma=blur, lesion_fade=fade)
        fake, real, source = fake.to(args.device), real.to(args.device), source.to(args.device)
        name = f"phantom T1->T2, {label} synthesis error (blur {blur}, lesion fade {fade})"
        with torch.no_grad():
            scored = metric.score(fake, real, source)
            explanation = metric.explain(fake, real, source) if args.report is not None else None
        results[name] = _result_dict(scored, slices=False)
        values = baselines(fake, real).volume if baselines is not None else {}
        if values:
            results[name]["metrics"] = values
        if explanation is not None:
            entries.append(ReportEntry(name, explanation, fake, real, source, values))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, res in results.items():
            _print_text(name, res)
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n", overwrite=args.overwrite)
    if args.report is not None:
        _write_single_report(args, entries)
    return EXIT_OK


def _is_dicom_series(path: Path) -> bool:
    """A folder read as one volume (a DICOM series): it holds files, none of them a volume file."""
    from .folder import volume_key

    files = [f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")]
    return bool(files) and all(volume_key(f) is None for f in files)


def _folder_mode(args: argparse.Namespace) -> bool:
    from ..errors import ConfigError

    if args.fake is None or args.real is None:
        return False
    dirs = (args.fake.is_dir() and not _is_dicom_series(args.fake), args.real.is_dir() and not _is_dicom_series(args.real))
    if dirs[0] != dirs[1]:
        def kind(path: Path, is_folder: bool) -> str:
            return "folder of volumes" if is_folder else ("DICOM series" if path.is_dir() else "file")

        raise ConfigError(
            f"FAKE and REAL must both be volumes (files or DICOM series) or both be folders of volumes; got "
            f"{args.fake} ({kind(args.fake, dirs[0])}) and {args.real} ({kind(args.real, dirs[1])})"
        )
    return dirs[0]


def _fetch_backbones(args: argparse.Namespace) -> int:
    from ..baselines import fetch_backbones
    from ..errors import ConfigError

    if args.fake is not None or args.real is not None or args.demo or args.metrics:
        raise ConfigError("--fetch-backbones only downloads (into the torch hub cache or --imagenet-dir DIR); "
                          "run scoring as a separate command")
    if args.imagenet_dir is not None and not args.imagenet_dir.is_dir():
        raise ConfigError(f"--imagenet-dir {args.imagenet_dir}: no such folder (create it first)")
    for net, path in fetch_backbones(folder=args.imagenet_dir).items():
        print(f"{net}: {path}")
    if args.imagenet_dir is not None:
        print(f"use them with --imagenet-dir {args.imagenet_dir} or KCROSS_IMAGENET_DIR={args.imagenet_dir}")
    return EXIT_OK


def _body(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..errors import ConfigError

    if args.fetch_backbones:
        return _fetch_backbones(args)
    apply_imagenet_option(args.imagenet_dir)
    folder = _folder_mode(args)
    if args.out is not None and not folder:
        check_output_path(args.out, args.overwrite)  # fail before the slow part
    from .._util.checks import check_device

    args.device = check_device(args.device)  # a one-line error, not a torch traceback
    args.threads_used = apply_threads_option(args.threads, args.device)
    if folder:
        from .folder import run_folder

        _check_report_path(args)
        return run_folder(args)
    for opt, value in (("--source-dir", args.source_dir), ("--mask-dir", args.mask_dir)):
        if value is not None:
            raise ConfigError(f"{opt} is for folder mode (FAKE and REAL folders); for one file use {opt[:-4]} FILE")
    if args.per_slice:
        raise ConfigError("--per-slice is for folder mode; for one file use --slices (with --json or --out)")
    if args.demo:
        return _demo(args)
    if args.fake is None or args.real is None:
        parser.error("FAKE and REAL are required (or use --demo)")
    _check_report_path(args)
    import torch

    from ..core.metric import KCross

    inputs = _load_inputs(args)
    # each reference is scored once here: no reference cache (its memory would buy nothing)
    metric = KCross(args.weights, slice_batch_size=args.slice_batch_size, reference_cache_mb=0).to(args.device)
    baselines = _baselines(args)
    scored = (inputs["fake"], inputs["real"], inputs.get("source"), inputs.get("mask"))
    with torch.no_grad():
        result = metric.explain(*scored) if args.report is not None else metric.score(*scored)
    res = _result_dict(result, slices=args.slices)
    res["fake"], res["real"] = str(args.fake), str(args.real)
    res["threads"] = args.threads_used
    used = result.slice_used[0] if result.slice_used is not None else None
    bvals = baselines(inputs["fake"], inputs["real"], used) if baselines is not None else None
    values = bvals.volume if bvals is not None else {}
    if values:
        res["metrics"] = values
    if bvals is not None and bvals.slicewise_fallback:
        res["metrics_slicewise"] = bvals.slicewise_fallback  # too small for their 3-D window
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        _print_text(str(args.fake), res)
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(res, indent=2) + "\n", overwrite=args.overwrite)
    if args.report is not None:
        from ..report import ReportEntry

        entry = ReportEntry(args.fake.name, result, inputs["fake"], inputs["real"], inputs.get("source"), values)
        _write_single_report(args, [entry])
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_main(lambda: _body(args, parser), args.debug, "kcross-score")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
