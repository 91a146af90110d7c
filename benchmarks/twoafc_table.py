"""2AFC accuracy of K-CROSS (and its branches, as the paper's ablation) against every baseline and the
deep feature distances (DFD) on the clinically ordered pair set built from the validation cases.

    kcross-train pairs --out runs/twoafc_val --split validation --n-pairs-per-rule 100
    python benchmarks/twoafc_table.py runs/twoafc_val/pairs.csv --out docs/results-twoafc.md

Accuracy = fraction of pairs where the metric prefers the side that is better by construction
(ties count 0.5); 95 % percentile bootstrap CIs over pairs (seeded). These are constructed
orderings, not radiologist judgments (docs/datasets/twoafc.md).

Score cache: the per-pair scores of every metric are kept in ``scores_<metric>.csv`` beside the
pairs CSV (``--cache-dir`` to put them elsewhere, ``--no-cache`` to disable). A row is keyed by
pair id, a SHA-1 digest of the pair's arrays (reference, a, b, source) and the metric's settings
(class, its parameters and a SHA-1 of its state dict, i.e. its weights), so a re-run only computes
the metrics or pairs that changed; a regenerated pair set or new weights are recomputed, never
read from a stale row. Scores are stored with full float precision (``repr``), so a table made
from the cache is identical to one computed afresh.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kcross_metric import KCross, create_metric, metric_info
from kcross_metric._util.files import atomic_write_text
from kcross_metric.errors import ConfigError, FileFormatError
from kcross_metric.evaluation import bootstrap_ci, two_afc_per_pair
from kcross_metric.train.ratedsets.twoafc import TwoAFCPair, load_twoafc_set

NOTE = """
**Read this before quoting the table.** K-CROSS's score networks were fitted (stage 2) on pairs made
by the same generator from the *training* subjects (with severity ladders and lesion rules; see the
model card of the weights), so on these held-out pairs K-CROSS is evaluated
in-distribution while the baselines were never fitted to these orderings: the comparison measures
whether the networks learned the constructed orderings and generalize them to unseen subjects, not
that K-CROSS is a better judge of image quality than the baselines in general. The
`lesion_vs_global` rule pits a lesion edit against a global distortion of equal MSE, so MAE is at 0
and PSNR at chance by construction. Where K-CROSS loses: its structure branch alone is at chance
({structure_all:.2f}) and prefers the lesion edit in most `lesion_vs_global` pairs; the tumor branch
alone ({tumor_all:.2f}) is {tumor_vs_complex} the complex branch ({complex_all:.2f}).{same_choices}
"""

DFD_NOTE = """
**Deep feature distances.** `dfd_vgg16` (ImageNet VGG16 feature MSE), `dfd_random` (the same
network with seeded random weights, the literature's control) and `dfd_ssfd` (the in-domain
self-supervised MR encoder; see [DFD and 2.5D](dfd-and-25d.md)) reach {vgg_all:.3f} / {random_all:.3f} /
{ssfd_all:.3f} on all pairs: {sf_text} on `same_family`, and {vgg_lg:.2f} / {random_lg:.2f} / {ssfd_lg:.2f}
on `lesion_vs_global`. Pairs of that rule won (lesion-preserving side preferred) per global
distortion: {per_global}. {dfd_extra}
None of this is radiologist agreement (docs/radiologist-agreement.md).
"""

BASELINES = (
    "mae", "psnr", "ssim", "ms_ssim", "nlpd", "gmsd", "lpips_alex", "lpips_vgg", "dists",
    "dfd_vgg16", "dfd_random", "dfd_ssfd",
)  # fmt: skip
KCROSS_VARIANTS = (
    "K-CROSS",
    "K-CROSS (mean combine)",
    "K-CROSS complex branch",
    "K-CROSS tumor branch",
    "K-CROSS structure branch",
    "K-CROSS without source",
)
CACHE_COLUMNS = ("pair_id", "digest", "settings", "column", "score_a", "score_b")

ScorePair = tuple[np.ndarray, np.ndarray]


# ----------------------------------------------------------------------------- score cache


def pair_digest(pair: TwoAFCPair) -> str:
    """SHA-1 (hex) of the arrays a metric sees for a pair: reference, a, b and source (shape + bytes)."""
    h = hashlib.sha1()
    for name in ("reference", "a", "b", "source"):
        t = getattr(pair, name)
        h.update(name.encode())
        if t is None:
            h.update(b"none")
            continue
        arr = np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def metric_settings(module: nn.Module) -> str:
    """What determines a metric's scores: class, parameters (``extra_repr``) and a SHA-1 of the state dict."""
    h = hashlib.sha1()
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(np.ascontiguousarray(value.detach().cpu().numpy()).tobytes())
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}({module.extra_repr()}) state_sha1={h.hexdigest()[:16]}"


