"""Severity ladders, lesion rules and the structure rule on held-out subjects, and leave-one-family-out refits.

The library side of ``benchmarks/ladders_table.py`` (``docs/results-ladders.md``) and
``benchmarks/lofo_table.py`` (``docs/results-lofo.md``); the scripts parse their options, call these
functions and write the page.

* Sets: :func:`ladder_set_from_cases` stacks the ladders of
  :func:`~kcross_metric.train.ratedsets.ladders.build_ladders` and the lesion-rule pairs of
  :func:`~kcross_metric.train.ratedsets.ladders.build_lesion_rules` into one :class:`LadderSet`;
  :func:`misregistration_set_from_cases` does the same for the structure rule.
  :func:`build_ladder_set` and :func:`build_misregistration_set` load a split's subjects and cache
  the result (``set-<key>.pt``, ``misreg-<key>-<n>.pt``, key from :func:`set_key`).
* Features: :func:`encode_features` runs K-CROSS once per image and keeps the qualities, the sizes
  of the branch vectors, the lesion region and the raw branch vectors (to refit score heads on);
  :func:`encode_ladder_set` / :func:`encode_misregistration` cache them per weight file
  (``feats2-<key>-<sha>.pt``, ``featsm-<key>-<n>-<sha>.pt``, ``sha`` the first 16 hex digits of the
  file's SHA-256).
* Credits: :func:`ladder_credit`, :func:`pair_credit` (1 correct, 0.5 tie, 0 wrong, per pair),
  :func:`format_credit` (mean, with a 95 % bootstrap CI on request).
* Tables: :func:`branch_analysis` (where order is lost), :func:`misregistration_table`,
  :func:`render_ladders_page`.
* Leave one family out: :func:`lofo_config`, :func:`lofo_training_bank`, :func:`fit_heads`,
  :func:`heads_credits`, :func:`leave_one_out_rows`, :func:`render_lofo_header`,
  :func:`render_lofo_footer`.

The cache files are plain ``torch.save`` dictionaries of tensors, strings and numbers (the
:class:`~typing.TypedDict` s below describe them), read with ``weights_only=True``; their names and
keys are part of the scripts' interface: a rerun with another weight file only encodes that file.
The one exception is the leave-one-family-out training bank, ``lofo-train-<key>.pt`` (key
:func:`lofo_bank_key`): a pickled :class:`~kcross_metric.train.stage2.FeatureBank`, which
``weights_only=True`` cannot read, so ``benchmarks/lofo_table.py`` reads and writes it itself.
These orderings are constructed, not radiologist judgements.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch

from .._util.files import cached_tensors
from ..core.metric import KCross
from ..core.nets.kcross_nets import KCrossNetworks
from ..registry import create_metric
from ..train.config import Stage2Config, load_config
from ..train.data import available_cases
from ..train.export import assemble_networks
from ..train.ratedsets.ladders import (
    HELD_OUT_FAMILIES,
    HELD_OUT_LESION_EDITS,
    LADDERS,
    build_ladders,
    build_lesion_rules,
    build_misregistration_pairs,
    consecutive_pairs,
)
from ..train.ratedsets.twoafc import ALL_LESION_EDITS, CaseSlices, load_case
from ..train.splits import cases_for_split
from ..train.stage2 import FeatureBank, ScoreHeads, select_pairs, train_stage2, training_bank, with_design
from .agreement import bootstrap_ci

__all__ = [
    "BUNDLED",
    "QUALITY_COLUMNS",
    "SLICE_RANGE",
    "BranchAnalysis",
    "CreditColumn",
    "EncodedLadderSet",
    "EncodedPairs",
    "Features",
    "LadderSet",
    "LadderTensors",
    "LesionTensors",
    "LofoRow",
    "MisregistrationSet",
    "MisregistrationTable",
    "baseline_columns",
    "baseline_pair_scores",
    "baseline_scores",
    "branch_analysis",
    "build_ladder_set",
    "build_misregistration_set",
    "encode_features",
    "encode_ladder_set",
    "encode_ladder_set_with",
    "encode_misregistration",
    "encode_misregistration_with",
    "fit_heads",
    "format_credit",
    "head_scores",
    "heads_credits",
    "kcross_for",
    "ladder_credit",
    "ladder_set_from_cases",
    "leave_one_out_rows",
    "lofo_bank_key",
    "lofo_config",
    "lofo_networks",
    "lofo_training_bank",
    "misregistration_set_from_cases",
    "misregistration_table",
    "oriented_metric",
    "pair_credit",
    "render_ladders_page",
    "render_lofo_footer",
    "render_lofo_header",
    "set_key",
    "weights_sha",
]

#: The columns of the quality tables, in the order the pages show them: the combined score, then
#: each branch quality of :meth:`KCross.qualities` (the names of :data:`~kcross_metric.core.branches.BRANCHES`).
QUALITY_COLUMNS: tuple[str, ...] = ("score", "complex", "natural", "tumor", "structure")
#: Axial slices (first, last) loaded from every subject for the ladders, lesion and structure rules.
SLICE_RANGE: tuple[int, int] = (40, 100)
#: The weight-file name that stands for the shipped file (``KCross(weights=None)``).
BUNDLED = "bundled"

#: Per-image rows of :func:`encode_features`, all with the image count N as first dimension.
Features = dict[str, torch.Tensor]


class LadderTensors(TypedDict):
    """The ladders of a :class:`LadderSet`: N ladders of L levels."""

    family: list[str]  #: (N,) ladder family names
    case: list[str]  #: (N,) subject ids
    images: torch.Tensor  #: (N, L, 1, H, W) levels, mildest first, in [0, 1]
    reference: torch.Tensor  #: (N, 1, H, W)
    source: torch.Tensor  #: (N, 1, H, W) another contrast of the same slice


class LesionTensors(TypedDict):
    """The lesion-rule pairs of a :class:`LadderSet`: M pairs."""

    edit: list[str]  #: (M,) lesion edit names
    case: list[str]  #: (M,)
    a: torch.Tensor  #: (M, 1, H, W)
    b: torch.Tensor  #: (M, 1, H, W)
    a_better: torch.Tensor  #: (M,) bool
    reference: torch.Tensor  #: (M, 1, H, W)
    source: torch.Tensor  #: (M, 1, H, W)


class LadderSet(TypedDict):
    """Ladders and lesion rules of some subjects, as cached in ``set-<key>.pt``."""

    cases: list[str]
    ladders: LadderTensors
    lesion: LesionTensors
    seconds: float  #: time taken to build the set


class MisregistrationSet(TypedDict):
    """The structure rule's K pairs (misregistered vs aligned of equal MSE), as cached in ``misreg-<key>-<n>.pt``."""

    a: torch.Tensor  #: (K, 1, H, W)
    b: torch.Tensor  #: (K, 1, H, W)
    a_better: torch.Tensor  #: (K,) bool
    reference: torch.Tensor  #: (K, 1, H, W)
    source: torch.Tensor  #: (K, 1, H, W)
    case: list[str]  #: (K,)


