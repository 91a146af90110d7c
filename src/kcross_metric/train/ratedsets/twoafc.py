"""Clinically ordered 2AFC pairs: two distorted versions of one reference slice, one worse by construction.

No human ratings of MR images exist on this project's machines (see ``docs/datasets/twoafc.md``),
so the ordering comes from rules a radiologist would agree with (K-CROSS paper: the metric must
rank a lost tumour below an equally large but diagnostically harmless pixel error):

1. ``same_family`` -- one distortion family at a mild and a clearly stronger severity (e.g.
   acceleration R=2..3 vs R=6..8); the milder one is better. A pair is kept only if the worse
   image also has clearly larger MSE (>= 1.5x and >= 2e-4 more), so the ordering is not an
   artefact of a saturating severity.
2. ``lesion_vs_global`` -- a lesion edit (erase, shrink by >= 3 px, or contrast reduced to
   <= 30%) against a global distortion (Rician noise, blur or bias field) with the SAME MSE vs
   the reference (bisection, within 2%); the lesion-preserving global distortion is better. The
   global severity is capped (:data:`GLOBAL_MAX_SEVERITY`: noise sigma <= 0.08, blur sigma <= 1.5
   px, bias log-amplitude <= 0.5) so the "better" image stays diagnostic.
   Only slices whose whole-tumour mask has >= :data:`MIN_LESION_PX` pixels and edits that change
   the lesion by >= :data:`MIN_LESION_CHANGE` on average (the edit is visible in that contrast).
3. ``synthesized_epochs`` -- :func:`pairs_from_synthesized`, a hook for real synthesized outputs.

Data (real cases in ``$KCROSS_SHARED_DIR/data`` or a given ``data_dir``, case split from :mod:`kcross_metric.train.splits`) comes
from :func:`kcross_metric.train.data.load_case`, the loader of all training data: volumes in the
package's axis convention (:func:`kcross_metric.data.io.load_volume`), normalised per volume with
:func:`kcross_metric.data.io.normalize_volume` (0.5th/99.5th percentiles inside the brain, clipped to
[0, 1], background 0) exactly as inference on files; contrasts ``t1``, ``t1c``, ``t2``, ``flair``.
The axial slices ``Volume.data[k]`` for ``k`` in ``slice_range`` (default 50..80 inclusive) are
centre-cropped/padded to ``size``. ``BraTS-GLI-00001-000`` has no segmentation: it gets rule 1
only and an empty ``mask`` column; the lesion rules of the validation split come from the BRATS
2013 cases. The healthy IXI subject has an all-zero lesion mask.
"""

from __future__ import annotations

import csv
import hashlib
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..._util.shared_data import ENV_VAR, shared_path
from ...data import distortions as D
from ...errors import ConfigError, FileFormatError, OutputExistsError, ShapeError
from .. import data as train_data

__all__ = [
    "CSV_COLUMNS",
    "MIN_LESION_CHANGE",
    "MIN_LESION_PX",
    "CaseSlices",
    "TwoAFCPair",
    "build_twoafc_set",
    "build_synthesized_pairs",
    "load_case",
    "load_twoafc_set",
    "pairs_from_synthesized",
    "write_twoafc_set",
]

CSV_COLUMNS = (
    "pair_id", "case", "slice", "contrast", "source_contrast", "rule", "family",
    "severity_a", "severity_b", "better", "reference", "a", "b", "source", "mask",
)  # fmt: skip

#: Rule 2 and the lesion families of rule 1 need a whole-tumour mask of at least this many pixels
#: in the slice (about 4 cm^2 at the 1 mm in-plane spacing of BraTS).
MIN_LESION_PX = 400
#: ... and a lesion edit whose mean absolute change inside the mask is at least this (data_range 1).
MIN_LESION_CHANGE = 0.03
#: Rule 1 keeps a pair only if MSE(worse) >= MSE_RATIO * MSE(better) and exceeds it by MSE_GAP.
MSE_RATIO = 1.5
MSE_GAP = 2e-4
#: Rule 2: relative tolerance of the equal-MSE match.
MSE_MATCH_TOL = 0.02

# ----------------------------------------------------------------------------- data


