"""Stage 2 (paper Sec. III-C5/C6, Eq. 20): the complex and natural score networks.

The stage-1 networks and the segmenter stay frozen, so every branch difference vector is computed
once (:meth:`KCross.slice_features`) and the two score networks are fitted on the stored vectors:

* on a 2AFC pair set (built from the *training* cases by default, or read from ``pairs_csv``;
  ``add_pairs_csv`` appends further sets, e.g. rule-3 pairs of GAN outputs of the training cases):
  Bradley-Terry ranking loss, the better side must score higher;
* on a rated set (``rated_csv`` with columns ``fake,real,source,score``, score in [0, 1], higher is
  better): the paper's MSE "inconsistency" loss between K-CROSS and the rating.

Validation: 2AFC accuracy per rule on pairs built from the validation cases.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.metric import KCross
from ..core.nets.kcross_nets import KCrossNetworks, head_energies
from ..core.nets.score import LESION_CHANGE_DIM
from ..errors import ConfigError, FileFormatError
from .config import Stage2Config, config_dict
from .losses import inconsistency_loss, ranking_loss
from .runner import RunDir, run_epochs, seed_everything

__all__ = [
    "ScoreHeads", "FeatureBank", "balanced_weights", "features_of", "pair_bank", "rated_bank", "train_stage2",
    "training_bank", "twoafc_accuracy",
]


class ScoreHeads(nn.Module):
    """The two score networks of ``design`` (see :data:`~kcross_metric.core.nets.kcross_nets.DESIGNS`),
    with the parameter names of :class:`KCrossNetworks`, so a run exports straight into a weight file."""

    def __init__(self, design: str = "v2") -> None:
        super().__init__()
        template = KCrossNetworks.heads_only(design)
        self.design = design
        self.complex_score: nn.Module = template.get_submodule("complex_score")
        self.natural_score: nn.Module = template.get_submodule("natural_score")

    def energy(self, vc: torch.Tensor, vt: torch.Tensor, vs: torch.Tensor, vm: torch.Tensor | None = None) -> torch.Tensor:
        """``-log`` of the score: the summed distances of the two score networks (Eq. 20)."""
        e_complex, e_natural = head_energies(self.design, self.complex_score, self.natural_score, vc, vt, vs, vm)
        return e_complex + e_natural

    def forward(self, vc: torch.Tensor, vt: torch.Tensor, vs: torch.Tensor, vm: torch.Tensor | None = None) -> torch.Tensor:
        return torch.exp(-self.energy(vc, vt, vs, vm))


class FeatureBank(dict):
    """Stored branch vectors: keys ``vc``, ``vt``, ``vs``, ``vm`` (and ``*_b`` for the second pair item)."""


def features_of(
    kcross: KCross, fake: torch.Tensor, real: torch.Tensor, source: torch.Tensor | None, batch: int = 16
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Branch vectors ``vc, vt, vs`` and lesion-change features ``vm`` ((N,2) zeros for v1 networks)."""
    vcs, vts, vss, vms = [], [], [], []
    with torch.no_grad():
        for i in range(0, fake.shape[0], batch):
            sl = slice(i, i + batch)
            f = kcross.slice_features(fake[sl], real[sl], source[sl] if source is not None else None, None)
            vcs.append(f["complex"])
            vts.append(f["tumor"])
            vss.append(f["structure"])
            vms.append(f.get("lesion_change", f["tumor"].new_zeros((f["tumor"].shape[0], LESION_CHANGE_DIM))))
    return torch.cat(vcs), torch.cat(vts), torch.cat(vss), torch.cat(vms)


