"""2AFC accuracy of K-CROSS (its branches as the ablation) and the baselines on a constructed pair set.

The library side of ``benchmarks/twoafc_table.py`` (its page is ``docs/results-twoafc.md``):

* :func:`score_twoafc_set` scores both sides of every pair of a set written by
  ``kcross-train pairs`` (:class:`~kcross_metric.train.ratedsets.twoafc.TwoAFCPair`) with
  K-CROSS, in the variants :data:`KCROSS_VARIANTS` (:func:`kcross_variants`), and with registered
  baselines (:func:`baseline_scores`), through the per-pair score cache of
  :mod:`.score_cache` (``scores_<metric>.csv``, keyed by pair id, :func:`pair_digest` and
  :func:`~.score_cache.metric_settings`);
* :func:`twoafc_page` writes the accuracy table (all pairs and per rule, 95 % percentile bootstrap
  CIs over pairs, seed 0; ties count 0.5) and the notes generated from its numbers.

These are constructed orderings, not radiologist judgments (docs/datasets/twoafc.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.metric import KCross
from ..registry import create_metric, metric_info
from ..train.ratedsets.twoafc import TwoAFCPair
from .agreement import bootstrap_ci, two_afc_per_pair
from .score_cache import ScorePair, cached_scores, metric_settings, tensors_digest

__all__ = [
    "BASELINES",
    "DFD_NOTE",
    "KCROSS_VARIANTS",
    "NOTE",
    "TwoAFCScores",
    "baseline_scores",
    "dfd_note",
    "kcross_variants",
    "pair_digest",
    "same_choice_groups",
    "score_twoafc_set",
    "twoafc_page",
    "twoafc_table",
]

#: The note under the table when the three K-CROSS branches were scored (filled from the numbers).
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

#: The note on the deep feature distances, when all three were scored (filled from the numbers).
DFD_NOTE = """
**Deep feature distances.** `dfd_vgg16` (ImageNet VGG16 feature MSE), `dfd_random` (the same
network with seeded random weights, the literature's control) and `dfd_ssfd` (the in-domain
self-supervised MR encoder; see [DFD and 2.5D](dfd-and-25d.md)) reach {vgg_all:.3f} / {random_all:.3f} /
{ssfd_all:.3f} on all pairs: {sf_text} on `same_family`, and {vgg_lg:.2f} / {random_lg:.2f} / {ssfd_lg:.2f}
on `lesion_vs_global`. Pairs of that rule won (lesion-preserving side preferred) per global
distortion: {per_global}. {dfd_extra}
None of this is radiologist agreement (docs/radiologist-agreement.md).
"""

#: Registered baselines scored by default (the benchmark's ``--baselines``).
BASELINES: tuple[str, ...] = (
    "mae", "psnr", "ssim", "ms_ssim", "nlpd", "gmsd", "lpips_alex", "lpips_vgg", "dists",
    "dfd_vgg16", "dfd_random", "dfd_ssfd",
)  # fmt: skip
#: The K-CROSS columns of the table, in order (the score, its mean combine and the branch ablation).
KCROSS_VARIANTS: tuple[str, ...] = (
    "K-CROSS",
    "K-CROSS (mean combine)",
    "K-CROSS complex branch",
    "K-CROSS tumor branch",
    "K-CROSS structure branch",
    "K-CROSS without source",
)


def pair_digest(pair: TwoAFCPair) -> str:
    """SHA-1 (hex) of the arrays a metric sees for a pair: reference, a, b and source (shape + bytes)."""
    return tensors_digest((name, getattr(pair, name)) for name in ("reference", "a", "b", "source"))


def kcross_variants(metric: KCross, fake: torch.Tensor, real: torch.Tensor,
                    source: torch.Tensor | None) -> dict[str, np.ndarray]:
    """Scores of every :data:`KCROSS_VARIANTS` column for a batch of (N, 1, H, W) slices (chunks of 8).

    No lesion masks are given (K-CROSS segments the lesion itself); "without source" is the score
    with ``source=None`` (equal to the score when no source is given).
    """
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


def baseline_scores(m: nn.Module, a: torch.Tensor, b: torch.Tensor, ref: torch.Tensor) -> ScorePair:
    """(scores of ``a``, scores of ``b``) against ``ref`` with a two-argument metric, in chunks of 16."""
    with torch.no_grad():
        sa = torch.cat([m(a[i:i + 16], ref[i:i + 16]) for i in range(0, len(a), 16)]).numpy()
        sb = torch.cat([m(b[i:i + 16], ref[i:i + 16]) for i in range(0, len(b), 16)]).numpy()
    return sa, sb


@dataclass
class TwoAFCScores:
    """Scores of :func:`score_twoafc_set`, with the labels of the pairs."""

    #: column -> (scores of a, scores of b, higher_is_better) over pairs; K-CROSS variants first
    scores: dict[str, tuple[np.ndarray, np.ndarray, bool]]
    #: per pair: "a" or "b" (the side better by construction)
    better: np.ndarray
    #: per pair: the construction rule (e.g. ``same_family``, ``lesion_vs_global``)
    rules: np.ndarray
    #: per pair: the distortion family (``lesion_erase|rician_noise`` for a lesion-vs-global pair)
    families: np.ndarray
    #: SHA-256 of the K-CROSS weights file (from ``KCross.version``)
    weights_sha256: str | None = None
    #: metrics ("kcross" or a baseline name) whose scores all came from the cache
    from_cache: list[str] = field(default_factory=list)

    @property
    def n_pairs(self) -> int:
        return int(self.better.size)


def score_twoafc_set(
    pairs: Sequence[TwoAFCPair],
    *,
    weights: Path | None = None,
    baselines: Sequence[str] = BASELINES,
    cache_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> TwoAFCScores:
    """Score both sides of every pair with K-CROSS (:data:`KCROSS_VARIANTS`) and each baseline.

    Args:
        pairs: the pair set (:func:`~kcross_metric.train.ratedsets.twoafc.load_twoafc_set`).
        weights: K-CROSS weights file (default: the bundled weights).
        baselines: registered metric names, each built with ``data_range=1.0``.
        cache_dir: folder of the score caches ``scores_kcross.csv`` and ``scores_<baseline>.csv``
            (read and updated, :func:`~.score_cache.cached_scores`); ``None`` computes everything
            and writes nothing. The folder must exist.
        log: called with one progress line per metric (pairs computed, from cache, seconds).
    """
    pair_ids = [q.pair_id for q in pairs]
    digests = [pair_digest(q) for q in pairs]
    ref = torch.cat([q.reference for q in pairs])
    a = torch.cat([q.a for q in pairs])
    b = torch.cat([q.b for q in pairs])
    sources = [q.source for q in pairs if q.source is not None]
    src = torch.cat(sources) if len(sources) == len(pairs) else None
    result = TwoAFCScores(
        scores={},
        better=np.array([q.better for q in pairs]),
        rules=np.array([q.rule for q in pairs]),
        families=np.array([q.family for q in pairs]),
    )

    def cache_file(name: str) -> Path | None:
        return None if cache_dir is None else cache_dir / f"scores_{name}.csv"

    metric = KCross(weights)
    sha = metric.version.get("weights_sha256")
    result.weights_sha256 = None if sha is None else str(sha)
    t0 = time.time()

    def compute_kcross(idx: np.ndarray) -> dict[str, ScorePair]:
        s = torch.from_numpy(idx)
        va = kcross_variants(metric, a[s], ref[s], src[s] if src is not None else None)
        vb = kcross_variants(metric, b[s], ref[s], src[s] if src is not None else None)
        return {k: (va[k], vb[k]) for k in KCROSS_VARIANTS}

    got, n_new = cached_scores(cache_file("kcross"), pair_ids, digests, metric_settings(metric),
                               KCROSS_VARIANTS, compute_kcross)
    if log is not None:
        log(f"kcross: {n_new} pairs computed, {len(pairs) - n_new} from cache, {time.time() - t0:.0f} s")
    if n_new == 0:
        result.from_cache.append("kcross")
    for k in KCROSS_VARIANTS:
        result.scores[k] = (got[k][0], got[k][1], True)
    for name in baselines:
        t0 = time.time()
        m = create_metric(name, data_range=1.0)

        def compute(idx: np.ndarray, m: nn.Module = m, name: str = name) -> dict[str, ScorePair]:
            s = torch.from_numpy(idx)
            return {name: baseline_scores(m, a[s], b[s], ref[s])}

        got, n_new = cached_scores(cache_file(name), pair_ids, digests, metric_settings(m), (name,), compute)
        if log is not None:
            log(f"{name}: {n_new} pairs computed, {len(pairs) - n_new} from cache, {time.time() - t0:.0f} s")
        if n_new == 0:
            result.from_cache.append(name)
        result.scores[name] = (got[name][0], got[name][1], metric_info(name).higher_is_better)
    return result


def same_choice_groups(credits: dict[str, np.ndarray], names: Sequence[str]) -> list[list[str]]:
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


def dfd_note(acc: dict[str, dict[str, float]], credits: dict[str, np.ndarray], rules: np.ndarray,
             families: np.ndarray) -> str:
    """:data:`DFD_NOTE` filled from the accuracies (``acc[metric][rule or "all"]``), or "" unless
    all three DFDs (``dfd_vgg16``, ``dfd_random``, ``dfd_ssfd``) were scored."""
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


def twoafc_table(result: TwoAFCScores, *, n_boot: int = 1000) -> tuple[list[str], dict[str, dict[str, float]],
                                                                           dict[str, np.ndarray]]:
    """The markdown table (all pairs, then one column per rule; "acc [low, high]" cells, bootstrap
    seed 0), the accuracies ``{column: {"all" or rule: accuracy}}`` and the per-pair credits."""
    rules = result.rules
    rule_names = sorted(set(rules))
    header = "| metric | all pairs | " + " | ".join(rule_names) + " |"
    lines = [header, "|" + "---|" * (2 + len(rule_names))]
    acc: dict[str, dict[str, float]] = {}
    credits: dict[str, np.ndarray] = {}
    for name, (sa, sb, hib) in result.scores.items():
        credit = two_afc_per_pair(sa, sb, result.better, higher_is_better=hib)
        credits[name] = credit
        cells = []
        acc[name] = {}
        for label, sel in [("all", np.ones_like(rules, dtype=bool))] + [(r, rules == r) for r in rule_names]:
            c = credit[sel]
            ci = bootstrap_ci(np.mean, c, n_boot=n_boot, seed=0)
            acc[name][label] = float(c.mean())
            cells.append(f"{c.mean():.3f} [{ci.low:.3f}, {ci.high:.3f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines, acc, credits


def twoafc_page(
    result: TwoAFCScores,
    *,
    pairs_path: Path,
    n_boot: int = 1000,
    threads: int = 1,
    started: float | None = None,
    cache_dir: Path | None = None,
) -> str:
    """The markdown page of ``benchmarks/twoafc_table.py``: a header line, the table and the notes.

    Args:
        result: the scores (:func:`score_twoafc_set`).
        pairs_path: the pairs CSV, as named on the page.
        n_boot: bootstrap resamples per cell.
        threads: torch threads of the run, as named on the page.
        started: ``time.time()`` at the start of the run; the page gives the seconds since
            (default: now, i.e. 0 s).
        cache_dir: the score cache folder, as named on the page (``None``: no cache was used).
    """
    start = time.time() if started is None else started
    lines, acc, credits = twoafc_table(result, n_boot=n_boot)
    rules = result.rules
    rule_names = sorted(set(rules))
    counts = ", ".join(f"{r}: {int((rules == r).sum())}" for r in rule_names)
    cached_note = (f"; {len(result.from_cache)} of {1 + len(result.scores) - len(KCROSS_VARIANTS)} metrics read from the "
                   f"per-pair score cache `{cache_dir}/scores_<metric>.csv`" if cache_dir is not None else "")
    text = (
        f"2AFC accuracy with 95% bootstrap CIs ({n_boot} resamples) on `{pairs_path}` "
        f"({result.n_pairs} pairs; {counts}); weights sha256 `{str(result.weights_sha256)[:16]}`; "
        f"this run: {time.time() - start:.0f} s with {max(1, threads)} thread(s){cached_note}.\n\n"
        + "\n".join(lines) + "\n"
    )
    if all(k in acc for k in ("K-CROSS structure branch", "K-CROSS tumor branch", "K-CROSS complex branch")):
        groups = same_choice_groups(credits, [n for n in result.scores if n not in KCROSS_VARIANTS])
        same = "".join(f" {', '.join(g)} make the same choice on every pair (identical accuracies)." for g in groups)
        text += NOTE.format(structure_all=acc["K-CROSS structure branch"]["all"],
                            tumor_all=acc["K-CROSS tumor branch"]["all"],
                            complex_all=acc["K-CROSS complex branch"]["all"], same_choices=same,
                            tumor_vs_complex=_relation(acc["K-CROSS tumor branch"]["all"], acc["K-CROSS complex branch"]["all"]))
    dfd = dfd_note(acc, credits, rules, result.families)
    text += dfd if dfd else "None of this is radiologist agreement (docs/radiologist-agreement.md).\n"
    return text
