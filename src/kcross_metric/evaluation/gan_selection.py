"""How the stage-2 refit setting of the shipped weights was chosen (``benchmarks/stage2_gan_selection.py``).

Each setting of the score networks (:data:`SETTINGS`) is fitted on the constructed pairs and the GAN
epoch pairs of two training subjects and scored on the third (:data:`HELD_OUT`): that held-out
column is the selection criterion. The validation-case columns (GAN epoch pairs and the SROCC with
the epoch on the synthesized validation set, the constructed 2AFC validation pairs, the median
score) are computed beside it for information; they must not be used to choose.

The stage-1 networks and the segmenter stay frozen, so the branch vectors are computed once with
the base networks and cached (:func:`~kcross_metric._util.files.cached_tensors`, :func:`selection_data`); :func:`evaluate_setting`
then fits and scores one setting on them.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from .._util.files import cached_tensors
from ..core.metric import KCross
from ..core.nets.kcross_nets import KCrossNetworks
from ..train.config import Stage2Config
from ..train.ratedsets.twoafc import TwoAFCPair, generate_pairs, load_case, load_twoafc_set, pairs_from_synthesized
from ..train.splits import TRAIN_CASES
from ..train.stage2 import FeatureBank, ScoreHeads, balanced_weights, pair_bank, train_stage2, twoafc_accuracy
from ..train.translation.synthesize import load_synthesized_set
from .agreement import srocc

__all__ = [
    "HELD_OUT",
    "VECTOR_KEYS",
    "Stage2Setting",
    "SETTINGS",
    "SelectionData",
    "SettingResult",
    "select_rows",
    "merge_vector_banks",
    "heads_score",
    "synthesized_features",
    "epoch_pair_index",
    "epoch_pair_accuracy",
    "mean_epoch_srocc",
    "selection_data",
    "evaluate_setting",
]

#: The training subject held out of the fit: its pairs are the selection criterion.
HELD_OUT = "TCGA-DU-7294"
#: The pair-bank columns the selection keeps (the branch vectors of both sides and the label).
VECTOR_KEYS: tuple[str, ...] = ("vc", "vt", "vs", "vc_b", "vt_b", "vs_b", "a_better")

T = TypeVar("T")


@dataclass(frozen=True)
class Stage2Setting:
    """The stage-2 options varied by the selection (every other option as in ``stage2_gan.yaml``)."""

    weight_decay: float
    epochs: int
    temperature: float
    balance_pair_sets: bool

    @property
    def name(self) -> str:
        """The run-folder name of the setting, e.g. ``weight_decay0.001_epochs25_temperature0.05_balance_pair_setsTrue``."""
        return "_".join(f"{k}{v}" for k, v in asdict(self).items())

    def config(self) -> Stage2Config:
        """The :class:`~kcross_metric.train.config.Stage2Config` of the refit (lr 1e-3, batch 256, 2 threads, seed 0)."""
        return Stage2Config(lr=1e-3, batch_size=256, threads=2, seed=0, weight_decay=self.weight_decay,
                            epochs=self.epochs, temperature=self.temperature, balance_pair_sets=self.balance_pair_sets)


#: The nine settings of the model card's table.
SETTINGS: tuple[Stage2Setting, ...] = (
    Stage2Setting(weight_decay=1e-4, epochs=25, temperature=0.05, balance_pair_sets=True),
    Stage2Setting(weight_decay=1e-2, epochs=25, temperature=0.05, balance_pair_sets=True),
    Stage2Setting(weight_decay=1e-3, epochs=25, temperature=0.05, balance_pair_sets=True),
    Stage2Setting(weight_decay=1e-3, epochs=25, temperature=0.1, balance_pair_sets=True),
    Stage2Setting(weight_decay=1e-3, epochs=60, temperature=0.05, balance_pair_sets=True),
    Stage2Setting(weight_decay=1e-3, epochs=25, temperature=0.05, balance_pair_sets=False),
    Stage2Setting(weight_decay=1e-2, epochs=50, temperature=0.05, balance_pair_sets=True),
    Stage2Setting(weight_decay=3e-2, epochs=25, temperature=0.05, balance_pair_sets=True),
    Stage2Setting(weight_decay=3e-2, epochs=50, temperature=0.05, balance_pair_sets=True),
)


def select_rows(bank: Mapping[str, Any], keep: np.ndarray) -> dict[str, Any]:
    """The :data:`VECTOR_KEYS` columns and ``rules`` of the pair rows where the bool mask ``keep`` is set."""
    idx = torch.from_numpy(np.flatnonzero(keep))
    out = {k: bank[k][idx] for k in VECTOR_KEYS}
    out["rules"] = [bank["rules"][i] for i in idx.tolist()]
    return out


def merge_vector_banks(*banks: Mapping[str, Any], balance: bool) -> FeatureBank:
    """The pair rows of ``banks`` in order (:data:`VECTOR_KEYS` and ``rules`` only); ``balance`` gives
    each bank the same total weight (:func:`~kcross_metric.train.stage2.balanced_weights`)."""
    out = FeatureBank({k: torch.cat([b[k] for b in banks]) for k in VECTOR_KEYS})
    out["rules"] = [r for b in banks for r in b["rules"]]
    if balance:
        out["weight"] = balanced_weights([len(b["a_better"]) for b in banks])
    return out


def heads_score(heads: ScoreHeads, feats: Mapping[str, torch.Tensor]) -> np.ndarray:
    """Scores of the score heads on stored branch vectors ``vc``, ``vt``, ``vs`` (one per row)."""
    with torch.no_grad():
        return heads(feats["vc"], feats["vt"], feats["vs"]).numpy()


def synthesized_features(kc: KCross, rows: Sequence[Mapping[str, Any]], batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Branch vectors ``vc``, ``vt``, ``vs`` of the rows of a synthesized set
    (:func:`~kcross_metric.train.translation.synthesize.load_synthesized_set`), in row order."""
    out: dict[str, list[torch.Tensor]] = {"vc": [], "vt": [], "vs": []}
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]

            def stack(k: str, chunk: Sequence[Mapping[str, Any]] = chunk) -> torch.Tensor:
                return torch.stack([torch.as_tensor(r[k]) for r in chunk])[:, None].float()

            f = kc.slice_features(stack("fake"), stack("real"), stack("source"), stack("mask"))
            for key, name in (("vc", "complex"), ("vt", "tumor"), ("vs", "structure")):
                out[key].append(f[name])
    return {k: torch.cat(v) for k, v in out.items()}