def pair_bank(kcross: KCross, pairs: Sequence[object]) -> FeatureBank:
    """Feature vectors of both sides of 2AFC pairs (``TwoAFCPair`` records).

    Pairs of different image sizes (e.g. 256x256 constructed pairs and 128x128 synthesized ones) are
    run in groups of one size; the bank keeps the order of ``pairs``.
    """
    groups: dict[tuple[tuple[int, ...], bool], list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault((tuple(p.reference.shape), p.source is not None), []).append(i)  # type: ignore[attr-defined]
    bank = FeatureBank()
    for (_, has_source), idx in groups.items():
        group = [pairs[i] for i in idx]
        ref = torch.cat([p.reference for p in group])  # type: ignore[attr-defined]
        src = torch.cat([p.source for p in group]) if has_source else None  # type: ignore[attr-defined]
        a = features_of(kcross, torch.cat([p.a for p in group]), ref, src)  # type: ignore[attr-defined]
        b = features_of(kcross, torch.cat([p.b for p in group]), ref, src)  # type: ignore[attr-defined]
        for key, feats in zip(("vc", "vt", "vs", "vm", "vc_b", "vt_b", "vs_b", "vm_b"), (*a, *b)):
            if key not in bank:
                bank[key] = feats.new_empty((len(pairs), *feats.shape[1:]))
            bank[key][torch.tensor(idx)] = feats
    bank["a_better"] = torch.tensor([1.0 if p.better == "a" else 0.0 for p in pairs])  # type: ignore[attr-defined]
    bank["rules"] = [p.rule + ":" + p.family for p in pairs]  # type: ignore[attr-defined]
    return bank


def ladder_bank(kcross: KCross, ladders: Sequence[object], batch: int = 16) -> FeatureBank:
    """Feature vectors of the consecutive pairs of severity ladders (``ratedsets.ladders.Ladder``):
    every level is encoded once against its reference; pair rows are (level i, level i+1), i better.
    Also keeps the per-level vectors (``levels_*``) and each ladder's family (``ladder_family``)."""
    from .ratedsets.ladders import consecutive_pairs

    if not ladders:
        raise ConfigError("no ladders to encode")
    n_levels = {len(lad.severities) for lad in ladders}  # type: ignore[attr-defined]
    if len(n_levels) != 1:
        raise ConfigError(f"ladders must share their number of levels, got {sorted(n_levels)}")
    n_level = n_levels.pop()
    groups: dict[tuple[tuple[int, ...], bool], list[int]] = {}
    for i, lad in enumerate(ladders):
        groups.setdefault((tuple(lad.reference.shape), lad.source is not None), []).append(i)  # type: ignore[attr-defined]
    levels: dict[str, torch.Tensor] = {}
    for (_, has_source), idx in groups.items():
        group = [ladders[i] for i in idx]
        fake = torch.cat([lad.images for lad in group])  # type: ignore[attr-defined]
        ref = torch.cat([lad.reference.expand(n_level, -1, -1, -1) for lad in group])  # type: ignore[attr-defined]
        src = torch.cat([lad.source.expand(n_level, -1, -1, -1) for lad in group]) if has_source else None  # type: ignore[attr-defined]
        rows = (torch.tensor(idx)[:, None] * n_level + torch.arange(n_level)[None]).flatten()
        for key, feats in zip(("vc", "vt", "vs", "vm"), features_of(kcross, fake, ref, src, batch)):
            if key not in levels:
                levels[key] = feats.new_empty((len(ladders) * n_level, *feats.shape[1:]))
            levels[key][rows] = feats
    better, worse = consecutive_pairs(len(ladders), n_level)
    bank = FeatureBank()
    for key, value in levels.items():
        bank[key], bank[f"{key}_b"] = value[better], value[worse]
        bank[f"levels_{key}"] = value
    bank["a_better"] = torch.ones(len(better))
    bank["rules"] = [f"ladder:{lad.family}" for lad in ladders for _ in range(n_level - 1)]  # type: ignore[attr-defined]
    bank["ladder_family"] = [lad.family for lad in ladders]  # type: ignore[attr-defined]
    return bank


#: keys of a FeatureBank with one row per pair (what :func:`merge_banks` and :func:`select_pairs` cut)
PAIR_KEYS: tuple[str, ...] = ("vc", "vt", "vs", "vm", "vc_b", "vt_b", "vs_b", "vm_b", "a_better", "rules", "weight")


def merge_banks(banks: Sequence[FeatureBank], *, balance: bool = False) -> FeatureBank:
    """Pair rows of several banks in one (per-level and other keys are dropped); ``balance`` gives
    every non-empty bank the same total weight (:func:`balanced_weights`)."""
    banks = [b for b in banks if b and len(b["rules"]) > 0]
    if not banks:
        raise ConfigError("no pairs to merge")
    out = FeatureBank()
    for key in PAIR_KEYS:
        if key == "weight":
            continue
        if all(key in b for b in banks):
            out[key] = sum((list(b[key]) for b in banks), []) if key == "rules" else torch.cat([b[key] for b in banks])
    sizes = [len(b["rules"]) for b in banks]
    if balance:
        out["weight"] = balanced_weights(sizes)
    elif any("weight" in b for b in banks):
        out["weight"] = torch.cat([b["weight"] if "weight" in b else torch.ones(n) for b, n in zip(banks, sizes)])
    return out


def select_pairs(bank: FeatureBank, keep: Callable[[str], bool]) -> FeatureBank:
    """The pair rows of ``bank`` whose rule (``"rule:family"``) ``keep`` accepts."""
    rows = [i for i, r in enumerate(bank["rules"]) if keep(r)]
    idx = torch.tensor(rows, dtype=torch.long)
    out = FeatureBank()
    for key in PAIR_KEYS:
        if key in bank:
            out[key] = [bank[key][i] for i in rows] if key == "rules" else bank[key][idx]
    return out


def balanced_weights(set_sizes: Sequence[int]) -> torch.Tensor:
    """Per-pair weights, sets in order, such that every non-empty set has the same total weight
    and the weights average to 1."""
    sizes = [int(n) for n in set_sizes]
    if any(n < 0 for n in sizes) or not any(sizes):
        raise ConfigError(f"pair set sizes must be >= 0 and not all 0, got {sizes}")
    filled = sum(1 for n in sizes if n)
    total = sum(sizes)
    return torch.cat([torch.full((n,), total / (filled * n)) for n in sizes if n])


def _load_array(path: Path) -> torch.Tensor:
    from ..data.io import load_image

    arr = np.asarray(load_image(path), dtype=np.float32)
    if arr.ndim != 2:
        raise FileFormatError(f"{path}: rated-set images must be 2-D slices, got shape {arr.shape}")
    return torch.from_numpy(arr)[None, None]


def rated_bank(kcross: KCross, csv_path: str | Path) -> FeatureBank:
    """Feature vectors of a rated set: CSV columns ``fake,real,source,score`` (paths relative to it)."""
    path = Path(csv_path)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"fake", "real", "score"} <= set(rows[0]):
        raise FileFormatError(f"{path}: a rated set needs the columns fake, real, source (optional), score")
    fake = torch.cat([_load_array(path.parent / r["fake"]) for r in rows])
    real = torch.cat([_load_array(path.parent / r["real"]) for r in rows])
    has_source = all(r.get("source") for r in rows)
    source = torch.cat([_load_array(path.parent / r["source"]) for r in rows]) if has_source else None
    bank = FeatureBank()
    bank["vc"], bank["vt"], bank["vs"], bank["vm"] = features_of(kcross, fake, real, source)
    bank["score"] = torch.tensor([float(r["score"]) for r in rows])
    return bank


