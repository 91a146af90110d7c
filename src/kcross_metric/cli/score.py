"""``kcross-score``: score synthesized NIfTI volumes with K-CROSS.

    kcross-score fake.nii.gz real.nii.gz [--source src.nii.gz] [--mask lesion.nii.gz] [--json]
    kcross-score --demo

Each volume is read in the package's axis convention (RAS+, axial slices along the first axis),
checked to lie on the real volume's grid (or resampled onto it with ``--resample``), normalized to
[0, 1] by its own robust percentiles inside the real volume's brain mask
(docs/io-and-normalization.md), and scored slice by slice. Exit codes: 0 success, 2 bad input
(one-line message; ``--debug`` shows the traceback), 1 other errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from ._common import EXIT_OK, atomic_write_text, check_output_path, run_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kcross-score",
        description="Score synthesized brain MR volumes with K-CROSS (higher is better, in [0, 1]).",
    )
    p.add_argument("fake", nargs="?", type=Path, help="synthesized volume (.nii/.nii.gz)")
    p.add_argument("real", nargs="?", type=Path, help="real target-modality volume (.nii/.nii.gz)")
    p.add_argument("--source", type=Path, default=None, help="source-modality volume the fake was made from")
    p.add_argument("--mask", type=Path, default=None, help="lesion mask volume (overrides the segmenter)")
    p.add_argument("--resample", action="store_true", help="resample fake/source/mask onto the real volume's grid")
    p.add_argument("--weights", type=Path, default=None, help="weights file (default: bundled weights)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--slice-batch-size", type=int, default=16, help="slices scored at once (memory bound)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--slices", action="store_true", help="include per-slice scores in the output")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON result to this file")
    p.add_argument("--overwrite", action="store_true", help="allow --out to replace an existing file")
    p.add_argument("--demo", action="store_true", help="score built-in phantom pairs (no files needed)")
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
    v = res["version"]
    sha = str(v.get("weights_sha256") or "")[:12]
    print(f"  kcross-metric {v.get('kcross_metric')}, weights {v.get('weights')} sha256 {sha}")


def _load_inputs(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from ..io import brain_mask, check_same_grid, load_volume, normalize_volume, resample_to

    real = load_volume(args.real)
    others = {"fake": args.fake, "source": args.source, "mask": args.mask}
    vols = {}
    for name, path in others.items():
        if path is None:
            continue
        vol = load_volume(path)
        if args.resample:
            vol = resample_to(vol, real, order=0 if name == "mask" else 1)
        else:
            check_same_grid(vol, real, names=(name, "real"))
        vols[name] = vol
    brain = brain_mask(real.data)
    brain_or_none = brain if brain.any() else None

    def tensor(arr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None, None].to(args.device)

    out = {"real": tensor(normalize_volume(real.data, brain_or_none)), "fake": tensor(normalize_volume(vols["fake"].data, brain_or_none))}
    if "source" in vols:
        out["source"] = tensor(normalize_volume(vols["source"].data, brain_or_none))
    if "mask" in vols:
        out["mask"] = tensor((vols["mask"].data > 0.5).astype(np.float32))
    return out


def _demo(args: argparse.Namespace) -> int:
    from ..metric import KCross
    from ..phantom import make_pair

    metric = KCross(args.weights, slice_batch_size=args.slice_batch_size).to(args.device)
    results = {}
    for label, blur, fade in (("mild", 0.5, 0.1), ("severe", 2.0, 0.9)):
        fake, real, source, _ = make_pair((256, 256), source="t1", target="t2", seed=0, blur_sigma=blur, lesion_fade=fade)
        res = metric.score(fake.to(args.device), real.to(args.device), source.to(args.device))
        results[f"phantom T1->T2, {label} synthesis error (blur {blur}, lesion fade {fade})"] = _result_dict(res, slices=False)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, res in results.items():
            _print_text(name, res)
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n", overwrite=args.overwrite)
    return EXIT_OK


def _body(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.out is not None:
        check_output_path(args.out, args.overwrite)  # fail before the slow part
    if args.demo:
        return _demo(args)
    if args.fake is None or args.real is None:
        parser.error("FAKE and REAL are required (or use --demo)")
    import torch

    from ..metric import KCross

    inputs = _load_inputs(args)
    metric = KCross(args.weights, slice_batch_size=args.slice_batch_size).to(args.device)
    with torch.no_grad():
        result = metric.score(inputs["fake"], inputs["real"], inputs.get("source"), inputs.get("mask"))
    res = _result_dict(result, slices=args.slices)
    res["fake"], res["real"] = str(args.fake), str(args.real)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        _print_text(str(args.fake), res)
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(res, indent=2) + "\n", overwrite=args.overwrite)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_main(lambda: _body(args, parser), args.debug, "kcross-score")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