class EncodedLadderSet(TypedDict):
    """Features of a :class:`LadderSet` under one weight file, as cached in ``feats2-<key>-<sha>.pt``."""

    sha: str  #: first 16 hex digits of the weight file's SHA-256 (``"none"`` for in-memory networks)
    design: str  #: the networks' design (``v1``, ``v2``)
    ladders: Features  #: N * L rows, ladder-major (the levels of ladder 0, then of ladder 1, ...)
    lesion_a: Features  #: M rows
    lesion_b: Features  #: M rows


class EncodedPairs(TypedDict):
    """Features of both sides of a :class:`MisregistrationSet`, as cached in ``featsm-<key>-<n>-<sha>.pt``."""

    a: Features  #: K rows
    b: Features  #: K rows


# ----------------------------------------------------------------------------- sets


def set_key(split: str, cases: Sequence[str], *, n_ladders: int, n_lesion: int, seed: int) -> str:
    """The 12-hex-digit key of a ladder set in the cache's file names (stable across versions)."""
    text = f"{split}|{','.join(cases)}|{n_ladders}|{n_lesion}|{seed}|{SLICE_RANGE}|v1"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _source(source: torch.Tensor | None, what: str) -> torch.Tensor:
    if source is None:
        raise ValueError(f"{what} has no source contrast")
    return source