def with_design(networks: KCrossNetworks, design: str) -> KCrossNetworks:
    """The same segmenter and stage-1 networks under fresh score heads of ``design``."""
    out = KCrossNetworks(design)
    state = out.state_dict()
    state.update({k: v for k, v in networks.state_dict().items() if not k.startswith(("complex_score.", "natural_score."))})
    out.load_state_dict(state)
    return out.eval()


def training_bank(config: Stage2Config, kcross: KCross) -> FeatureBank:
    """The pair sets ``config`` asks for, from the training cases present on this machine."""
    from .data import available_cases
    from .ratedsets.ladders import HELD_OUT_FAMILIES, HELD_OUT_LESION_EDITS, LADDERS, build_ladders, build_lesion_rules
    from .ratedsets.twoafc import ALL_LESION_EDITS, generate_pairs, load_case, load_twoafc_set
    from .splits import TRAIN_CASES

    banks: list[FeatureBank] = []
    needs_cases = ((config.constructed_pairs and not config.pairs_csv) or config.n_ladders_per_family
                   or config.n_lesion_pairs_per_edit or config.n_misregistration_pairs)
    cases = available_cases(TRAIN_CASES, config.data_root, require=True) if needs_cases else ()
    loaded = [load_case(c, data_dir=config.data_root) for c in cases]
    if config.pairs_csv or (config.constructed_pairs and not config.rated_csv):
        pairs = load_twoafc_set(config.pairs_csv) if config.pairs_csv else generate_pairs(
            loaded, n_pairs_per_rule=config.n_pairs_per_rule, seed=config.seed)
        banks.append(pair_bank(kcross, list(pairs)))
    if config.n_ladders_per_family:
        families = config.ladder_families or [f for f in LADDERS if f not in HELD_OUT_FAMILIES]
        ladders = build_ladders(loaded, families=families, n_per_family=config.n_ladders_per_family, seed=config.seed)
        banks.append(ladder_bank(kcross, ladders))
    if config.n_lesion_pairs_per_edit:
        edits = config.lesion_edits or [e for e in ALL_LESION_EDITS if e not in HELD_OUT_LESION_EDITS]
        banks.append(pair_bank(kcross, build_lesion_rules(loaded, edits=edits, n_per_edit=config.n_lesion_pairs_per_edit,
                                                          seed=config.seed)))
    if config.n_misregistration_pairs:
        from .ratedsets.ladders import build_misregistration_pairs

        banks.append(pair_bank(kcross, build_misregistration_pairs(loaded, n_pairs=config.n_misregistration_pairs,
                                                                   seed=config.seed)))
    for extra in config.add_pairs_csv:
        banks.append(pair_bank(kcross, list(load_twoafc_set(extra))))
    bank = merge_banks(banks, balance=config.balance_pair_sets) if banks else FeatureBank()
    if config.rated_csv:
        rated = rated_bank(kcross, config.rated_csv)
        bank.update({f"rated_{k}": v for k, v in rated.items()})
    bank["train_cases"] = [c.case for c in loaded]
    return bank