@dataclass
class CaseSlices:
    """Axial slices of one case: ``images[contrast]`` (S,H,W) float32 in [0,1] (contrasts ``t1``,
    ``t1c``, ``t2``, ``flair``), ``lesion`` (S,H,W) bool or None when no segmentation exists,
    ``slices`` the S axial indices."""

    case: str
    slices: list[int]
    images: dict[str, np.ndarray]
    lesion: np.ndarray | None


def load_case(
    case: str,
    *,
    slice_range: tuple[int, int] = (50, 80),
    size: int = 256,
    data_dir: str | Path | None = None,
) -> CaseSlices:
    """Load the axial slices ``slice_range[0]..slice_range[1]`` (inclusive) of every contrast of ``case``.

    A thin wrapper of :func:`kcross_metric.train.data.load_case` (the loader of all training data,
    normalised like inference on files) and :func:`~kcross_metric.train.data.case_slices`. Healthy
    subjects (IXI) get an all-zero lesion mask. Returns images in [0, 1] of shape (S, size, size).
    """
    lo, hi = int(slice_range[0]), int(slice_range[1])
    if not 0 <= lo <= hi:
        raise ConfigError(f"slice_range must be (first, last) with 0 <= first <= last, got {slice_range!r}")
    if int(size) < 8:
        raise ConfigError(f"size must be >= 8, got {size!r}")
    root = Path(data_dir) if data_dir is not None else shared_path("data")
    if root is None or not root.is_dir():
        raise ConfigError(f"real data folder not found (set {ENV_VAR} to the shared folder or pass data_dir)")
    loaded = train_data.load_case(case, root)
    slices = [k + loaded.slice_offset for k in range(lo, hi + 1)]
    try:
        images, lesion = train_data.case_slices(loaded, slices, int(size))
    except ConfigError as exc:
        raise ConfigError(f"slice_range {slice_range!r}: {exc}") from exc
    if lesion is None and train_data.is_healthy(case):
        lesion = np.zeros_like(next(iter(images.values())), dtype=bool)
    return CaseSlices(case, slices, images, lesion)


# ----------------------------------------------------------------------------- pairs


@dataclass
class TwoAFCPair:
    """One 2AFC pair. Images are float32 tensors (1,1,H,W) in [0,1]; ``source`` is the same slice in
    another contrast (None if unknown), ``mask`` the whole-tumour mask (None if no segmentation)."""

    pair_id: str
    case: str
    slice: int
    contrast: str
    source_contrast: str
    rule: str
    family: str
    severity_a: float
    severity_b: float
    better: str  # "a" or "b"
    reference: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    source: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def worse(self) -> str:
        return "b" if self.better == "a" else "a"


Apply = Callable[[torch.Tensor, float, "torch.Tensor | None", int], torch.Tensor]


@dataclass(frozen=True)
class _Family:
    apply: Apply  # (x, severity, mask, seed) -> distorted x
    mild: tuple[float, float]
    severe: tuple[float, float]
    needs_lesion: bool = False
    integer: bool = False


FAMILIES: dict[str, _Family] = {
    "undersampling_equispaced": _Family(
        lambda x, s, m, g: D.undersample(x, s, 0.08, pattern="equispaced", generator=g), (2.0, 3.0), (6.0, 8.0)
    ),
    "undersampling_random": _Family(
        lambda x, s, m, g: D.undersample(x, s, 0.08, pattern="random", generator=g), (2.0, 3.0), (6.0, 8.0)
    ),
    "ghosting": _Family(lambda x, s, m, g: D.ghosting(x, s), (0.15, 0.3), (0.8, 1.2)),
    "motion": _Family(lambda x, s, m, g: D.motion(x, 0.3, s, generator=g), (0.5, 1.0), (3.0, 5.0)),
    "spike": _Family(lambda x, s, m, g: D.spike(x, s, generator=g), (0.03, 0.06), (0.2, 0.35)),
    "rician_noise": _Family(lambda x, s, m, g: D.rician_noise(x, s, generator=g), (0.01, 0.02), (0.05, 0.08)),
    "gaussian_blur": _Family(lambda x, s, m, g: D.gaussian_blur(x, s), (0.5, 0.8), (1.6, 2.5)),
    "bias_field": _Family(lambda x, s, m, g: D.bias_field(x, s, generator=g), (0.05, 0.1), (0.3, 0.45)),
    # severity = gamma; the pair's direction (brighter or darker) is drawn per pair
    "contrast": _Family(lambda x, s, m, g: D.contrast_change(x, gamma=s), (0.05, 0.1), (0.35, 0.5)),
    "lesion_shrink": _Family(
        lambda x, s, m, g: D.shrink_lesion(x, _need(m), int(s), generator=g), (1, 2), (4, 6), True, True
    ),
    "lesion_intensity": _Family(
        lambda x, s, m, g: D.change_lesion_intensity(x, _need(m), s), (0.75, 0.9), (0.1, 0.3), True
    ),
}