def epoch_pair_index(rows: Sequence[Mapping[str, Any]], pairs: Sequence[TwoAFCPair]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of sides a and b of epoch pairs built from ``rows``
    (:func:`~kcross_metric.train.ratedsets.twoafc.pairs_from_synthesized`), and whether a is better."""
    where = {(r["generator"], r["case"], int(r["slice"]), int(r["epoch"])): i for i, r in enumerate(rows)}
    ia = np.array([where[(q.family, q.case, q.slice, int(q.severity_a))] for q in pairs])
    ib = np.array([where[(q.family, q.case, q.slice, int(q.severity_b))] for q in pairs])
    a_better = np.array([q.better == "a" for q in pairs])
    return ia, ib, a_better


def epoch_pair_accuracy(scores: np.ndarray, ia: np.ndarray, ib: np.ndarray, a_better: np.ndarray) -> float:
    """2AFC accuracy of ``scores`` (higher = better) on index pairs; a tie counts 0.5."""
    return float(np.where(scores[ia] == scores[ib], 0.5, (scores[ia] > scores[ib]) == a_better).mean())


def mean_epoch_srocc(scores: np.ndarray, rows: Sequence[Mapping[str, Any]]) -> float:
    """Mean over generators (sorted) of the SROCC of ``scores`` with the epoch of the rows."""
    sroccs = []
    for g in sorted({r["generator"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["generator"] == g]
        sroccs.append(srocc(scores[idx], np.array([float(rows[i]["epoch"]) for i in idx]), higher_is_better=True))
    return float(np.mean(sroccs))


@dataclass
class SelectionData:
    """The stored branch vectors a selection fits and scores on."""

    held_out: FeatureBank  #: constructed and GAN epoch pairs of :data:`HELD_OUT` (the criterion)
    fit_constructed: FeatureBank  #: constructed pairs of the other training subjects
    fit_gan: dict[str, Any]  #: GAN epoch pairs of the other training subjects
    val_pairs: FeatureBank  #: constructed validation 2AFC pairs
    synthesized: dict[str, torch.Tensor]  #: branch vectors of the synthesized validation set
    rows: list[dict[str, Any]]  #: its rows
    ia: np.ndarray  #: GAN epoch pairs of the synthesized validation set: side a, side b, a better
    ib: np.ndarray
    a_better: np.ndarray


def selection_data(kc: KCross, pairs_csv: str | Path, synthesized_csv: str | Path, val_pairs_csv: str | Path,
                   cache: str | os.PathLike[str]) -> SelectionData:
    """Branch vectors of the training pairs (constructed, 60 per rule and subject; the GAN epoch pairs
    of ``pairs_csv``), the validation pairs and the synthesized validation set under the base
    networks ``kc``, cached in ``cache`` (about 30 minutes on 2 CPU cores the first time)."""
    cache = Path(cache)
    constructed = cached_tensors(cache / "constructed_by_case.pt", lambda: {
        c: dict(pair_bank(kc, generate_pairs([load_case(c)], n_pairs_per_rule=60, seed=0))) for c in TRAIN_CASES})
    gan = cached_tensors(cache / "gan_train.pt", lambda: dict(pair_bank(kc, load_twoafc_set(pairs_csv))))
    val_pairs = FeatureBank(cached_tensors(cache / "val_pairs.pt", lambda: dict(pair_bank(kc, load_twoafc_set(val_pairs_csv)))))
    with open(pairs_csv, newline="") as fh:
        gan_case = np.array([r["case"] for r in csv.DictReader(fh)])
    rows = load_synthesized_set(synthesized_csv)
    synth = cached_tensors(cache / "val_synthesized.pt", lambda: synthesized_features(kc, rows))
    ia, ib, a_better = epoch_pair_index(rows, pairs_from_synthesized(rows, margin=0.1, allow_earlier_better=True, seed=0))
    return SelectionData(
        held_out=merge_vector_banks(constructed[HELD_OUT], select_rows(gan, gan_case == HELD_OUT), balance=False),
        fit_constructed=merge_vector_banks(*[constructed[c] for c in TRAIN_CASES if c != HELD_OUT], balance=False),
        fit_gan=select_rows(gan, gan_case != HELD_OUT),
        val_pairs=val_pairs,
        synthesized=synth,
        rows=rows,
        ia=ia,
        ib=ib,
        a_better=a_better,
    )


@dataclass(frozen=True)
class SettingResult:
    """One row of the selection table."""

    setting: Stage2Setting
    held_out: dict[str, float]  #: 2AFC accuracy on the held-out subject (``2afc``, ``2afc_<rule>``)
    epoch_pair_accuracy: float  #: on the GAN epoch pairs of the synthesized validation set
    mean_epoch_srocc: float  #: mean SROCC with the epoch over the generators of that set
    validation: dict[str, float]  #: 2AFC accuracy on the constructed validation pairs
    median_score: float  #: median score on the synthesized validation set


def evaluate_setting(setting: Stage2Setting, data: SelectionData, networks: KCrossNetworks,
                     run_root: str | os.PathLike[str]) -> SettingResult:
    """Fit the score heads of ``networks`` with ``setting`` on the training subjects but
    :data:`HELD_OUT` (run folder ``run_root / setting.name``) and score them."""
    bank = merge_vector_banks(data.fit_constructed, data.fit_gan, balance=setting.balance_pair_sets)
    heads = train_stage2(setting.config(), Path(run_root) / setting.name, networks, train_bank=bank, resume=False,
                         verbose=False)
    held_out = twoafc_accuracy(heads, data.held_out)
    s = heads_score(heads, data.synthesized)
    return SettingResult(
        setting=setting,
        held_out=held_out,
        epoch_pair_accuracy=epoch_pair_accuracy(s, data.ia, data.ib, data.a_better),
        mean_epoch_srocc=mean_epoch_srocc(s, data.rows),
        validation=twoafc_accuracy(heads, data.val_pairs),
        median_score=float(np.median(s)),
    )