def ladder_set_from_cases(cases: Sequence[CaseSlices], *, n_ladders: int, n_lesion: int, seed: int) -> LadderSet:
    """``n_ladders`` ladders per family (seed ``seed``) and ``n_lesion`` lesion-rule pairs per edit
    (seed ``seed + 1``) on the loaded ``cases``, stacked into tensors (shapes in :class:`LadderSet`)."""
    start = time.time()
    ladders = build_ladders(cases, n_per_family=n_ladders, seed=seed)
    lesion = build_lesion_rules(cases, n_per_edit=n_lesion, seed=seed + 1)
    return {
        "cases": [c.case for c in cases],
        "ladders": {
            "family": [lad.family for lad in ladders],
            "case": [lad.case for lad in ladders],
            "images": torch.stack([lad.images for lad in ladders]),  # (N, L, 1, H, W)
            "reference": torch.cat([lad.reference for lad in ladders]),
            "source": torch.cat([_source(lad.source, "a ladder") for lad in ladders]),
        },
        "lesion": {
            "edit": [p.family for p in lesion],
            "case": [p.case for p in lesion],
            "a": torch.cat([p.a for p in lesion]),
            "b": torch.cat([p.b for p in lesion]),
            "a_better": torch.tensor([p.better == "a" for p in lesion]),
            "reference": torch.cat([p.reference for p in lesion]),
            "source": torch.cat([_source(p.source, "a lesion-rule pair") for p in lesion]),
        },
        "seconds": time.time() - start,
    }


def build_ladder_set(split: str, cache: Path, *, n_ladders: int, n_lesion: int, seed: int) -> LadderSet:
    """The ladder set of the ``split`` subjects present on this machine (slices :data:`SLICE_RANGE`),
    read from ``cache/set-<key>.pt`` or built (including loading the subjects) and written there."""
    cases = available_cases(cases_for_split(split))
    path = cache / f"set-{set_key(split, cases, n_ladders=n_ladders, n_lesion=n_lesion, seed=seed)}.pt"

    def build() -> LadderSet:
        start = time.time()
        data = ladder_set_from_cases([load_case(c, slice_range=SLICE_RANGE) for c in cases],
                                     n_ladders=n_ladders, n_lesion=n_lesion, seed=seed)
        data["cases"] = list(cases)
        data["seconds"] = time.time() - start
        return data

    return cached_tensors(path, build)


def misregistration_set_from_cases(cases: Sequence[CaseSlices], *, n_pairs: int, seed: int) -> MisregistrationSet:
    """The structure rule's ``n_pairs`` pairs on the loaded ``cases`` (seed ``seed + 2``), stacked."""
    pairs = build_misregistration_pairs(cases, n_pairs=n_pairs, seed=seed + 2)
    return {
        "a": torch.cat([p.a for p in pairs]), "b": torch.cat([p.b for p in pairs]),
        "a_better": torch.tensor([p.better == "a" for p in pairs]),
        "reference": torch.cat([p.reference for p in pairs]),
        "source": torch.cat([_source(p.source, "a misregistration pair") for p in pairs]),
        "case": [p.case for p in pairs],
    }


def build_misregistration_set(cases: Sequence[str], cache: Path, *, key: str, n_pairs: int, seed: int) -> MisregistrationSet:
    """The structure rule's pairs on ``cases`` (ids; ``key`` the ladder set's :func:`set_key`), read
    from ``cache/misreg-<key>-<n_pairs>.pt`` or built and written there."""
    path = cache / f"misreg-{key}-{n_pairs}.pt"
    return cached_tensors(path, lambda: misregistration_set_from_cases(
        [load_case(c, slice_range=SLICE_RANGE) for c in cases], n_pairs=n_pairs, seed=seed))


# ----------------------------------------------------------------------------- features


def kcross_for(weights: str | Path) -> KCross:
    """K-CROSS with the weight file ``weights`` (:data:`BUNDLED` for the shipped one)."""
    return KCross(weights=None if str(weights) == BUNDLED else weights)


def weights_sha(kcross: KCross) -> str:
    """First 16 hex digits of the SHA-256 of ``kcross``'s weight file (``"none"`` for in-memory networks)."""
    return str(kcross.weights_info.get("weights_sha256", "none"))[:16]