#: rule 2: worse side (lesion edits; severity ranges) and better side (global, severity found by bisection)
LESION_EDITS: dict[str, tuple[float, float]] = {
    "lesion_erase": (1.0, 1.0),  # severity 1 = fully erased
    "lesion_shrink": (3, 6),  # erosion in px
    "lesion_intensity": (0.0, 0.3),  # remaining fraction of lesion contrast
}
def _blur_any_seed(x: torch.Tensor, sigma: float, *, generator: int = 0) -> torch.Tensor:
    return D.gaussian_blur(x, sigma)


#: (x, severity, *, generator) -> distorted x
GLOBAL_FOR_MATCH: dict[str, Callable[..., torch.Tensor]] = {
    "rician_noise": D.rician_noise,
    "gaussian_blur": _blur_any_seed,
    "bias_field": D.bias_field,
}
#: rule 2: largest global severity still accepted as "diagnostically harmless"; a lesion edit whose
#: MSE needs more is paired with another global family or dropped (no blur that hides the anatomy).
GLOBAL_MAX_SEVERITY: dict[str, float] = {"rician_noise": 0.08, "gaussian_blur": 1.5, "bias_field": 0.5}


def _need(mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        raise ConfigError("this distortion family needs a lesion mask")
    return mask


#: every lesion edit of the lesion rules (issue 21): the three of rule 2 plus a lesion moved elsewhere
#: and a lesion invented (a copy of the slice's lesion pasted on healthy brain); severity 1 = done.
ALL_LESION_EDITS: dict[str, tuple[float, float]] = {
    **LESION_EDITS,
    "lesion_move": (1.0, 1.0),
    "lesion_invent": (1.0, 1.0),
}


def _apply_edit(name: str, x: torch.Tensor, s: float, mask: torch.Tensor, seed: int) -> torch.Tensor:
    return _edit_and_region(name, x, s, mask, seed)[0]


def _edit_and_region(
    name: str, x: torch.Tensor, s: float, mask: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The edited image and the region where the edit must be visible (the lesion, or where a moved
    or invented lesion lands). A move or invention with no place on healthy brain returns ``x``."""
    if name == "lesion_erase":
        return D.erase_lesion(x, mask, generator=seed), mask
    if name == "lesion_shrink":
        return D.shrink_lesion(x, mask, int(s), generator=seed), mask
    if name == "lesion_intensity":
        return D.change_lesion_intensity(x, mask, s), mask
    if name in ("lesion_move", "lesion_invent"):
        shift = D.find_lesion_shift(x, mask, generator=seed)
        if shift is None:
            return x, mask
        target = torch.roll(mask, shifts=shift, dims=(-2, -1))
        if name == "lesion_move":
            return D.move_lesion(x, mask, shift, generator=seed), torch.maximum(mask, target)
        return D.implant_lesion(x, mask, shift), target
    raise ConfigError(f"unknown lesion edit {name!r}")


@dataclass(frozen=True)
class _Item:
    case: int  # index into the loaded cases
    index: int  # index into CaseSlices.slices
    contrast: str


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float], integer: bool) -> float:
    lo, hi = lo_hi
    if integer:
        return float(rng.integers(int(lo), int(hi) + 1))
    return float(rng.uniform(lo, hi))


def _make_pair(
    rng: np.random.Generator,
    data: CaseSlices,
    item: _Item,
    *,
    rule: str,
    family: str,
    better_img: torch.Tensor,
    worse_img: torch.Tensor,
    sev_better: float,
    sev_worse: float,
    fam_better: str,
    fam_worse: str,
    extra: dict[str, Any],
) -> TwoAFCPair:
    others = [c for c in data.images if c != item.contrast]
    src_c = str(rng.choice(others)) if others else ""
    better_is_a = bool(rng.random() < 0.5)
    a, b = (better_img, worse_img) if better_is_a else (worse_img, better_img)
    sa, sb = (sev_better, sev_worse) if better_is_a else (sev_worse, sev_better)
    if fam_better != fam_worse:
        family = f"{fam_better}|{fam_worse}" if better_is_a else f"{fam_worse}|{fam_better}"
    mask = None if data.lesion is None else _t(data.lesion[item.index].astype(np.float32))
    return TwoAFCPair(
        pair_id="",
        case=data.case,
        slice=data.slices[item.index],
        contrast=item.contrast,
        source_contrast=src_c,
        rule=rule,
        family=family,
        severity_a=sa,
        severity_b=sb,
        better="a" if better_is_a else "b",
        reference=_t(data.images[item.contrast][item.index]),
        a=a.to(torch.float32),
        b=b.to(torch.float32),
        source=_t(data.images[src_c][item.index]) if src_c else None,
        mask=mask,
        extra=extra,
    )


def _same_family_pair(rng: np.random.Generator, data: CaseSlices, item: _Item, family: str) -> TwoAFCPair | None:
    fam = FAMILIES[family]
    ref = _t(data.images[item.contrast][item.index])
    mask = None if data.lesion is None else _t(data.lesion[item.index].astype(np.float32))
    seed = int(rng.integers(2**31 - 1))  # the same draws for both severities
    mild = _uniform(rng, fam.mild, fam.integer)
    severe = _uniform(rng, fam.severe, fam.integer)
    if family == "contrast":  # gamma = exp(+-severity), one direction for both images
        sign = 1.0 if rng.random() < 0.5 else -1.0
        mild, severe = math.exp(sign * mild), math.exp(sign * severe)
    better = fam.apply(ref, mild, mask, seed)
    worse = fam.apply(ref, severe, mask, seed)
    m_better, m_worse = float(D.mse(better, ref)), float(D.mse(worse, ref))
    if not (m_worse >= MSE_RATIO * m_better and m_worse - m_better >= MSE_GAP):
        return None
    return _make_pair(
        rng, data, item, rule="same_family", family=family, better_img=better, worse_img=worse,
        sev_better=mild, sev_worse=severe, fam_better=family, fam_worse=family,
        extra={"mse_better": m_better, "mse_worse": m_worse},
    )  # fmt: skip


def _lesion_pair(
    rng: np.random.Generator, data: CaseSlices, item: _Item, edit: str | None = None,
    global_families: Sequence[str] | None = None,
) -> TwoAFCPair | None:
    """A rule-2 pair: ``edit`` (drawn from :data:`LESION_EDITS` if None) against a global distortion
    of equal MSE, from ``global_families`` (default: every one of :data:`GLOBAL_FOR_MATCH`)."""
    if data.lesion is None:
        return None
    ref = _t(data.images[item.contrast][item.index])
    mask = _t(data.lesion[item.index].astype(np.float32))
    if edit is None:
        edit = str(rng.choice(list(LESION_EDITS)))
    families = list(GLOBAL_FOR_MATCH) if global_families is None else list(global_families)
    globals_in_order = [str(g) for g in rng.permutation(families)]
    s_edit = _uniform(rng, ALL_LESION_EDITS[edit], edit == "lesion_shrink")
    seed = int(rng.integers(2**31 - 1))
    worse, region = _edit_and_region(edit, ref, s_edit, mask, seed)
    change = float(((worse - ref).abs() * region).sum() / region.sum())
    if change < MIN_LESION_CHANGE:
        return None
    target = float(D.mse(worse, ref))
    match, glob = match_global(ref, target, seed, globals_in_order)
    if match is None:
        return None
    return _make_pair(
        rng, data, item, rule="lesion_vs_global", family="", better_img=match.image, worse_img=worse,
        sev_better=match.severity, sev_worse=s_edit, fam_better=glob, fam_worse=edit,
        extra={"mse_better": match.mse, "mse_worse": target, "lesion_change": change},
    )  # fmt: skip


def match_global(
    ref: torch.Tensor, target: float, seed: int, families: Sequence[str]
) -> tuple[D.MSEMatch | None, str]:
    """The first global distortion of ``families`` (in order) whose MSE vs ``ref`` matches ``target``
    within :data:`MSE_MATCH_TOL` inside its harmless range (:data:`GLOBAL_MAX_SEVERITY`)."""
    for glob in families:
        distort = partial(GLOBAL_FOR_MATCH[glob], ref, generator=seed)
        try:
            found = D.match_mse(ref, distort, target, high=GLOBAL_MAX_SEVERITY[glob], max_expand=0)
        except ConfigError:  # not reachable within the harmless range
            continue
        if abs(found.mse - target) <= MSE_MATCH_TOL * target:
            return found, glob
    return None, ""


def _lesion_px(data: CaseSlices, index: int) -> int:
    return 0 if data.lesion is None else int(data.lesion[index].sum())


def generate_pairs(
    cases: Sequence[CaseSlices],
    *,
    n_pairs_per_rule: int,
    seed: int = 0,
    rules: Sequence[str] = ("same_family", "lesion_vs_global"),
    max_tries_factor: int = 20,
) -> list[TwoAFCPair]:
    """Generate the rule-1 and rule-2 pairs from loaded cases (in memory). See :func:`build_twoafc_set`."""
    n = int(n_pairs_per_rule)
    if n < 0:
        raise ConfigError(f"n_pairs_per_rule must be >= 0, got {n_pairs_per_rule!r}")
    unknown = set(rules) - {"same_family", "lesion_vs_global"}
    if unknown:
        raise ConfigError(f"unknown rules {sorted(unknown)}; expected same_family and/or lesion_vs_global")
    threads = torch.get_num_threads()
    # the tensors are small (one slice): thread start-up and contention cost more than they save
    torch.set_num_threads(1)
    try:
        return _generate(cases, n, seed, rules, max_tries_factor)
    finally:
        torch.set_num_threads(threads)


def _generate(
    cases: Sequence[CaseSlices], n: int, seed: int, rules: Sequence[str], max_tries_factor: int
) -> list[TwoAFCPair]:
    rng = np.random.default_rng(seed)
    items = [_Item(ci, si, c) for ci, d in enumerate(cases) for c in d.images for si in range(len(d.slices))]
    lesion_items = [it for it in items if _lesion_px(cases[it.case], it.index) >= MIN_LESION_PX]
    if not items:
        raise ConfigError("no slices to build pairs from")
    pairs: list[TwoAFCPair] = []

    if "same_family" in rules and n:
        families = [f for f in FAMILIES if lesion_items or not FAMILIES[f].needs_lesion]
        made, tries = 0, 0
        order = list(rng.permutation(families))
        while made < n and tries < n * max_tries_factor:
            family = str(order[made % len(order)])
            pool = lesion_items if FAMILIES[family].needs_lesion else items
            item = pool[int(rng.integers(len(pool)))]
            tries += 1
            pair = _same_family_pair(rng, cases[item.case], item, family)
            if pair is not None:
                pairs.append(pair)
                made += 1
        if made < n:
            warnings.warn(f"same_family: only {made} of {n} pairs met the MSE ordering check", stacklevel=2)

    if "lesion_vs_global" in rules and n:
        if not lesion_items:
            warnings.warn(
                f"lesion_vs_global: no slice has a lesion mask of >= {MIN_LESION_PX} px; rule skipped", stacklevel=2
            )
        else:
            made, tries = 0, 0
            while made < n and tries < n * max_tries_factor:
                item = lesion_items[int(rng.integers(len(lesion_items)))]
                tries += 1
                pair = _lesion_pair(rng, cases[item.case], item)
                if pair is not None:
                    pairs.append(pair)
                    made += 1
            if made < n:
                warnings.warn(f"lesion_vs_global: only {made} of {n} pairs passed the checks", stacklevel=2)

    for i, p in enumerate(pairs):
        p.pair_id = f"p{i:05d}"
    return pairs


# ----------------------------------------------------------------------------- rule 3


def _as_image(x: object, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name} must be a tensor or array of shape (H,W), (1,H,W) or (1,1,H,W), got {type(x).__name__}")
    t = x.detach().to(torch.float32).cpu()
    while t.dim() < 4:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[0] != 1 or t.shape[1] != 1:
        raise ShapeError(f"{name} must have shape (H,W), (1,H,W) or (1,1,H,W), got {tuple(x.shape)}")
    return t


def pairs_from_synthesized(
    records: Iterable[Mapping[str, Any]],
    *,
    margin: float = 0.1,
    allow_earlier_better: bool = False,
    seed: int = 0,
) -> list[TwoAFCPair]:
    """Order two epochs of the same generator on the same slice (rule ``synthesized_epochs``).

    This is a CONSTRUCTED ordering, not a human rating: for epochs ``e1 < e2`` of one generator on
    one (case, slice, contrast), the later output is declared better only when BOTH its MSE vs the
    real image and its MSE inside the lesion mask are lower than the earlier one's by the relative
    ``margin`` (``err2 <= (1 - margin) * err1``). Otherwise no pair is made; in particular no
    reference-free check (e.g. a discriminator or a sharpness score) is used, and records without a
    non-empty lesion mask give no pair because the lesion criterion cannot be checked. With
    ``allow_earlier_better`` the symmetric case (earlier epoch lower on both) also gives a pair.

    Args:
        records: mappings with ``fake``, ``real`` (tensor/array (H,W), (1,H,W) or (1,1,H,W) in
            [0,1]), ``generator`` (str), ``epoch`` (int), ``mask`` (same shape, lesion > 0.5), and
            optionally ``case``, ``slice``, ``contrast``, ``source_contrast``, ``source``.
        margin: relative improvement needed on both errors, in [0, 1).
        seed: randomises which side (a or b) is the better one.

    Returns:
        pairs with ``rule="synthesized_epochs"``, ``family=generator``, severities = epochs.
    """
    m = float(margin)
    if not 0.0 <= m < 1.0:
        raise ConfigError(f"margin must be in [0, 1), got {margin!r}")
    groups: dict[tuple[str, str, int, str], list[dict[str, Any]]] = {}
    for i, rec in enumerate(records):
        for name in ("fake", "real", "generator", "epoch"):
            if name not in rec:
                raise ConfigError(f"record {i} lacks {name!r}; each record needs fake, real, generator, epoch")
        r = dict(rec)
        r["fake"] = _as_image(rec["fake"], f"record {i} fake")
        r["real"] = _as_image(rec["real"], f"record {i} real")
        if r["fake"].shape != r["real"].shape:
            raise ShapeError(f"record {i}: fake {tuple(r['fake'].shape)} and real {tuple(r['real'].shape)} differ")
        r["mask"] = None if rec.get("mask") is None else (_as_image(rec["mask"], f"record {i} mask") > 0.5).float()
        r["source"] = None if rec.get("source") is None else _as_image(rec["source"], f"record {i} source")
        key = (str(rec["generator"]), str(rec.get("case", "")), int(rec.get("slice", 0)), str(rec.get("contrast", "")))
        groups.setdefault(key, []).append(r)

    rng = np.random.default_rng(seed)
    pairs: list[TwoAFCPair] = []
    for (gen_name, case, sl, contrast), recs in sorted(groups.items()):
        recs.sort(key=lambda r: int(r["epoch"]))
        for i in range(len(recs)):
            for j in range(i + 1, len(recs)):
                early, late = recs[i], recs[j]
                if int(early["epoch"]) == int(late["epoch"]):
                    continue
                if not torch.allclose(early["real"], late["real"], atol=1e-6):
                    raise ConfigError(
                        f"generator {gen_name!r}, case {case!r}, slice {sl}: the real images of epochs "
                        f"{early['epoch']} and {late['epoch']} differ; group records by slice correctly"
                    )
                mask = late["mask"] if late["mask"] is not None else early["mask"]
                if mask is None or mask.sum() < 1:
                    continue
                errs = []
                for r in (early, late):
                    d2 = (r["fake"] - r["real"]) ** 2
                    errs.append((float(d2.mean()), float((d2 * mask).sum() / mask.sum())))
                (g1, l1), (g2, l2) = errs
                if g2 <= (1 - m) * g1 and l2 <= (1 - m) * l1:
                    better, worse = late, early
                elif allow_earlier_better and g1 <= (1 - m) * g2 and l1 <= (1 - m) * l2:
                    better, worse = early, late
                else:
                    continue
                better_is_a = bool(rng.random() < 0.5)
                a, b = (better, worse) if better_is_a else (worse, better)
                pairs.append(
                    TwoAFCPair(
                        pair_id=f"s{len(pairs):05d}",
                        case=case,
                        slice=sl,
                        contrast=contrast,
                        source_contrast=str(late.get("source_contrast", "")),
                        rule="synthesized_epochs",
                        family=gen_name,
                        severity_a=float(a["epoch"]),
                        severity_b=float(b["epoch"]),
                        better="a" if better_is_a else "b",
                        reference=late["real"],
                        a=a["fake"],
                        b=b["fake"],
                        source=late["source"],
                        mask=mask,
                        extra={"mse": (g1, g2), "lesion_mse": (l1, l2)},
                    )
                )
    return pairs


# ----------------------------------------------------------------------------- IO


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out_dir} is not empty; pass overwrite=True (--overwrite) to replace the set")
        # remove only what a previous run of this writer created
        (out_dir / "pairs.csv").unlink(missing_ok=True)
        arrays = out_dir / "arrays"
        if arrays.is_dir():
            for f in arrays.glob("*.npy"):
                f.unlink()
    (out_dir / "arrays").mkdir(parents=True, exist_ok=True)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_twoafc_set(pairs: Sequence[TwoAFCPair], out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``pairs`` as ``out_dir/pairs.csv`` plus float32 .npy slices (H,W) in ``out_dir/arrays``.

    Reference, source and mask arrays are shared by all pairs of the same (case, slice, contrast).
    Empty ``source``/``mask`` cells mean "not available". Returns the csv path.
    """
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    written: dict[str, str] = {}  # relative path -> content digest

    def save(t: torch.Tensor | None, name: str) -> str:
        if t is None:
            return ""
        array = np.ascontiguousarray(t.detach().cpu().to(torch.float32).numpy().reshape(t.shape[-2:]))
        digest = hashlib.sha256(array.tobytes()).hexdigest()
        rel = f"arrays/{_safe(name)}.npy"
        if rel in written and written[rel] != digest:
            # same (case, slice, contrast) key but different content (e.g. lesion masks of two
            # synthesis directions): keep both under content-addressed names
            rel = f"arrays/{_safe(name)}_{digest[:12]}.npy"
        if rel not in written:
            np.save(out / rel, array, allow_pickle=False)
            written[rel] = digest
        return rel

    csv_path = out / "pairs.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for p in pairs:
            if p.better not in ("a", "b"):
                raise ConfigError(f"pair {p.pair_id}: better must be 'a' or 'b', got {p.better!r}")
            key = f"{p.case}_z{p.slice:03d}" if p.case else p.pair_id
            writer.writerow(
                [
                    p.pair_id, p.case, p.slice, p.contrast, p.source_contrast, p.rule, p.family,
                    repr(float(p.severity_a)), repr(float(p.severity_b)), p.better,
                    save(p.reference, f"img_{key}_{p.contrast}"),
                    save(p.a, f"pair_{p.pair_id}_a"),
                    save(p.b, f"pair_{p.pair_id}_b"),
                    save(p.source, f"img_{key}_{p.source_contrast}" if p.case else f"src_{p.pair_id}"),
                    save(p.mask, f"mask_{key}"),
                ]
            )  # fmt: skip
    return csv_path


def load_twoafc_set(csv_path: str | Path) -> list[TwoAFCPair]:
    """Read a set written by :func:`write_twoafc_set` / :func:`build_twoafc_set`; tensors are (1,1,H,W)."""
    path = Path(csv_path)
    if not path.is_file():
        raise FileFormatError(f"2AFC csv not found: {path}")
    base = path.parent
    cache: dict[str, torch.Tensor] = {}

    def load(rel: str) -> torch.Tensor | None:
        if not rel:
            return None
        if rel not in cache:
            f = base / rel
            try:
                arr = np.load(f, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise FileFormatError(f"cannot read {f}: {exc}") from exc
            if arr.ndim != 2:
                raise FileFormatError(f"{f} must hold a 2-D slice, got shape {arr.shape}")
            cache[rel] = torch.from_numpy(arr.astype(np.float32))[None, None]
        return cache[rel]

    pairs: list[TwoAFCPair] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(CSV_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise FileFormatError(f"{path} lacks columns {sorted(missing)}; expected {list(CSV_COLUMNS)}")
        for row in reader:
            ref, a, b = load(row["reference"]), load(row["a"]), load(row["b"])
            if ref is None or a is None or b is None:
                raise FileFormatError(f"{path}: pair {row['pair_id']} lacks reference, a or b")
            if row["better"] not in ("a", "b"):
                raise FileFormatError(f"{path}: pair {row['pair_id']} has better={row['better']!r}, expected a or b")
            pairs.append(
                TwoAFCPair(
                    pair_id=row["pair_id"], case=row["case"], slice=int(row["slice"]), contrast=row["contrast"],
                    source_contrast=row["source_contrast"], rule=row["rule"], family=row["family"],
                    severity_a=float(row["severity_a"]), severity_b=float(row["severity_b"]), better=row["better"],
                    reference=ref, a=a, b=b, source=load(row["source"]), mask=load(row["mask"]),
                )
            )  # fmt: skip
    return pairs


def build_twoafc_set(
    out_dir: str | Path,
    *,
    split: str = "validation",
    n_pairs_per_rule: int = 250,
    seed: int = 0,
    size: int = 256,
    slice_range: tuple[int, int] = (50, 80),
    cases: Sequence[str] | None = None,
    data_dir: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Build the clinically ordered 2AFC set from real cases and write it to ``out_dir``.

    Args:
        out_dir: output folder; must be empty or absent unless ``overwrite``.
        split: ``"validation"`` (default, held-out cases) or ``"train"`` (stage-2 training);
            see :mod:`kcross_metric.train.splits`. Ignored if ``cases`` is given.
        n_pairs_per_rule: pairs for each of rules 1 and 2 (fewer, with a warning, if too few
            slices pass the checks).
        seed: everything random (slices, severities, noise, which side is better) follows it.
        size: slices are centre-cropped/padded to (size, size).
        slice_range: first and last (inclusive) axial slice index.
        data_dir: the ``data`` folder of the shared data (default: found via ``KCROSS_SHARED_DIR``).

    Returns:
        path of ``pairs.csv``.
    """
    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()) and not overwrite:  # fail before the slow part
        raise OutputExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace the set")
    names = tuple(cases) if cases is not None else train_data.available_cases(split, data_dir)
    loaded = [load_case(c, slice_range=slice_range, size=size, data_dir=data_dir) for c in names]
    pairs = generate_pairs(loaded, n_pairs_per_rule=n_pairs_per_rule, seed=seed)
    return write_twoafc_set(pairs, out, overwrite=overwrite)


def build_synthesized_pairs(
    synthesized_csv: str | Path,
    out_dir: str | Path,
    *,
    margin: float = 0.1,
    seed: int = 0,
    max_pairs: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Rule-3 pairs (``synthesized_epochs``) from a synthesized set, written like :func:`build_twoafc_set`.

    Every qualifying pair of epochs of one generator on one slice (:func:`pairs_from_synthesized`,
    either direction) is made; with ``max_pairs`` a seeded random subset of that many is kept.
    """
    from ..translation.synthesize import load_synthesized_set

    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace the set")
    pairs = pairs_from_synthesized(load_synthesized_set(synthesized_csv), margin=margin,
                                   allow_earlier_better=True, seed=seed)
    if max_pairs is not None and len(pairs) > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False))
        pairs = [pairs[int(i)] for i in keep]
    if not pairs:
        raise ConfigError(f"no epoch pair of {synthesized_csv} differs by the margin {margin} both globally and in the lesion")
    return write_twoafc_set(pairs, out, overwrite=overwrite)


if __name__ == "__main__":  # pragma: no cover - the old entry point, moved to the CLI
    import sys

    sys.exit(f"python -m {__spec__.name if __spec__ else __name__} was replaced by `kcross-train pairs` (same options)")
