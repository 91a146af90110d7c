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
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, FileFormatError
from ..metric import KCross
from ..nets.kcross_nets import KCrossNetworks
from ..nets.score import ComplexScoreNet, NaturalScoreNet
from .config import Stage2Config, config_dict
from .losses import inconsistency_loss, ranking_loss
from .runner import RunDir, run_epochs, seed_everything

__all__ = ["ScoreHeads", "FeatureBank", "balanced_weights", "features_of", "pair_bank", "rated_bank", "train_stage2", "twoafc_accuracy"]


class ScoreHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.complex_score = ComplexScoreNet()
        self.natural_score = NaturalScoreNet()

    def energy(self, vc: torch.Tensor, vt: torch.Tensor, vs: torch.Tensor) -> torch.Tensor:
        """``-log`` of the score: the summed distances of the two score networks (Eq. 20)."""
        return self.complex_score(vc) + self.natural_score(torch.cat([vt, vs], dim=1))

    def forward(self, vc: torch.Tensor, vt: torch.Tensor, vs: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.energy(vc, vt, vs))


class FeatureBank(dict):
    """Stored branch vectors: keys ``vc``, ``vt``, ``vs`` (and ``*_b`` for the second pair item)."""


def features_of(
    kcross: KCross, fake: torch.Tensor, real: torch.Tensor, source: torch.Tensor | None, batch: int = 16
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    vcs, vts, vss = [], [], []
    with torch.no_grad():
        for i in range(0, fake.shape[0], batch):
            sl = slice(i, i + batch)
            f = kcross.slice_features(fake[sl], real[sl], source[sl] if source is not None else None, None)
            vcs.append(f["complex"])
            vts.append(f["tumor"])
            vss.append(f["structure"])
    return torch.cat(vcs), torch.cat(vts), torch.cat(vss)


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
        for key, feats in zip(("vc", "vt", "vs", "vc_b", "vt_b", "vs_b"), (*a, *b)):
            if key not in bank:
                bank[key] = feats.new_empty((len(pairs), *feats.shape[1:]))
            bank[key][torch.tensor(idx)] = feats
    bank["a_better"] = torch.tensor([1.0 if p.better == "a" else 0.0 for p in pairs])  # type: ignore[attr-defined]
    bank["rules"] = [p.rule + ":" + p.family for p in pairs]  # type: ignore[attr-defined]
    return bank


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
    from ..io import load_image

    arr = np.asarray(load_image(path), dtype=np.float32)
    if arr.ndim != 2:
        raise FileFormatError(f"{path}: rated-set images must be 2-D slices, got shape {arr.shape}")
    return torch.from_numpy(arr)[None, None]


def rated_bank(kcross: KCross, csv_path: str | Path) -> FeatureBank:
    """Feature vectors of a rated set: CSV columns ``fake,real,source,score`` (paths relative to it)."""
    path = Path(csv_path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"fake", "real", "score"} <= set(rows[0]):
        raise FileFormatError(f"{path}: a rated set needs the columns fake, real, source (optional), score")
    fake = torch.cat([_load_array(path.parent / r["fake"]) for r in rows])
    real = torch.cat([_load_array(path.parent / r["real"]) for r in rows])
    has_source = all(r.get("source") for r in rows)
    source = torch.cat([_load_array(path.parent / r["source"]) for r in rows]) if has_source else None
    bank = FeatureBank()
    bank["vc"], bank["vt"], bank["vs"] = features_of(kcross, fake, real, source)
    bank["score"] = torch.tensor([float(r["score"]) for r in rows])
    return bank


def twoafc_accuracy(heads: ScoreHeads, bank: FeatureBank) -> dict[str, float]:
    with torch.no_grad():
        sa = heads(bank["vc"], bank["vt"], bank["vs"])
        sb = heads(bank["vc_b"], bank["vt_b"], bank["vs_b"])
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
    kcross = KCross.from_networks(networks)
    if config.rank_space not in ("score", "log"):
        raise ConfigError(f"rank_space must be 'score' or 'log', got {config.rank_space!r}")
    if isinstance(config.add_pairs_csv, str) or not all(isinstance(p, str) for p in config.add_pairs_csv):
        raise ConfigError(f"add_pairs_csv must be a list of pairs.csv paths, got {config.add_pairs_csv!r}")
    if train_bank is None:
        train_bank = FeatureBank()
        if config.pairs_csv or not config.rated_csv:
            from .ratedsets.twoafc import generate_pairs, load_case, load_twoafc_set
            from .splits import TRAIN_CASES

            if config.pairs_csv:
                pairs = load_twoafc_set(config.pairs_csv)
            else:
                loaded = [load_case(c, data_dir=config.data_root) for c in TRAIN_CASES]
                pairs = generate_pairs(loaded, n_pairs_per_rule=config.n_pairs_per_rule, seed=config.seed)
            pairs = list(pairs)
            set_sizes = [len(pairs)]
            for extra in config.add_pairs_csv:
                added = list(load_twoafc_set(extra))
                pairs += added
                set_sizes.append(len(added))
            train_bank.update(pair_bank(kcross, pairs))
            if config.balance_pair_sets:
                train_bank["weight"] = balanced_weights(set_sizes)
        if config.rated_csv:
            rated = rated_bank(kcross, config.rated_csv)
            train_bank.update({f"rated_{k}": v for k, v in rated.items()})
    if "vc" not in train_bank and "rated_vc" not in train_bank:
        raise ConfigError("stage 2 needs a 2AFC pair set or a rated set")

    heads = ScoreHeads()
    optimizer = torch.optim.Adam(heads.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def train_epoch(generator: torch.Generator) -> dict[str, float]:
        total, steps = 0.0, 0
        if "vc" in train_bank:
            n = train_bank["vc"].shape[0]
            order = torch.randperm(n, generator=generator)
            for i in range(0, n, config.batch_size):
                idx = order[i : i + config.batch_size]
                ea = heads.energy(train_bank["vc"][idx], train_bank["vt"][idx], train_bank["vs"][idx])
                eb = heads.energy(train_bank["vc_b"][idx], train_bank["vt_b"][idx], train_bank["vs_b"][idx])
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
                pred = heads(train_bank["rated_vc"][idx], train_bank["rated_vt"][idx], train_bank["rated_vs"][idx])
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
        RunDir(run_dir), heads, optimizer, epochs=config.epochs, seed=config.seed, config=config_dict(config),
        train_epoch=train_epoch, validate=validate, resume=resume, verbose=verbose,
    )
    heads.eval()
    return heads