def encode_features(kcross: KCross, fake: torch.Tensor, real: torch.Tensor, source: torch.Tensor, batch: int = 16) -> Features:
    """Per-image K-CROSS features of (N, 1, H, W) slices in [0, 1], in batches of ``batch``.

    Returns, each with N rows: the qualities ``score``, ``complex``, ``natural``, ``tumor``,
    ``structure`` (N,); the branch-vector sizes ``norm_complex``, ``norm_tumor``, ``norm_structure``
    (N,); ``lesion_change`` (N,) when the design has lesion-change features; ``region`` (N, H*W)
    the lesion region compared; the raw branch vectors ``vc`` (N, 512) complex, ``vt`` (N, 256),
    ``vs`` (N, 256) and ``vm`` (N, 2) (zeros without lesion-change features).
    """
    out: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for i in range(0, fake.shape[0], batch):
            sl = slice(i, i + batch)
            feats = kcross.slice_features(fake[sl], real[sl], source[sl], None)
            quality = kcross.qualities(feats)
            rows = {k: quality[k] for k in QUALITY_COLUMNS}
            rows["norm_complex"] = feats["complex"].abs().norm(dim=1)
            rows["norm_tumor"] = feats["tumor"].norm(dim=1)
            rows["norm_structure"] = feats["structure"].norm(dim=1)
            if "lesion_change" in feats:
                rows["lesion_change"] = feats["lesion_change"].sum(dim=1)
            rows["region"] = feats["lesion_mask"].flatten(1)
            # the raw branch vectors, for refitting score heads on them (leave-one-family-out)
            rows["vc"], rows["vt"], rows["vs"] = feats["complex"], feats["tumor"], feats["structure"]
            rows["vm"] = feats.get("lesion_change", feats["tumor"].new_zeros((feats["tumor"].shape[0], 2)))
            for k, v in rows.items():
                out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def encode_ladder_set_with(kcross: KCross, data: LadderSet) -> EncodedLadderSet:
    """:func:`encode_features` of every ladder level and both sides of every lesion-rule pair."""
    lad = data["ladders"]
    levels = lad["images"].shape[1]
    fake = lad["images"].flatten(0, 1)
    ref = lad["reference"].repeat_interleave(levels, dim=0)
    src = lad["source"].repeat_interleave(levels, dim=0)
    les = data["lesion"]
    return {
        "sha": weights_sha(kcross),
        "design": kcross.nets.design,
        "ladders": encode_features(kcross, fake, ref, src),
        "lesion_a": encode_features(kcross, les["a"], les["reference"], les["source"]),
        "lesion_b": encode_features(kcross, les["b"], les["reference"], les["source"]),
    }


def encode_ladder_set(weights: str | Path, data: LadderSet, cache: Path, key: str) -> EncodedLadderSet:
    """:func:`encode_ladder_set_with` the weight file ``weights``, cached in ``cache/feats2-<key>-<sha>.pt``."""
    kcross = kcross_for(weights)
    path = cache / f"feats2-{key}-{weights_sha(kcross)}.pt"
    return cached_tensors(path, lambda: encode_ladder_set_with(kcross, data))


def encode_misregistration_with(kcross: KCross, misreg: MisregistrationSet) -> EncodedPairs:
    """:func:`encode_features` of both sides of the structure rule's pairs."""
    return {"a": encode_features(kcross, misreg["a"], misreg["reference"], misreg["source"]),
            "b": encode_features(kcross, misreg["b"], misreg["reference"], misreg["source"])}


def encode_misregistration(weights: str | Path, misreg: MisregistrationSet, cache: Path, key: str) -> EncodedPairs:
    """:func:`encode_misregistration_with` the weight file ``weights``, cached in ``cache/featsm-<key>-<sha>.pt``
    (``key`` is ``<set key>-<n_pairs>``)."""
    kcross = kcross_for(weights)
    path = cache / f"featsm-{key}-{weights_sha(kcross)}.pt"
    return cached_tensors(path, lambda: encode_misregistration_with(kcross, misreg))


# ----------------------------------------------------------------------------- baselines


def oriented_metric(name: str) -> tuple[Any, float]:
    """The registered metric ``name`` (``data_range=1``) and the sign that makes higher better."""
    metric = create_metric(name, data_range=1.0)
    return metric, 1.0 if getattr(metric, "higher_is_better", True) else -1.0


