"""Subject-level train/validation split: the ONE place that says which real subject goes where.

Every training, rated-set and benchmark module imports these constants instead of listing cases
itself, so no slice of a validation subject can leak into training through another code path.
:data:`SUBJECTS` says, for each subject, where its files live, its licence, its lesion type and its
split.

The rule (issue 21): the shipped weights must carry no non-commercial or research-only terms, so
**training** uses only CC BY / CC BY-SA subjects: the BraTS 2023 case with expert labels, the
TCGA-LGG case, the healthy IXI subject, the ``TCIA*`` cases of BraTS 2018 (TCGA-GBM / TCGA-LGG via
TCIA, CC BY 3.0) and one multiple-sclerosis patient (CC BY). **Validation** holds every subject
with other terms (BRATS 2013 and the ``Brats18_2013_*`` cases: CC BY-NC-SA 3.0; ``CBICA*``: BraTS
challenge terms) plus, deliberately, CC BY subjects the project needs for coverage: the second
BraTS 2023 case, one lower-grade glioma (``Brats18_TCIA13_623_1``) and the multiple-sclerosis
patient with the larger lesion load (``ljubljana_patient19``: lesion rules need lesions of at least
:data:`~kcross_metric.train.ratedsets.twoafc.MIN_LESION_PX` pixels in a slice, which patient 07
never has).

The split is by subject (patient), never by slice. Subjects of the extra set (``Brats18_*``,
``ljubljana_*``) are read from the folder laid out by ``extra/get.sh`` (see
:func:`kcross_metric.train.data.extra_root`); a split may name subjects whose files are absent on a
machine: :func:`available_cases` keeps the ones present and says which were skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

__all__ = [
    "BRATS2013_CASES",
    "SUBJECTS",
    "SPLITS",
    "Subject",
    "TRAIN_CASES",
    "VALIDATION_CASES",
    "cases_for_split",
    "subject",
]

CC_BY_3 = "CC BY 3.0 (TCIA)"
CC_BY_4 = "CC BY 4.0 (BraTS 2021 / TCIA)"
CC_BY_SA_3 = "CC BY-SA 3.0 (IXI)"
CC_BY_NC_SA_3 = "CC BY-NC-SA 3.0 (BRATS 2013)"
BRATS_TERMS = "BraTS challenge data terms (research use)"
CC_BY_MS = "CC BY (Lesjak et al. 2017)"


@dataclass(frozen=True)
class Subject:
    """One subject: ``layout`` names the loader (see :func:`kcross_metric.train.data.load_case`),
    ``lesion`` is ``"glioma-hgg"``, ``"glioma-lgg"``, ``"glioma"`` (grade not checked), ``"ms"``
    or ``"none"``, ``label`` says what the lesion mask is."""

    case_id: str
    layout: str
    licence: str
    lesion: str
    label: str
    split: str


def _brats18(case_id: str, layout: str, split: str) -> Subject:
    licence = CC_BY_3 if "_TCIA" in case_id else BRATS_TERMS if "_CBICA_" in case_id else CC_BY_NC_SA_3
    # BraTS 2018 naming: TCIA09/10/12/13 are lower-grade gliomas; the Brats18_2013 cases here are
    # in its HGG folder; the rest are mostly glioblastomas (grade not checked case by case).
    lgg = any(f"_TCIA{n}_" in case_id for n in ("09", "10", "12", "13"))
    lesion = "glioma-lgg" if lgg else "glioma-hgg" if "_2013_" in case_id else "glioma"
    label = "expert (1/2/4)" if layout == "brats2018" else "expert whole tumour"
    return Subject(case_id, layout, licence, lesion, label, split)


_BRATS18_TRAIN = (
    "Brats18_TCIA01_201_1", "Brats18_TCIA01_378_1", "Brats18_TCIA01_425_1", "Brats18_TCIA01_499_1",
    "Brats18_TCIA02_135_1", "Brats18_TCIA02_606_1", "Brats18_TCIA03_265_1", "Brats18_TCIA10_637_1",
    "Brats18_TCIA10_639_1",
)  # fmt: skip
_BRATS18_FT1_TRAIN = ("Brats18_TCIA02_471_1", "Brats18_TCIA08_105_1", "Brats18_TCIA04_192_1")
_BRATS18_VAL = (
    "Brats18_TCIA13_623_1", "Brats18_CBICA_ABM_1", "Brats18_CBICA_AME_1", "Brats18_CBICA_AQN_1",
    "Brats18_2013_11_1", "Brats18_2013_23_1", "Brats18_2013_3_1",
)  # fmt: skip
_BRATS18_FT1_VAL = (
    "Brats18_CBICA_AOO_1", "Brats18_CBICA_ARW_1", "Brats18_CBICA_ASK_1", "Brats18_CBICA_AAB_1",
    "Brats18_CBICA_ATV_1", "Brats18_CBICA_ASA_1",
)  # fmt: skip

#: BRATS 2013 cases (FLAIR/T1c + manual OTMultiClass segmentation), all in validation.
BRATS2013_CASES: tuple[str, ...] = tuple(f"brats_2013_pat000{i}_1" for i in range(1, 6))

#: Every subject the project may read, in split order.
SUBJECTS: dict[str, Subject] = {
    s.case_id: s
    for s in (
        Subject("BraTS-GLI-00000-000", "brats2023", CC_BY_4, "glioma", "expert (1/2/3)", "train"),
        Subject("TCGA-DU-7294", "tcga", CC_BY_3, "glioma-lgg", "algorithmic fusion", "train"),
        Subject("IXI002-Guys-0828", "ixi", CC_BY_SA_3, "none", "healthy volunteer", "train"),
        *(_brats18(c, "brats2018", "train") for c in _BRATS18_TRAIN),
        *(_brats18(c, "brats2018-flair-t1", "train") for c in _BRATS18_FT1_TRAIN),
        Subject("ljubljana_patient07", "ms-ljubljana", CC_BY_MS, "ms", "consensus white-matter lesions", "train"),
        Subject("BraTS-GLI-00001-000", "brats2023", CC_BY_4, "glioma", "none", "validation"),
        *(Subject(c, "brats2013", CC_BY_NC_SA_3, "glioma", "manual (OTMultiClass)", "validation")
          for c in BRATS2013_CASES),
        *(_brats18(c, "brats2018", "validation") for c in _BRATS18_VAL),
        *(_brats18(c, "brats2018-flair-t1", "validation") for c in _BRATS18_FT1_VAL),
        Subject("ljubljana_patient19", "ms-ljubljana", CC_BY_MS, "ms", "consensus white-matter lesions",
                "validation"),
    )
}

#: Subjects whose slices may be used to fit anything (networks, calibrations, thresholds).
TRAIN_CASES: tuple[str, ...] = tuple(c for c, s in SUBJECTS.items() if s.split == "train")

#: Subjects held out for validation; never used to fit or tune anything.
VALIDATION_CASES: tuple[str, ...] = tuple(c for c, s in SUBJECTS.items() if s.split == "validation")

#: The three training subjects of the first weights (before the extra set existed).
ORIGINAL_TRAIN_CASES: tuple[str, ...] = ("BraTS-GLI-00000-000", "TCGA-DU-7294", "IXI002-Guys-0828")

SPLITS: dict[str, tuple[str, ...]] = {"train": TRAIN_CASES, "validation": VALIDATION_CASES}


def cases_for_split(split: str) -> tuple[str, ...]:
    """Case ids of ``split`` (``"train"`` or ``"validation"``)."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    return SPLITS[split]


def subject(case_id: str) -> Subject:
    """The :class:`Subject` record of ``case_id``.

    Raises:
        ConfigError: an id the project does not know.
    """
    try:
        return SUBJECTS[case_id]
    except KeyError:
        raise ConfigError(f"unknown subject {case_id!r}; known: see kcross_metric.train.splits.SUBJECTS") from None