def _read_cache(path: Path) -> dict[tuple[str, str, str, str], tuple[float, float]]:
    if not path.is_file():
        return {}
    out: dict[tuple[str, str, str, str], tuple[float, float]] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != CACHE_COLUMNS:
            raise FileFormatError(f"{path} is not a score cache: columns {reader.fieldnames}, expected "
                                  f"{list(CACHE_COLUMNS)} (delete it to rebuild)")
        for row in reader:
            try:
                out[(row["pair_id"], row["digest"], row["settings"], row["column"])] = (
                    float(row["score_a"]), float(row["score_b"]))
            except ValueError as exc:
                raise FileFormatError(f"{path}: unreadable score in row {row}: {exc} (delete it to rebuild)") from exc
    return out


def _write_cache(path: Path, rows: dict[tuple[str, str, str, str], tuple[float, float]]) -> None:
    table = io.StringIO()
    w = csv.writer(table)
    w.writerow(CACHE_COLUMNS)
    for (pid, dig, settings, column), (sa, sb) in rows.items():
        w.writerow([pid, dig, settings, column, repr(sa), repr(sb)])
    atomic_write_text(path, table.getvalue(), overwrite=True, make_parents=True, newline="")


def cached_scores(
    cache_path: Path | None,
    pair_ids: Sequence[str],
    digests: Sequence[str],
    settings: str,
    columns: Sequence[str],
    compute: Callable[[np.ndarray], dict[str, ScorePair]],
) -> tuple[dict[str, ScorePair], int]:
    """Scores of ``columns`` for every pair, from ``cache_path`` where possible.

    ``compute(indices)`` must return, for each column, (scores_a, scores_b) of the pairs
    ``indices`` (int array, in that order). It is called once with the pairs that lack a cached
    row for any column (not at all when everything is cached); the cache is then rewritten
    atomically with the new rows added (rows of other settings or pairs are kept).

    Returns:
        ({column: (scores_a, scores_b)} over all pairs in order, number of pairs computed).
    """
    if len(pair_ids) != len(digests):
        raise ConfigError(f"{len(pair_ids)} pair ids but {len(digests)} digests")
    rows = _read_cache(cache_path) if cache_path is not None else {}
    keys = [[(pid, dig, settings, col) for col in columns] for pid, dig in zip(pair_ids, digests)]
    missing = np.array([i for i, ks in enumerate(keys) if any(k not in rows for k in ks)], dtype=np.int64)
    if missing.size:
        fresh = compute(missing)
        absent = [c for c in columns if c not in fresh]
        if absent:
            raise ConfigError(f"compute() returned no scores for columns {absent}")
        for col in columns:
            sa, sb = (np.asarray(v, dtype=np.float64).reshape(-1) for v in fresh[col])
            if sa.size != missing.size or sb.size != missing.size:
                raise ConfigError(f"compute() returned {sa.size}/{sb.size} scores for column {col!r}, "
                                  f"expected {missing.size}")
            for j, i in enumerate(missing):
                rows[keys[i][columns.index(col)]] = (float(sa[j]), float(sb[j]))
        if cache_path is not None:
            _write_cache(cache_path, rows)
    out = {
        col: (np.array([rows[ks[c]][0] for ks in keys]), np.array([rows[ks[c]][1] for ks in keys]))
        for c, col in enumerate(columns)
    }
    return out, int(missing.size)


# ----------------------------------------------------------------------------- scoring


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


def _baseline_scores(m: nn.Module, a: torch.Tensor, b: torch.Tensor, ref: torch.Tensor) -> ScorePair:
    with torch.no_grad():
        sa = torch.cat([m(a[i:i + 16], ref[i:i + 16]) for i in range(0, len(a), 16)]).numpy()
        sb = torch.cat([m(b[i:i + 16], ref[i:i + 16]) for i in range(0, len(b), 16)]).numpy()
    return sa, sb