def baseline_scores(name: str, data: LadderSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores of the registered metric ``name`` on a ladder set, oriented so that higher is better:
    (ladder levels (N * L,) ladder-major, lesion side a (M,), lesion side b (M,)); batches of 32."""
    metric, sign = oriented_metric(name)
    lad, les = data["ladders"], data["lesion"]
    levels = lad["images"].shape[1]

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([metric(x[i : i + 32], y[i : i + 32]).flatten() for i in range(0, x.shape[0], 32)]) * sign

    return (
        run(lad["images"].flatten(0, 1), lad["reference"].repeat_interleave(levels, dim=0)),
        run(les["a"], les["reference"]),
        run(les["b"], les["reference"]),
    )


def baseline_columns(
    names: Sequence[str], data: LadderSet
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], dict[str, str]]:
    """:func:`baseline_scores` of each metric in ``names``; a metric that fails (e.g. without its
    backbone weights) is left out: returns (scores by name, reason by left-out name)."""
    scores, left_out = {}, {}
    for name in names:
        try:
            scores[name] = baseline_scores(name, data)
        except Exception as exc:  # a baseline without its backbone weights is left out, with the reason
            left_out[name] = str(exc)
    return scores, left_out


def baseline_pair_scores(name: str, misreg: MisregistrationSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (K,) of sides a and b of the structure rule's pairs by the metric ``name``, higher better (one batch)."""
    metric, sign = oriented_metric(name)
    with torch.no_grad():
        sa = metric(misreg["a"], misreg["reference"]).flatten() * sign
        sb = metric(misreg["b"], misreg["reference"]).flatten() * sign
    return sa, sb


# ----------------------------------------------------------------------------- credits


def _credit(better: np.ndarray, worse: np.ndarray) -> np.ndarray:
    return (better > worse).astype(float) + 0.5 * (better == worse)


def ladder_credit(level_scores: torch.Tensor, n_ladders: int, n_levels: int) -> np.ndarray:
    """Credit per consecutive pair (1 correct, 0.5 tie, 0 wrong), ladder-major: (n_ladders * (n_levels - 1),).

    ``level_scores`` (n_ladders * n_levels,), ladder-major, higher better; the milder level must score higher.
    """
    better, worse = consecutive_pairs(n_ladders, n_levels)
    s = level_scores.double().numpy()
    return _credit(s[better.numpy()], s[worse.numpy()])


def pair_credit(a: torch.Tensor, b: torch.Tensor, a_better: torch.Tensor) -> np.ndarray:
    """Credit per pair (1 correct, 0.5 tie, 0 wrong) of scores ``a``, ``b`` (K,) (higher better) given ``a_better`` (K,) bool."""
    a_, b_ = a.double().numpy(), b.double().numpy()
    ab = a_better.numpy()
    return np.where(ab, _credit(a_, b_), _credit(b_, a_))


def format_credit(credit: np.ndarray, ci: bool) -> str:
    """Mean credit as ``0.83`` (``ci`` False) or ``0.833 [0.71, 0.94]`` with a 95 % bootstrap CI
    (500 resamples, seed 0); ``–`` for no pairs."""
    if credit.size == 0:
        return "–"
    if not ci:
        return f"{credit.mean():.2f}"
    lo_hi = bootstrap_ci(np.mean, credit, n_boot=500, seed=0)
    return f"{credit.mean():.3f} [{lo_hi.low:.2f}, {lo_hi.high:.2f}]"


# ----------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class CreditColumn:
    """One metric's column of the ladder and lesion tables."""

    name: str
    ladder: np.ndarray  #: (N * (L - 1),) credit per consecutive ladder pair, ladder-major
    lesion: np.ndarray  #: (M,) credit per lesion-rule pair


@dataclass(frozen=True)
class BranchAnalysis:
    """Where order is lost, for one weight file: ladder credit of the score, of each branch quality
    and of each branch vector's size (a larger vector for the stronger artefact counts as correct)."""

    name: str
    design: str
    sha: str
    columns: list[tuple[str, np.ndarray]]  #: (markdown label, (N * (L - 1),) credit)
    region_changed: np.ndarray  #: (N * (L - 1),) bool: the lesion region changed between the levels


@dataclass(frozen=True)
class MisregistrationTable:
    """The structure rule's table: per K-CROSS weight file the credit of the score and each branch
    quality, per baseline the credit of its score; every array (K,)."""

    n_pairs: int
    kcross: list[tuple[str, dict[str, np.ndarray]]]  #: (name, credit by :data:`QUALITY_COLUMNS`)
    baselines: list[tuple[str, np.ndarray]]


def branch_analysis(name: str, encoded: EncodedLadderSet, n_ladders: int, n_levels: int) -> BranchAnalysis:
    """:class:`BranchAnalysis` of the ladder features of one weight file."""
    e = encoded["ladders"]
    region = e["region"].view(n_ladders, n_levels, -1)
    jumps = (region[:, 1:] != region[:, :-1]).any(dim=-1).flatten().numpy()
    cols: list[tuple[str, torch.Tensor, int]] = [
        ("score", e["score"], 1), ("complex", e["complex"], 1), ("natural", e["natural"], 1),
        ("tumor", e["tumor"], 1), ("structure", e["structure"], 1),
        ("\\|v_complex\\|", e["norm_complex"], -1), ("\\|v_tumor\\|", e["norm_tumor"], -1),
        ("\\|v_structure\\|", e["norm_structure"], -1)]
    if "lesion_change" in e:
        cols.append(("lesion change", e["lesion_change"], -1))
    return BranchAnalysis(name, encoded["design"], encoded["sha"],
                          [(label, ladder_credit(sign * v, n_ladders, n_levels)) for label, v, sign in cols], jumps)


def misregistration_table(
    weights: Sequence[tuple[str, str]], misreg: MisregistrationSet, cache: Path, key: str, baselines: Sequence[str]
) -> MisregistrationTable:
    """Credits on the structure rule's pairs of each (name, weight file) in ``weights`` (encoded via
    :func:`encode_misregistration`, ``key`` = ``<set key>-<n_pairs>``) and each baseline metric."""
    rows = []
    for name, path in weights:
        em = encode_misregistration(path, misreg, cache, key)
        rows.append((name, {k: pair_credit(em["a"][k], em["b"][k], misreg["a_better"]) for k in QUALITY_COLUMNS}))
    base = [(b, pair_credit(*baseline_pair_scores(b, misreg), misreg["a_better"])) for b in baselines]
    return MisregistrationTable(len(misreg["case"]), rows, base)


def _pair_family(data: LadderSet) -> np.ndarray:
    n_levels = data["ladders"]["images"].shape[1]
    return np.repeat(np.array(data["ladders"]["family"]), n_levels - 1)


def render_ladders_page(
    *,
    title: str,
    intro: str | None,
    command: str,
    seconds: float,
    data: LadderSet,
    columns: Sequence[CreditColumn],
    unseen: set[str],
    misregistration: MisregistrationTable | None,
    analyses: Sequence[BranchAnalysis],
) -> str:
    """The markdown page of ``benchmarks/ladders_table.py`` (``docs/results-ladders.md``).

    ``command`` is the command line quoted under the title, ``seconds`` the time it took, ``columns``
    the ladder/lesion credits (a CI for the first one), ``unseen`` the families and lesion edits
    marked *unseen*, ``misregistration`` the structure rule (None: no section).
    """
    lad, les = data["ladders"], data["lesion"]
    n_ladders, n_levels = lad["images"].shape[:2]
    pair_family = _pair_family(data)
    edits = np.array(les["edit"])

    def mark(f: str) -> str:
        return f"{f} *(unseen)*" if f in unseen else f

    lines = [
        f"# {title}",
        "",
        *([intro, ""] if intro is not None else []),
        f"Generated by `{command}`",
        f"({seconds:.0f} s including cached parts). Subjects: {len(data['cases'])} validation subjects "
        f"present on the machine ({', '.join(data['cases'])}); {n_ladders} ladders of {n_levels} levels "
        f"({n_ladders * (n_levels - 1)} consecutive pairs), {len(edits)} lesion-rule pairs. ",
        "",
        "Constructed orderings, not radiologist judgements. Accuracy = fraction of pairs where the metric "
        "prefers the better side (ties 0.5), 95 % bootstrap CI for the first K-CROSS column."
        + (" *unseen*: kept out of the stage-2 training of the shipped weights." if unseen else ""),
        "",
        "## Severity ladders: consecutive levels (the milder must score better)",
        "",
        "| family | levels | " + " | ".join(c.name for c in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for fam in LADDERS:
        rows = pair_family == fam
        if not rows.any():
            continue
        cells = [format_credit(c.ladder[rows], i == 0) for i, c in enumerate(columns)]
        levels = ", ".join(f"{v:g}" for v in LADDERS[fam].levels)
        lines.append(f"| {mark(fam)} | {levels} | " + " | ".join(cells) + " |")
    cells = [format_credit(c.ladder, i == 0) for i, c in enumerate(columns)]
    lines.append("| **all** | | " + " | ".join(cells) + " |")
    worst = min((columns[0].ladder[pair_family == f].mean(), f) for f in set(pair_family)) if columns else None
    lines += [
        "",
        "## Lesion rules: the lesion edit must score worse than a global error of equal MSE",
        "",
        "| lesion edit | pairs | " + " | ".join(c.name for c in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for edit in ALL_LESION_EDITS:
        rows = edits == edit
        if rows.any():
            cells = [format_credit(c.lesion[rows], i == 0) for i, c in enumerate(columns)]
            lines.append(f"| {mark(edit)} | {int(rows.sum())} | " + " | ".join(cells) + " |")
    if misregistration is not None:
        lines += [
            "",
            "## Structure rule: a misregistered fake must score worse than an aligned one of equal MSE",
            "",
            f"{misregistration.n_pairs} pairs: the fake rotated by 1-4 degrees and shifted by 0.5-2 px "
            "(`distortions.misregister`) against the aligned image with Rician noise, blur or bias field of "
            "the same MSE. Per K-CROSS weight file: the score and each branch quality alone.",
            "",
            "| metric | " + " | ".join(QUALITY_COLUMNS) + " |",
            "|---|" + "---|" * len(QUALITY_COLUMNS),
        ]
        for name, credits in misregistration.kcross:
            cells = [format_credit(credits[k], k == "score") for k in QUALITY_COLUMNS]
            lines.append(f"| K-CROSS {name} | " + " | ".join(cells) + " |")
        for b, credit in misregistration.baselines:
            lines.append(f"| {b} | {format_credit(credit, False)} |" + " |" * (len(QUALITY_COLUMNS) - 1))
    lines += ["", "## Where order is lost (analysis, issue 16)", ""]
    lines += [
        "Per weight file and family: ladder accuracy of the score, of each branch quality, of the size of each "
        "branch's difference vector before the score networks (`|v|`: a larger vector for the stronger "
        "artefact counts as correct), and the fraction of ladder steps where the lesion region the tumor "
        "branch compares changed between the two levels.",
        "",
    ]
    for analysis in analyses:
        cols = analysis.columns
        lines += [f"### K-CROSS {analysis.name} (design {analysis.design}, sha256 {analysis.sha}…)", "",
                  "| family | " + " | ".join(c[0] for c in cols) + " | region changed |",
                  "|---|" + "---|" * (len(cols) + 1)]
        for fam in LADDERS:
            rows = pair_family == fam
            if not rows.any():
                continue
            cells = [format_credit(credit[rows], False) for _, credit in cols]
            lines.append(f"| {mark(fam)} | " + " | ".join(cells) + f" | {analysis.region_changed[rows].mean():.2f} |")
        lines.append("")
    if worst is not None:
        lines.append(f"Lowest family of the first column: {worst[1]} ({worst[0]:.3f}).")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- leave one family out


def lofo_config(path: str | Path, threads: int) -> Stage2Config:
    """The stage-2 config at ``path`` with every ladder family and lesion edit in its training pairs."""
    config = load_config(Stage2Config, path)
    return replace(config, ladder_families=list(LADDERS), lesion_edits=list(ALL_LESION_EDITS), threads=threads)


def lofo_networks(base_weights: str | Path, config: Stage2Config) -> KCrossNetworks:
    """The segmenter and stage-1 networks of ``base_weights`` under fresh score heads of ``config.design``."""
    return with_design(assemble_networks(base_weights=base_weights), config.design)


def lofo_bank_key(config: Stage2Config, base_sha: str) -> str:
    """The 12-hex-digit key of the training bank's cache file ``lofo-train-<key>.pt``, from ``base_sha``
    (the base weight file's SHA-256) and every field of ``config``."""
    return hashlib.sha1(f"{base_sha}|{sorted(vars(config).items())}".encode()).hexdigest()[:12]


def lofo_training_bank(config: Stage2Config, nets: KCrossNetworks) -> FeatureBank:
    """The training subjects' pairs ``config`` asks for (:func:`lofo_config`: every family and lesion
    edit), encoded by ``nets``: branch vectors ``vc``, ``vt``, ``vs``, ``vm`` (P, ...) of side a, the
    same with ``_b`` of side b, ``a_better`` (P,), ``rules`` (P,) ``<kind>:<family or edit>``."""
    return training_bank(config, KCross.from_networks(nets))


def fit_heads(config: Stage2Config, nets: KCrossNetworks, bank: FeatureBank, drop: str | None = None) -> ScoreHeads:
    """Score heads fitted by :func:`~kcross_metric.train.stage2.train_stage2` on ``bank``, without the
    pairs of family or lesion edit ``drop`` (rules ``<kind>:<drop>``) when given."""
    train = bank if drop is None else select_pairs(bank, lambda r: r.split(":", 1)[1] != drop)
    with tempfile.TemporaryDirectory() as tmp:
        return train_stage2(config, tmp, nets, train_bank=train, resume=False, verbose=False)


def head_scores(heads: ScoreHeads, feats: Features) -> torch.Tensor:
    """Scores (N,) of ``heads`` on the raw branch vectors of :func:`encode_features` rows."""
    with torch.no_grad():
        scores: torch.Tensor = heads(feats["vc"], feats["vt"], feats["vs"], feats["vm"])
    return scores


def heads_credits(heads: ScoreHeads, encoded: EncodedLadderSet, data: LadderSet) -> tuple[np.ndarray, np.ndarray]:
    """(ladder credit (N * (L - 1),), lesion credit (M,)) of ``heads`` on an encoded ladder set."""
    n_ladders, n_levels = data["ladders"]["images"].shape[:2]
    return (ladder_credit(head_scores(heads, encoded["ladders"]), n_ladders, n_levels),
            pair_credit(head_scores(heads, encoded["lesion_a"]), head_scores(heads, encoded["lesion_b"]),
                        data["lesion"]["a_better"]))


@dataclass(frozen=True)
class LofoRow:
    """One row of the leave-one-family-out table."""

    label: str  #: the family, or ``<edit> (lesion rule)``
    all_credit: np.ndarray  #: (P,) credit of the heads fitted on every family
    left_credit: np.ndarray  #: (P,) credit of the heads fitted without this one

    def markdown(self) -> str:
        """The table row (a bootstrap CI for the left-out column)."""
        return (f"| {self.label} | {self.all_credit.size} | {format_credit(self.all_credit, False)} | "
                f"{format_credit(self.left_credit, True)} |")


def leave_one_out_rows(
    fit: Callable[[str], ScoreHeads],
    encoded: EncodedLadderSet,
    data: LadderSet,
    all_credits: tuple[np.ndarray, np.ndarray],
) -> Iterator[LofoRow]:
    """Per ladder family, then per lesion edit present in ``data``: refit with ``fit(name)`` (the heads
    without that family's or edit's pairs, e.g. ``lambda d: fit_heads(config, nets, bank, d)``) and
    yield its row against ``all_credits`` (:func:`heads_credits` of the heads fitted on everything)."""
    pair_family = _pair_family(data)
    edits = np.array(data["lesion"]["edit"])
    all_ladder, all_lesion = all_credits
    for fam in LADDERS:
        rows = pair_family == fam
        if rows.any():
            left_ladder, _ = heads_credits(fit(fam), encoded, data)
            yield LofoRow(fam, all_ladder[rows], left_ladder[rows])
    for edit in ALL_LESION_EDITS:
        rows = edits == edit
        if rows.any():
            _, left_lesion = heads_credits(fit(edit), encoded, data)
            yield LofoRow(f"{edit} (lesion rule)", all_lesion[rows], left_lesion[rows])


def render_lofo_header(
    *, command: str, seconds: float, config_name: str, n_train_pairs: int, base_name: str, base_sha: str, data: LadderSet
) -> list[str]:
    """The lines of ``docs/results-lofo.md`` above the table rows (``seconds``: time at the first fit)."""
    n_ladders = data["ladders"]["images"].shape[0]
    return [
        "# Leave-one-family-out (validation subjects)",
        "",
        f"Generated by `{command}`",
        f"({seconds:.0f} s so far at the first fit). Score heads refitted with `{config_name}` on the "
        f"training subjects' pairs ({n_train_pairs} pairs incl. every family) on the networks of "
        f"`{base_name}` (sha256 {base_sha[:16]}…); tested on {n_ladders} validation ladders and "
        f"{len(data['lesion']['edit'])} lesion-rule pairs of `benchmarks/ladders_table.py` (same seed and sizes). "
        "Constructed orderings.",
        "",
        "| family or lesion edit | pairs | all families in training | this one left out |",
        "|---|---|---|---|",
    ]


def render_lofo_footer(seconds: float) -> list[str]:
    """The lines below the table (``seconds``: total time)."""
    return ["", f"The shipped weights leave out {', '.join(HELD_OUT_FAMILIES + HELD_OUT_LESION_EDITS)} "
            f"(reported as unseen in docs/results-ladders.md). Total time {seconds:.0f} s."]
