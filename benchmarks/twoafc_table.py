"""2AFC accuracy of K-CROSS (and its branches, as the paper's ablation) against every baseline
on the clinically ordered pair set built from the validation cases.

    python -m kcross_metric.train.ratedsets.twoafc --out runs/twoafc_val --split validation --n-pairs-per-rule 100
    python benchmarks/twoafc_table.py runs/twoafc_val/pairs.csv --out docs/results-twoafc.md

Accuracy = fraction of pairs where the metric prefers the side that is better by construction
(ties count 0.5); 95 % percentile bootstrap CIs over pairs (seeded). These are constructed
orderings, not radiologist judgments (docs/datasets/twoafc.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kcross_metric import KCross, create_metric, metric_info
from kcross_metric.evaluation import bootstrap_ci, two_afc_per_pair
from kcross_metric.train.ratedsets.twoafc import load_twoafc_set

NOTE = """
**Read this before quoting the table.** K-CROSS's score networks were fitted (stage 2) on pairs made
by the same generator from the *training* cases, so on these held-out pairs K-CROSS is evaluated
in-distribution while the baselines were never fitted to these orderings: the comparison measures
whether the networks learned the constructed orderings and generalize them to unseen subjects, not
that K-CROSS is a better judge of image quality than the baselines in general. The
`lesion_vs_global` rule pits a lesion edit against a global distortion of equal MSE, so MAE is at 0
and PSNR at chance by construction. None of this is radiologist agreement
(docs/radiologist-agreement.md).
"""

BASELINES = ("mae", "psnr", "ssim", "ms_ssim", "nlpd", "gmsd", "lpips_alex", "lpips_vgg", "dists")


def kcross_variants(metric: KCross, fake: torch.Tensor, real: torch.Tensor, source: torch.Tensor | None) -> dict[str, np.ndarray]:
    out: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for i in range(0, fake.shape[0], 8):
            sl = slice(i, i + 8)
            feats = metric.slice_features(fake[sl], real[sl], source[sl] if source is not None else None, None)
            q = metric.qualities(feats)
            values = {
                "K-CROSS": q["score"],
                "K-CROSS (mean combine)": 0.5 * (q["complex"] + q["natural"]),
                "K-CROSS complex branch": q["complex"],
                "K-CROSS tumor branch": q["tumor"],
                "K-CROSS structure branch": q["structure"],
                "K-CROSS without source": metric.qualities(
                    metric.slice_features(fake[sl], real[sl], None, None))["score"] if source is not None else q["score"],
            }
            for k, v in values.items():
                out.setdefault(k, []).append(v)
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pairs", type=Path)
    p.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--baselines", default=",".join(BASELINES))
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    pairs = load_twoafc_set(args.pairs)
    ref = torch.cat([q.reference for q in pairs])
    a = torch.cat([q.a for q in pairs])
    b = torch.cat([q.b for q in pairs])
    src = torch.cat([q.source for q in pairs]) if all(q.source is not None for q in pairs) else None
    better = np.array([q.better for q in pairs])
    rules = np.array([q.rule for q in pairs])
    scores: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
    start = time.time()
    metric = KCross(args.weights)
    va, vb = kcross_variants(metric, a, ref, src), kcross_variants(metric, b, ref, src)
    for k in va:
        scores[k] = (va[k], vb[k], True)
    for name in [n for n in args.baselines.split(",") if n]:
        m = create_metric(name, data_range=1.0)
        with torch.no_grad():
            sa = torch.cat([m(a[i:i + 16], ref[i:i + 16]) for i in range(0, len(a), 16)]).numpy()
            sb = torch.cat([m(b[i:i + 16], ref[i:i + 16]) for i in range(0, len(b), 16)]).numpy()
        scores[name] = (sa, sb, metric_info(name).higher_is_better)
    rule_names = sorted(set(rules))
    header = "| metric | all pairs | " + " | ".join(rule_names) + " |"
    lines = [header, "|" + "---|" * (2 + len(rule_names))]
    for name, (sa, sb, hib) in scores.items():
        credit = two_afc_per_pair(sa, sb, better, higher_is_better=hib)
        cells = []
        for sel in [np.ones_like(rules, dtype=bool)] + [rules == r for r in rule_names]:
            c = credit[sel]
            ci = bootstrap_ci(np.mean, c, n_boot=args.n_boot, seed=0)
            cells.append(f"{c.mean():.3f} [{ci.low:.3f}, {ci.high:.3f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    counts = ", ".join(f"{r}: {int((rules == r).sum())}" for r in rule_names)
    text = (
        f"2AFC accuracy with 95% bootstrap CIs ({args.n_boot} resamples) on `{args.pairs}` "
        f"({len(pairs)} pairs; {counts}); weights sha256 `{str(metric.version.get('weights_sha256'))[:16]}`; "
        f"{time.time() - start:.0f} s.\n\n" + "\n".join(lines) + "\n"
    )
    text += NOTE
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
