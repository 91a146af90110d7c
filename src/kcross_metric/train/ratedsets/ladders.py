"""Severity ladders and lesion rules: the constructed orderings a monotone, lesion-aware score must follow.

* A **severity ladder** is one reference slice distorted by one family at increasing severities
  (:data:`LADDERS`, from barely visible up), with the same random draws at every level. Of two
  levels the milder is better; a ladder of L levels gives L-1 *consecutive* pairs, the hardest
  ones. A ladder is kept only if its MSE against the reference strictly increases with the level
  (so the ordering is not an artefact of a saturating or random severity).
* A **lesion rule** pair sets one lesion edit (erased, faded, shrunk, moved, invented:
  :data:`~kcross_metric.train.ratedsets.twoafc.ALL_LESION_EDITS`) against a global distortion of
  equal MSE; the global one is better (:func:`~kcross_metric.train.ratedsets.twoafc._lesion_pair`).

These orderings are *constructed*, not radiologist judgements (docs/radiologist-agreement.md).
:data:`HELD_OUT_FAMILIES` and :data:`HELD_OUT_LESION_EDITS` never enter stage-2 training of the
shipped weights, so the results pages can report them as unseen families.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...data import distortions as D
from ...errors import ConfigError
from .twoafc import (
    ALL_LESION_EDITS,
    GLOBAL_FOR_MATCH,
    MIN_LESION_PX,
    CaseSlices,
    TwoAFCPair,
    _Item,
    _lesion_pair,
    _lesion_px,
    _make_pair,
    _need,
    _t,
    match_global,
)

__all__ = [
    "HELD_OUT_FAMILIES",
    "HELD_OUT_LESION_EDITS",
    "LADDERS",
    "Ladder",
    "LadderFamily",
    "build_ladders",
    "build_lesion_rules",
    "build_misregistration_pairs",
    "consecutive_pairs",
]

Apply = Callable[[torch.Tensor, float, "torch.Tensor | None", int], torch.Tensor]


@dataclass(frozen=True)
class LadderFamily:
    apply: Apply  #: (x, severity, mask, seed) -> distorted x
    levels: tuple[float, ...]  #: increasing severity (worse image)
    needs_lesion: bool = False


def _contrast(x: torch.Tensor, s: float, m: torch.Tensor | None, g: int) -> torch.Tensor:
    # gamma = exp(+-s); the direction is fixed per ladder by the seed's parity
    return D.contrast_change(x, gamma=math.exp(s if g % 2 else -s))


#: Families of :mod:`kcross_metric.data.distortions` as fine ladders, from very mild up.
LADDERS: dict[str, LadderFamily] = {
    "undersampling_equispaced": LadderFamily(
        lambda x, s, m, g: D.undersample(x, s, 0.08, pattern="equispaced", generator=g), (1.5, 2.0, 3.0, 4.0, 6.0)),
    "undersampling_random": LadderFamily(
        lambda x, s, m, g: D.undersample(x, s, 0.08, pattern="random", generator=g), (1.5, 2.0, 3.0, 4.0, 6.0)),
    "ghosting": LadderFamily(lambda x, s, m, g: D.ghosting(x, s), (0.05, 0.1, 0.2, 0.4, 0.8)),
    "motion": LadderFamily(lambda x, s, m, g: D.motion(x, 0.3, s, generator=g), (0.25, 0.5, 1.0, 2.0, 4.0)),
    "spike": LadderFamily(lambda x, s, m, g: D.spike(x, s, generator=g), (0.01, 0.02, 0.05, 0.1, 0.2)),
    "rician_noise": LadderFamily(lambda x, s, m, g: D.rician_noise(x, s, generator=g), (0.005, 0.01, 0.02, 0.04, 0.08)),
    "gaussian_noise": LadderFamily(
        lambda x, s, m, g: D.gaussian_noise(x, s, generator=g), (0.005, 0.01, 0.02, 0.04, 0.08)),
    "gaussian_blur": LadderFamily(lambda x, s, m, g: D.gaussian_blur(x, s), (0.3, 0.5, 0.8, 1.2, 2.0)),
    "bias_field": LadderFamily(lambda x, s, m, g: D.bias_field(x, s, generator=g), (0.025, 0.05, 0.1, 0.2, 0.4)),
    "contrast": LadderFamily(_contrast, (0.025, 0.05, 0.1, 0.2, 0.4)),
    "lesion_shrink": LadderFamily(
        lambda x, s, m, g: D.shrink_lesion(x, _need(m), int(s), generator=g), (1, 2, 3, 4, 6), True),
    # severity = 1 - the remaining fraction of lesion contrast
    "lesion_intensity": LadderFamily(
        lambda x, s, m, g: D.change_lesion_intensity(x, _need(m), 1.0 - s), (0.1, 0.25, 0.5, 0.75, 1.0), True),
}  # fmt: skip

#: Kept out of the shipped weights' stage-2 training and reported as unseen (issue 21): one k-space
#: acquisition family, one smooth intensity family, one lesion rule.
HELD_OUT_FAMILIES: tuple[str, ...] = ("motion", "bias_field")
HELD_OUT_LESION_EDITS: tuple[str, ...] = ("lesion_move",)


@dataclass
class Ladder:
    """One reference slice at every level of one family: ``images`` (L,1,H,W) in [0, 1]."""

    case: str
    slice: int
    contrast: str
    source_contrast: str
    family: str
    severities: tuple[float, ...]
    reference: torch.Tensor  #: (1,1,H,W)
    source: torch.Tensor | None  #: (1,1,H,W) another contrast of the slice
    mask: torch.Tensor | None  #: (1,1,H,W) lesion mask
    images: torch.Tensor
    mse: tuple[float, ...]


def _items(cases: Sequence[CaseSlices], lesion: bool) -> list[_Item]:
    items = [_Item(ci, si, c) for ci, d in enumerate(cases) for c in d.images for si in range(len(d.slices))]
    return [it for it in items if _lesion_px(cases[it.case], it.index) >= MIN_LESION_PX] if lesion else items


def build_ladders(
    cases: Sequence[CaseSlices],
    *,
    families: Sequence[str] | None = None,
    n_per_family: int,
    seed: int = 0,
    max_tries_factor: int = 10,
) -> list[Ladder]:
    """``n_per_family`` ladders of each family (default: every one of :data:`LADDERS`), on random
    slices and contrasts of ``cases``; lesion families only on slices with a lesion of at least
    :data:`~kcross_metric.train.ratedsets.twoafc.MIN_LESION_PX` pixels (skipped where none has one)."""
    names = list(LADDERS) if families is None else list(families)
    unknown = sorted(set(names) - set(LADDERS))
    if unknown:
        raise ConfigError(f"unknown ladder families {unknown}; known: {', '.join(LADDERS)}")
    if int(n_per_family) < 0:
        raise ConfigError(f"n_per_family must be >= 0, got {n_per_family!r}")
    rng = np.random.default_rng(seed)
    plain, with_lesion = _items(cases, False), _items(cases, True)
    if not plain:
        raise ConfigError("no slices to build ladders from")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one small slice at a time: threads cost more than they save
    out: list[Ladder] = []
    try:
        for family in names:
            spec = LADDERS[family]
            pool = with_lesion if spec.needs_lesion else plain
            made = tries = 0
            while pool and made < n_per_family and tries < n_per_family * max_tries_factor:
                tries += 1
                item = pool[int(rng.integers(len(pool)))]
                data = cases[item.case]
                seed_i = int(rng.integers(2**31 - 1))
                others = [c for c in data.images if c != item.contrast]
                src_c = str(rng.choice(others)) if others else ""
                ref = _t(data.images[item.contrast][item.index])
                mask = None if data.lesion is None else _t(data.lesion[item.index].astype(np.float32))
                images = torch.cat([spec.apply(ref, float(s), mask, seed_i) for s in spec.levels])
                mse = tuple(float(D.mse(images[i : i + 1], ref)) for i in range(len(spec.levels)))
                if not all(b > a for a, b in zip(mse, mse[1:])) or mse[0] <= 0:
                    continue
                out.append(Ladder(
                    data.case, data.slices[item.index], item.contrast, src_c, family, spec.levels, ref,
                    _t(data.images[src_c][item.index]) if src_c else None, mask, images, mse,
                ))  # fmt: skip
                made += 1
    finally:
        torch.set_num_threads(threads)
    return out


def build_lesion_rules(
    cases: Sequence[CaseSlices],
    *,
    edits: Sequence[str] | None = None,
    n_per_edit: int,
    seed: int = 0,
    max_tries_factor: int = 20,
) -> list[TwoAFCPair]:
    """``n_per_edit`` lesion-rule pairs per edit (default: every one of ``ALL_LESION_EDITS``) against
    Rician noise, blur or bias field of equal MSE (rule ``lesion_vs_global``, family = the edit)."""
    names = list(ALL_LESION_EDITS) if edits is None else list(edits)
    unknown = sorted(set(names) - set(ALL_LESION_EDITS))
    if unknown:
        raise ConfigError(f"unknown lesion edits {unknown}; known: {', '.join(ALL_LESION_EDITS)}")
    rng = np.random.default_rng(seed)
    pool = _items(cases, True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pairs: list[TwoAFCPair] = []
    try:
        for edit in names:
            made = tries = 0
            while pool and made < n_per_edit and tries < n_per_edit * max_tries_factor:
                tries += 1
                item = pool[int(rng.integers(len(pool)))]
                pair = _lesion_pair(rng, cases[item.case], item, edit)
                if pair is not None:
                    pair.extra["families"] = pair.family  # "global|edit" or "edit|global", a first
                    pair.family = edit
                    pairs.append(pair)
                    made += 1
    finally:
        torch.set_num_threads(threads)
    for i, p in enumerate(pairs):
        p.pair_id = f"l{i:05d}"
    return pairs


#: rotation (degrees) and translation (pixels, each axis) ranges of the misregistered side
MISREGISTRATION = {"angle": (1.0, 4.0), "shift": (0.5, 2.0)}


def build_misregistration_pairs(
    cases: Sequence[CaseSlices], *, n_pairs: int, seed: int = 0, max_tries_factor: int = 20
) -> list[TwoAFCPair]:
    """Structure rule: a misregistered fake (rotated and shifted, :func:`distortions.misregister`)
    against an aligned one with Rician noise, blur or bias field of equal MSE; the aligned one is
    better (rule ``misregistration_vs_global``). Tests whether the structure branch sees anatomy in
    the wrong place rather than pixel error (issue 21)."""
    rng = np.random.default_rng(seed)
    pool = _items(cases, False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pairs: list[TwoAFCPair] = []
    try:
        tries = 0
        while pool and len(pairs) < n_pairs and tries < n_pairs * max_tries_factor:
            tries += 1
            item = pool[int(rng.integers(len(pool)))]
            data = cases[item.case]
            ref = _t(data.images[item.contrast][item.index])
            angle = float(rng.uniform(*MISREGISTRATION["angle"])) * (1 if rng.random() < 0.5 else -1)
            shift = tuple(float(rng.uniform(*MISREGISTRATION["shift"])) * (1 if rng.random() < 0.5 else -1) for _ in range(2))
            worse = D.misregister(ref, angle, shift)  # type: ignore[arg-type]
            target = float(D.mse(worse, ref))
            seed_i = int(rng.integers(2**31 - 1))
            match, glob = match_global(ref, target, seed_i, [str(g) for g in rng.permutation(list(GLOBAL_FOR_MATCH))])
            if match is None or target <= 0:
                continue
            pairs.append(_make_pair(
                rng, data, item, rule="misregistration_vs_global", family="misregistration", better_img=match.image,
                worse_img=worse, sev_better=match.severity, sev_worse=abs(angle), fam_better=glob,
                fam_worse="misregistration", extra={"mse_better": match.mse, "mse_worse": target, "shift": shift},
            ))  # fmt: skip
            pairs[-1].family = "misregistration"
    finally:
        torch.set_num_threads(threads)
    for i, p in enumerate(pairs):
        p.pair_id = f"m{i:05d}"
    return pairs


def consecutive_pairs(n_ladders: int, n_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices ``(better, worse)`` into a (n_ladders * n_levels) stack of ladder levels, for the
    ``n_levels - 1`` consecutive pairs of every ladder (level i is better than level i+1)."""
    base = torch.arange(n_ladders)[:, None] * n_levels
    better = (base + torch.arange(n_levels - 1)[None]).flatten()
    return better, better + 1