def _rows(bank: FeatureBank, key: str, idx: torch.Tensor) -> torch.Tensor | None:
    return bank[key][idx] if key in bank else None


def twoafc_accuracy(heads: ScoreHeads, bank: FeatureBank) -> dict[str, float]:
    with torch.no_grad():
        sa = heads(bank["vc"], bank["vt"], bank["vs"], bank.get("vm"))
        sb = heads(bank["vc_b"], bank["vt_b"], bank["vs_b"], bank.get("vm_b"))
    correct = torch.where(sa == sb, torch.full_like(sa, 0.5), ((sa > sb).float() == bank["a_better"]).float())
    out = {"2afc": float(correct.mean())}
    rules = np.array([r.split(":")[0] for r in bank["rules"]])
    for rule in sorted(set(rules)):
        out[f"2afc_{rule}"] = float(correct[torch.from_numpy(rules == rule)].mean())
    return out


def train_stage2(
    config: Stage2Config,
    run_dir: str | Path,
    networks: KCrossNetworks,
    *,
    train_bank: FeatureBank | None = None,
    val_bank: FeatureBank | None = None,
    resume: bool = True,
    verbose: bool = True,
) -> ScoreHeads:
    """Fit the score networks; ``networks`` holds the trained stage-1 nets and segmenter."""
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    if networks.design != config.design:
        networks = with_design(networks, config.design)
    kcross = KCross.from_networks(networks)
    if config.rank_space not in ("score", "log"):
        raise ConfigError(f"rank_space must be 'score' or 'log', got {config.rank_space!r}")
    if isinstance(config.add_pairs_csv, str) or not all(isinstance(p, str) for p in config.add_pairs_csv):
        raise ConfigError(f"add_pairs_csv must be a list of pairs.csv paths, got {config.add_pairs_csv!r}")
    run_config = config_dict(config)
    if train_bank is None:
        train_bank = training_bank(config, kcross)
        run_config["train_cases"] = list(train_bank.pop("train_cases", []))
    if "vc" not in train_bank and "rated_vc" not in train_bank:
        raise ConfigError("stage 2 needs a 2AFC pair set or a rated set")

    heads = ScoreHeads(config.design)
    optimizer = torch.optim.Adam(heads.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def train_epoch(generator: torch.Generator) -> dict[str, float]:
        total, steps = 0.0, 0
        if "vc" in train_bank:
            n = train_bank["vc"].shape[0]
            order = torch.randperm(n, generator=generator)
            for i in range(0, n, config.batch_size):
                idx = order[i : i + config.batch_size]
                ea = heads.energy(train_bank["vc"][idx], train_bank["vt"][idx], train_bank["vs"][idx], _rows(train_bank, "vm", idx))
                eb = heads.energy(train_bank["vc_b"][idx], train_bank["vt_b"][idx], train_bank["vs_b"][idx],
                                  _rows(train_bank, "vm_b", idx))
                weight = train_bank["weight"][idx] if "weight" in train_bank else None
                if config.rank_space == "log":  # log sa - log sb = eb - ea: scale-free near the floor
                    loss = ranking_loss(-ea, -eb, train_bank["a_better"][idx], config.temperature, weight)
                else:
                    loss = ranking_loss(torch.exp(-ea), torch.exp(-eb), train_bank["a_better"][idx],
                                        config.temperature, weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, steps = total + float(loss.detach()), steps + 1
        if "rated_vc" in train_bank:
            n = train_bank["rated_vc"].shape[0]
            order = torch.randperm(n, generator=generator)
            for i in range(0, n, config.batch_size):
                idx = order[i : i + config.batch_size]
                pred = heads(train_bank["rated_vc"][idx], train_bank["rated_vt"][idx], train_bank["rated_vs"][idx],
                             _rows(train_bank, "rated_vm", idx))
                loss = inconsistency_loss(pred, train_bank["rated_score"][idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, steps = total + float(loss.detach()), steps + 1
        return {"loss": total / max(steps, 1)}

    def validate() -> dict[str, float]:
        out = twoafc_accuracy(heads, train_bank) if "vc" in train_bank else {}
        out = {f"train_{k}": v for k, v in out.items()}
        if val_bank is not None:
            out.update(twoafc_accuracy(heads, val_bank))
        return out

    run_epochs(
        RunDir(run_dir), heads, optimizer, epochs=config.epochs, seed=config.seed, config=run_config,
        train_epoch=train_epoch, validate=validate, resume=resume, verbose=verbose,
    )
    heads.eval()
    return heads