def _acc(credit: np.ndarray) -> float:
    return float(credit.mean())


def _same_choice_groups(credits: dict[str, np.ndarray], names: Sequence[str]) -> list[list[str]]:
    """Groups (size >= 2) of ``names`` whose per-pair 2AFC credit is identical on every pair."""
    groups: list[list[str]] = []
    for n in names:
        for g in groups:
            if np.array_equal(credits[g[0]], credits[n]):
                g.append(n)
                break
        else:
            groups.append([n])
    return [g for g in groups if len(g) > 1]


def _global_kind(family: str) -> str:
    """The global distortion of a ``lesion_vs_global`` family such as ``lesion_erase|rician_noise``."""
    parts = [f for f in family.split("|") if not f.startswith("lesion_")]
    return parts[0] if parts else family


def _dfd_note(acc: dict[str, dict[str, float]], credits: dict[str, np.ndarray], rules: np.ndarray,
              families: np.ndarray) -> str:
    names = ("dfd_vgg16", "dfd_random", "dfd_ssfd")
    if not all(k in acc for k in names):
        return ""
    v, r, s = (acc[n] for n in names)
    nan = float("nan")
    sf = [acc[n].get("same_family", nan) for n in names]
    sf_text = (f"all three at {sf[0]:.2f}" if sf[0] == sf[1] == sf[2]
               else f"{sf[0]:.2f} / {sf[1]:.2f} / {sf[2]:.2f}")
    lg = rules == "lesion_vs_global"
    kinds = sorted({_global_kind(f) for f in families[lg]})
    per_global = "; ".join(
        f"{n} " + ", ".join(f"{k} {credits[n][lg & (np.vectorize(_global_kind)(families) == k)].sum():g}/"
                            f"{int((lg & (np.vectorize(_global_kind)(families) == k)).sum())}" for k in kinds)
        for n in names) if lg.any() else "none"
    extra = []
    if r["all"] > v["all"] + 0.05:
        extra.append(f"The random-weight control beats the ImageNet encoder ({r['all']:.3f} vs {v['all']:.3f}).")
    elif abs(v["all"] - r["all"]) <= 0.05:
        extra.append("The random-weight control is within 0.05 of the ImageNet encoder.")
    kc = acc.get("K-CROSS", {}).get("all")
    best = max(v["all"], r["all"], s["all"])
    if kc is not None:
        extra.append(f"All three stay below K-CROSS ({kc:.3f}), which was fitted on pairs of this construction."
                     if best < kc else f"The best of them ({best:.3f}) reaches or beats K-CROSS ({kc:.3f}).")
    return DFD_NOTE.format(
        vgg_all=v["all"], random_all=r["all"], ssfd_all=s["all"], sf_text=sf_text,
        vgg_lg=v.get("lesion_vs_global", nan), random_lg=r.get("lesion_vs_global", nan),
        ssfd_lg=s.get("lesion_vs_global", nan), per_global=per_global, dfd_extra=" ".join(extra),
    )


