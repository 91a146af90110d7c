"""Dice of the bundled (or a run's) lesion segmenter per contrast and case.

    python benchmarks/segmenter_dice.py [--run runs/segmenter] [--slices 50 110]

Held-out: the BRATS 2013 validation cases (FLAIR, T1c; manual whole-tumour labels). For reference
only (not held out): the training cases' four contrasts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from kcross_metric.nets.segmenter import LesionSegmenter
from kcross_metric.train.data import build_slices
from kcross_metric.train.segmenter import dice_score
from kcross_metric.train.splits import TRAIN_CASES, VALIDATION_CASES
from kcross_metric.weights import load_safetensors


def load(run: Path | None) -> LesionSegmenter:
    model = LesionSegmenter()
    if run is not None:
        model.load_state_dict(load_safetensors(run / "model.safetensors"))
    else:
        from kcross_metric import KCross

        model = KCross().nets.segmenter
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=None, help="segmenter run dir (default: bundled weights)")
    p.add_argument("--slices", type=int, nargs=2, default=(50, 110))
    args = p.parse_args(argv)
    model = load(args.run)
    rows = ["| split | case | contrast | Dice | lesion slices |", "|---|---|---|---|---|"]
    pooled: dict[tuple[str, str], list[torch.Tensor]] = {}
    for split, cases in (("validation", VALIDATION_CASES), ("train (not held out)", TRAIN_CASES)):
        for case in cases:
            sets = build_slices((case,), slice_range=tuple(args.slices))
            for s in sets.values():
                if not s.has_lesion_label.any():
                    continue
                for contrast, images in s.images.items():
                    with torch.no_grad():
                        pred = torch.cat([torch.sigmoid(model(images[i:i + 16])) > 0.5 for i in range(0, len(images), 16)])
                    gt = s.lesion > 0.5
                    rows.append(f"| {split} | {case} | {contrast} | {dice_score(pred, gt):.3f} | {int(gt.flatten(1).any(1).sum())} |")
                    pooled.setdefault((split, contrast), []).append(torch.stack([(pred & gt).sum(), pred.sum(), gt.sum()]).float())
    rows += ["", "| split | contrast | pooled Dice |", "|---|---|---|"]
    for (split, contrast), parts in pooled.items():
        inter, p_sum, g_sum = torch.stack(parts).sum(0)
        rows.append(f"| {split} | {contrast} | {float(2 * inter / (p_sum + g_sum)):.3f} |")
    print(f"Axial slices {args.slices[0]}-{args.slices[1]}, whole-tumour masks, Dice pooled over slices.\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
