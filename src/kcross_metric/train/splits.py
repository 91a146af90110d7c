"""Case-level train/validation split: the ONE place that says which real case goes where.

Every training, rated-set and benchmark module imports these constants instead of listing cases
itself, so no slice of a validation case can leak into training through another code path.

* ``VALIDATION_CASES`` = ``BraTS-GLI-00001-000`` (BraTS 2023, four contrasts, no segmentation)
  plus the five BRATS 2013 cases (FLAIR and T1c only, z-scored, manual ``OTMultiClass``
  segmentation). The BRATS 2013 cases are the only validation cases with a lesion mask, so every
  lesion-dependent validation rule (e.g. the 2AFC "lesion vs equal global error" rule) is built
  from them.
* ``TRAIN_CASES`` = ``BraTS-GLI-00000-000`` (expert segmentation), ``TCGA-DU-7294``
  (algorithmic fused segmentation) and the healthy IXI subject ``IXI002-Guys-0828`` (T1/T2).

The split is by case (patient), never by slice. Case ids are the folder names under
``../shared/data`` (``brats/``, ``brats2013/``; IXI files live in ``ixi/``).
"""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["BRATS2013_CASES", "TRAIN_CASES", "VALIDATION_CASES", "SPLITS", "cases_for_split"]

#: BRATS 2013 cases (FLAIR/T1c + manual OTMultiClass segmentation), all in validation.
BRATS2013_CASES: tuple[str, ...] = tuple(f"brats_2013_pat000{i}_1" for i in range(1, 6))

#: Cases whose slices may be used to fit anything (networks, calibrations, thresholds).
TRAIN_CASES: tuple[str, ...] = ("BraTS-GLI-00000-000", "TCGA-DU-7294", "IXI002-Guys-0828")

#: Cases held out for model selection and validation; never used to fit anything.
VALIDATION_CASES: tuple[str, ...] = ("BraTS-GLI-00001-000",) + BRATS2013_CASES

SPLITS: dict[str, tuple[str, ...]] = {"train": TRAIN_CASES, "validation": VALIDATION_CASES}


def cases_for_split(split: str) -> tuple[str, ...]:
    """Case ids of ``split`` (``"train"`` or ``"validation"``)."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    return SPLITS[split]
