"""Dice of the bundled (or a run's) lesion segmenter on the validation subjects, per contrast.

    KCROSS_EXTRA_DIR=/path/to/extra python benchmarks/segmenter_dice.py [--run RUN] --out docs/results-segmenter.md

Validation subjects (:data:`kcross_metric.train.splits.VALIDATION_CASES` with a lesion label, present
on this machine): gliomas with whole-tumour labels (pooled Dice per contrast over every evaluated
slice of every subject, and per subject) and the multiple-sclerosis patient (lesion-wise: a reference
lesion, a 3-D connected component, is *detected* when a predicted voxel touches it; a predicted
component touching none is a *false positive*). Each contrast is also segmented after a fixed,
synthesis-like degradation (Gaussian blur sigma 1 px, then Rician noise sigma 0.02): K-CROSS segments
the fake image too. Axial slices ``--slices`` of the BraTS grid (shifted on other grids).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from kcross_metric.core.nets.segmenter import LesionSegmenter, segmenter_channels_of, segmenter_norm_of
from kcross_metric.data import distortions as D
from kcross_metric.train.data import available_cases, build_slices
from kcross_metric.train.splits import VALIDATION_CASES, subject
from kcross_metric.weights import load_safetensors


def load(run: Path | None, weights: str | None) -> tuple[LesionSegmenter, str]:
    if run is not None:
        state = load_safetensors(run / "model.safetensors")
        model = LesionSegmenter(segmenter_channels_of(state), segmenter_norm_of(state))
        model.load_state_dict(state)
        return model.eval(), f"run `{run}`"
    from kcross_metric import KCross

    kc = KCross(weights=weights)
    return kc.nets.segmenter.eval(), f"weights sha256 {str(kc.weights_info.get('weights_sha256'))[:16]}…"


def predict(model: LesionSegmenter, images: torch.Tensor, degrade: bool) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, len(images), 16):
            x = images[i : i + 16]
            if degrade:
                x = D.rician_noise(D.gaussian_blur(x, 1.0), 0.02, generator=i)
            out.append(torch.sigmoid(model(x)) > 0.5)
    return torch.cat(out)


def lesion_wise(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int]:
    """(detected, missed, false positives) of 3-D connected components (26-connectivity)."""
    structure = np.ones((3, 3, 3), bool)
    gt_lab, n_gt = ndimage.label(gt, structure)
    pred_lab, n_pred = ndimage.label(pred, structure)
    detected = len(set(np.unique(gt_lab[pred & (gt_lab > 0)])) - {0})
    fp = n_pred - len(set(np.unique(pred_lab[gt & (pred_lab > 0)])) - {0})
    return detected, n_gt - detected, fp


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=None, help="segmenter run dir (default: the weight file)")
    p.add_argument("--weights", default=None, help="K-CROSS weight file (default: the bundled one)")
    p.add_argument("--slices", type=int, nargs=2, default=(20, 140))
    p.add_argument("--out", type=Path, default=None, help="markdown file (default: print)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", nargs="*", default=None, help="only these validation subjects (quick checks)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    model, name = load(args.run, args.weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = available_cases(tuple(c for c in VALIDATION_CASES if subject(c).label != "none"
                                      and (args.cases is None or c in args.cases)))
    per_case = ["| subject | lesion | contrast | Dice | Dice degraded | lesion slices |", "|---|---|---|---|---|---|"]
    pooled: dict[tuple[str, str, bool], np.ndarray] = {}
    ms_rows = ["| subject | contrast | input | detected | missed | false positives | voxel Dice |", "|---|---|---|---|---|---|---|"]
    for case in cases:
        kind = subject(case).lesion
        for s in build_slices((case,), slice_range=tuple(args.slices)).values():
            gt = s.lesion > 0.5
            for contrast, images in s.images.items():
                cells = []
                for degraded in (False, True):
                    pred = predict(model, images, degraded)
                    counts = np.array([float((pred & gt).sum()), float(pred.sum()), float(gt.sum())])
                    group = "ms" if kind == "ms" else "glioma"
                    pooled[(group, contrast, degraded)] = pooled.get((group, contrast, degraded), 0) + counts
                    dice = 2 * counts[0] / max(counts[1] + counts[2], 1.0)
                    cells.append(f"{dice:.3f}")
                    if kind == "ms":
                        det, miss, fp = lesion_wise(pred[:, 0].numpy(), gt[:, 0].numpy())
                        ms_rows.append(f"| {case} | {contrast} | {'degraded' if degraded else 'clean'} | {det} | "
                                       f"{miss} | {fp} | {dice:.3f} |")
                per_case.append(f"| {case} | {kind} | {contrast} | {cells[0]} | {cells[1]} | "
                                f"{int(gt.flatten(1).any(1).sum())} |")
    summary = ["| lesions | contrast | pooled Dice | pooled Dice, degraded input |", "|---|---|---|---|"]
    for group in ("glioma", "ms"):
        for contrast in ("flair", "t2", "t1c", "t1"):
            if (group, contrast, False) in pooled:
                d = [2 * pooled[(group, contrast, g)][0] / max(pooled[(group, contrast, g)][1] + pooled[(group, contrast, g)][2], 1.0)
                     for g in (False, True)]
                summary.append(f"| {group} | {contrast} | {d[0]:.3f} | {d[1]:.3f} |")
    text = "\n".join([
        "# Segmenter Dice on the validation subjects",
        "",
        "Generated by `python benchmarks/segmenter_dice.py " + " ".join(argv if argv is not None else sys.argv[1:])
        + f"` ({time.time() - start:.0f} s); segmenter of {name}.",
        f"Axial slices {args.slices[0]}-{args.slices[1]} of the BraTS grid (shifted on the MS patients' MNI grid), "
        "whole-tumour (glioma) or every-lesion (MS) masks, `sigmoid > 0.5`, Dice pooled over slices and subjects. "
        f"Subjects: {', '.join(cases)}.",
        "",
        *summary,
        "",
        "## Multiple-sclerosis lesions, lesion-wise",
        "",
        *ms_rows,
        "",
        "## Per subject",
        "",
        *per_case,
    ]) + "\n"
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from _paths import name_checkout_shared

    name_checkout_shared()
    sys.exit(main())