def _relation(a: float, b: float) -> str:
    """``a`` is "below", "above" or "equal to" ``b``, for generated prose."""
    return "below" if a < b else "above" if a > b else "equal to"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pairs", type=Path)
    p.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--baselines", default=",".join(BASELINES))
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="folder of the per-metric score caches scores_<metric>.csv (default: the pairs CSV's folder)")
    p.add_argument("--no-cache", action="store_true", help="compute every score, read and write no cache")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    pairs = load_twoafc_set(args.pairs)
    cache_dir = None if args.no_cache else (args.cache_dir or args.pairs.parent)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)  # this script's own cache folder
    pair_ids = [q.pair_id for q in pairs]
    digests = [pair_digest(q) for q in pairs]
    ref = torch.cat([q.reference for q in pairs])
    a = torch.cat([q.a for q in pairs])
    b = torch.cat([q.b for q in pairs])
    sources = [q.source for q in pairs if q.source is not None]
    src = torch.cat(sources) if len(sources) == len(pairs) else None
    better = np.array([q.better for q in pairs])
    rules = np.array([q.rule for q in pairs])
    families = np.array([q.family for q in pairs])
    scores: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
    start = time.time()
    from_cache: list[str] = []

    def cache_file(name: str) -> Path | None:
        return None if cache_dir is None else cache_dir / f"scores_{name}.csv"

    metric = KCross(args.weights)
    t0 = time.time()

    def compute_kcross(idx: np.ndarray) -> dict[str, ScorePair]:
        s = torch.from_numpy(idx)
        va = kcross_variants(metric, a[s], ref[s], src[s] if src is not None else None)
        vb = kcross_variants(metric, b[s], ref[s], src[s] if src is not None else None)
        return {k: (va[k], vb[k]) for k in KCROSS_VARIANTS}

    got, n_new = cached_scores(cache_file("kcross"), pair_ids, digests, metric_settings(metric),
                               KCROSS_VARIANTS, compute_kcross)
    print(f"kcross: {n_new} pairs computed, {len(pairs) - n_new} from cache, {time.time() - t0:.0f} s", flush=True)
    if n_new == 0:
        from_cache.append("kcross")
    for k in KCROSS_VARIANTS:
        scores[k] = (got[k][0], got[k][1], True)
    for name in [n for n in args.baselines.split(",") if n]:
        t0 = time.time()
        m = create_metric(name, data_range=1.0)

        def compute(idx: np.ndarray, m: nn.Module = m, name: str = name) -> dict[str, ScorePair]:
            s = torch.from_numpy(idx)
            return {name: _baseline_scores(m, a[s], b[s], ref[s])}

        got, n_new = cached_scores(cache_file(name), pair_ids, digests, metric_settings(m), (name,), compute)
        print(f"{name}: {n_new} pairs computed, {len(pairs) - n_new} from cache, {time.time() - t0:.0f} s", flush=True)
        if n_new == 0:
            from_cache.append(name)
        scores[name] = (got[name][0], got[name][1], metric_info(name).higher_is_better)
    rule_names = sorted(set(rules))
    header = "| metric | all pairs | " + " | ".join(rule_names) + " |"
    lines = [header, "|" + "---|" * (2 + len(rule_names))]
    acc: dict[str, dict[str, float]] = {}
    credits: dict[str, np.ndarray] = {}
    for name, (sa, sb, hib) in scores.items():
        credit = two_afc_per_pair(sa, sb, better, higher_is_better=hib)
        credits[name] = credit
        cells = []
        acc[name] = {}
        for label, sel in [("all", np.ones_like(rules, dtype=bool))] + [(r, rules == r) for r in rule_names]:
            c = credit[sel]
            ci = bootstrap_ci(np.mean, c, n_boot=args.n_boot, seed=0)
            acc[name][label] = _acc(c)
            cells.append(f"{c.mean():.3f} [{ci.low:.3f}, {ci.high:.3f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    counts = ", ".join(f"{r}: {int((rules == r).sum())}" for r in rule_names)
    cached_note = (f"; {len(from_cache)} of {1 + len(scores) - len(KCROSS_VARIANTS)} metrics read from the "
                   f"per-pair score cache `{cache_dir}/scores_<metric>.csv`" if cache_dir is not None else "")
    text = (
        f"2AFC accuracy with 95% bootstrap CIs ({args.n_boot} resamples) on `{args.pairs}` "
        f"({len(pairs)} pairs; {counts}); weights sha256 `{str(metric.version.get('weights_sha256'))[:16]}`; "
        f"this run: {time.time() - start:.0f} s with {max(1, args.threads)} thread(s){cached_note}.\n\n"
        + "\n".join(lines) + "\n"
    )
    if all(k in acc for k in ("K-CROSS structure branch", "K-CROSS tumor branch", "K-CROSS complex branch")):
        groups = _same_choice_groups(credits, [n for n in scores if n not in KCROSS_VARIANTS])
        same = "".join(f" {', '.join(g)} make the same choice on every pair (identical accuracies)." for g in groups)
        text += NOTE.format(structure_all=acc["K-CROSS structure branch"]["all"],
                            tumor_all=acc["K-CROSS tumor branch"]["all"],
                            complex_all=acc["K-CROSS complex branch"]["all"], same_choices=same,
                            tumor_vs_complex=_relation(acc["K-CROSS tumor branch"]["all"], acc["K-CROSS complex branch"]["all"]))
    dfd = _dfd_note(acc, credits, rules, families)
    text += dfd if dfd else "None of this is radiologist agreement (docs/radiologist-agreement.md).\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    from _paths import name_checkout_shared

    name_checkout_shared()
    sys.exit(main())
