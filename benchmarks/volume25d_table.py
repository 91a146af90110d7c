"""2AFC accuracy of 2-D metrics on single planes vs 2.5D on constructed volume pairs.

    python benchmarks/volume25d_table.py --out docs/results-25d.md

Data: the BraTS 2023 validation case of :data:`kcross_metric.train.splits.VALIDATION_CASES`
(``BraTS-GLI-00001-000``: T1 = ``t1n``, T2 = ``t2w``, FLAIR = ``t2f``), loaded and normalized with
:func:`kcross_metric.train.data.load_case`. To keep the CPU cost low every contrast is
downsampled 2x per axis (2x2x2 mean pooling, 155x240x240 -> 78x120x120 at 2 mm) and cropped to
the bounding box of the brain plus 2 voxels (``--downsample``, ``--margin``).

Pairs: for each distortion family, each fake contrast (T2 and FLAIR; the real T1 is K-CROSS's
source) and each replicate, two distorted copies of the real volume are made, one with a severity
drawn from the family's mild range and one from its strong range, each with its own random seed;
the mild copy is better by construction. Which side (a/b) is the mild one is random. Everything
follows ``--seed``. Families (severity ranges in :data:`FAMILIES`):

* ``undersample`` (slice-wise k-space): every axial slice is undersampled along its last in-plane
  axis (left-right, the phase-encoding columns of :mod:`kcross_metric.data.distortions`) with its own
  equispaced cartesian mask, zero-filled magnitude reconstruction;
* ``motion`` (slice-wise k-space): per axial slice, 30 % of the phase-encoding lines acquired
  with a random rigid in-plane shift;
* ``blur`` (3-D isotropic Gaussian), ``noise`` (3-D Rician), ``bias`` (smooth 3-D multiplicative
  field from low-order cosines), ``contrast`` (gamma change, voxel-wise).

Scoring: :func:`kcross_metric.evaluation.volume25d.score_25d` one plane at a time, so that only every
``--stride``-th slice of that plane is scored (default 3, offset ``stride // 2``; brain mask from
the real volume as in ``score_25d``); "2.5D" is the mean of the three plane values, as
``score_25d`` computes it. With ``--stride 1`` every slice is scored. Accuracy: 2AFC credit per
pair (ties 0.5), seeded percentile bootstrap 95 % CIs over pairs
(:func:`kcross_metric.evaluation.bootstrap_ci`). These are constructed orderings, not
radiologist ratings. Per-plane sensitivity: the mean, over a family's pairs, of each plane's
oriented margin (score of the mild copy minus score of the strong copy, sign-flipped for
lower-is-better metrics) divided by the 2.5D margin.

Score cache: per-pair, per-view scores of every metric are kept in ``<cache-dir>/scores_<metric>.csv``
(default ``runs/volume25d``; ``--no-cache`` disables it), keyed by pair id, a SHA-1 of the pair's
arrays (a, b, real, source) and the metric's settings plus the stride, with the logic of
``benchmarks/twoafc_table.py`` (:mod:`kcross_metric.evaluation.score_cache`); a re-run (e.g. to change
the page text) only scores what changed.

Runtime: about 0.5 min of CPU per volume with 8 metrics on one thread (the three VGG16-based
metrics, DISTS and the two DFD presets, take most of it); timings are printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from kcross_metric._util.files import atomic_write_text
from kcross_metric.evaluation.volume25d_table import Volume25DRun, scoring_cost, volume25d_page
from kcross_metric.evaluation.volume_pairs import (
    DEFAULT_CONTRASTS,
    DEFAULT_METRICS,
    FAMILIES,
    build_metrics,
    build_pairs,
    evaluate_pairs,
    load_validation_volumes,
)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="write the markdown page here")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS))
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--replicates", type=int, default=1, help="pairs per (family, contrast)")
    p.add_argument("--downsample", type=int, default=2)
    p.add_argument("--margin", type=int, default=2)
    p.add_argument("--stride", type=int, default=3, help="score every stride-th slice of each plane")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--weights", type=Path, default=None, help="K-CROSS weights (default: bundled)")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/volume25d"),
                   help="folder of the score caches scores_<metric>.csv (default: runs/volume25d)")
    p.add_argument("--no-cache", action="store_true", help="score everything, read and write no cache")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    t_start, c_start = time.perf_counter(), time.process_time()
    case_id, vols, orig_shape = load_validation_volumes(args.downsample, args.margin)
    t_load = time.perf_counter() - t_start
    print(f"loaded {case_id} in {t_load:.1f} s: {orig_shape} -> {tuple(vols['t2'].shape[-3:])}", flush=True)
    t0 = time.perf_counter()
    pairs = build_pairs(vols, families=[f for f in args.families.split(",") if f],
                        replicates=args.replicates, seed=args.seed)
    t_pairs = time.perf_counter() - t0
    print(f"{len(pairs)} pairs built in {t_pairs:.1f} s", flush=True)
    metrics = build_metrics([n for n in args.metrics.split(",") if n], args.weights)
    sources = {c: vols[s] for c, s in DEFAULT_CONTRASTS.items()}
    cache_dir = None if args.no_cache else args.cache_dir
    res = evaluate_pairs(pairs, vols, sources, metrics, stride=args.stride, n_boot=args.n_boot, seed=args.seed,
                         cache_dir=cache_dir, log=lambda s: print(s, flush=True))
    run = Volume25DRun(case_id, orig_shape, downsample=args.downsample, margin=args.margin, stride=args.stride,
                       replicates=args.replicates, seed=args.seed, n_boot=args.n_boot, threads=args.threads,
                       out=args.out, seconds=time.perf_counter() - t_start, cpu_seconds=time.process_time() - c_start,
                       load_seconds=t_load, pairs_seconds=t_pairs)
    text = volume25d_page(res, vols, run, scoring_cost(res, run, cache_dir))
    print(text)
    print(f"total {run.seconds:.0f} s wall-clock, {run.cpu_seconds:.0f} s CPU", flush=True)
    if args.out is not None:
        atomic_write_text(args.out, text, overwrite=True)
    return 0


if __name__ == "__main__":
    from _paths import name_checkout_shared

    name_checkout_shared()
    sys.exit(main())
