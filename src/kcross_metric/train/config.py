"""Stage configurations: dataclasses with defaults, loadable from YAML (``train/configs/*.yaml``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError

__all__ = ["SegmenterConfig", "Stage1Config", "Stage2Config", "TranslationConfig", "load_config", "config_dict"]

T = TypeVar("T")


@dataclass
class SegmenterConfig:
    seed: int = 0
    size: int = 256
    crop: int = 128
    slice_range: tuple[int, int] | None = (20, 140)
    epochs: int = 6
    steps_per_epoch: int = 100
    batch_size: int = 12
    lr: float = 1e-3
    lesion_crop_fraction: float = 0.6
    phantom_slices: int = 0
    lr_drop_epoch: int | None = None  #: from this epoch (0-based) on, lr * lr_drop_factor
    lr_drop_factor: float = 0.25
    #: piecewise-constant schedule, ``[[epoch, factor], ...]``: from ``epoch`` (0-based) on the
    #: learning rate is ``lr * factor`` (the last entry at or before the epoch wins; before the first
    #: entry, ``lr``). Supersedes ``lr_drop_epoch``/``lr_drop_factor`` when given; a later entry with a
    #: larger factor is a warm restart, which is how a finished run is continued for more epochs
    #: while the config still says exactly what schedule every epoch had.
    lr_schedule: list[tuple[int, float]] = field(default_factory=list)
    threads: int = 2
    data_root: str | None = None
    extra_root: str | None = None  #: folder laid out by extra/get.sh (default: $KCROSS_EXTRA_DIR)
    #: probability that a training crop is degraded by a random MR artefact (blur, noise,
    #: undersampling, ghosting, motion, spike, bias field, contrast), so that the segmenter also finds
    #: lesions in imperfect and synthesized images; the mask stays that of the clean image
    degrade_prob: float = 0.0
    val_slice_range: tuple[int, int] | None = (50, 110)
    val_slice_step: int = 3
    #: encoder widths of the segmenter U-Net (``nets.segmenter.SEGMENTER_CHANNELS`` by default)
    channels: tuple[int, ...] = (16, 32, 64, 128)
    #: normalization layers of the segmenter: "batch" (the first weights) or "instance"
    norm: str = "batch"
    #: probability that a training crop is zoomed by a factor in ``affine_scale`` and rotated by up
    #: to ``affine_degrees`` (image bilinear, mask thresholded at 0.5), so that lesion size and
    #: head pose vary beyond the few training subjects
    affine_prob: float = 0.0
    affine_scale: tuple[float, float] = (0.85, 1.15)
    affine_degrees: float = 15.0
    #: a finished segmenter run directory (or a ``.safetensors`` file of its weights) whose weights
    #: start this run: a second training phase with other options that still states every option
    #: of both phases (``segmenter_finetune.yaml`` continues ``segmenter.yaml``)
    init_from: str | None = None

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch``."""
        if self.lr_schedule:
            factor = 1.0
            for start, value in sorted((int(e), float(f)) for e, f in self.lr_schedule):
                if epoch >= start:
                    factor = value
            return self.lr * factor
        if self.lr_drop_epoch is not None and epoch >= self.lr_drop_epoch:
            return self.lr * self.lr_drop_factor
        return self.lr

    def __post_init__(self) -> None:
        for entry in self.lr_schedule:
            if (not isinstance(entry, (list, tuple)) or len(entry) != 2
                    or not all(isinstance(v, (int, float)) for v in entry) or entry[0] < 0 or entry[1] <= 0):
                raise ConfigError(f"lr_schedule entries are [epoch >= 0, factor > 0], got {entry!r}")
        if not 0.0 <= self.affine_prob <= 1.0:
            raise ConfigError(f"affine_prob must be in [0, 1], got {self.affine_prob}")
        if len(self.affine_scale) != 2 or not 0 < self.affine_scale[0] <= self.affine_scale[1]:
            raise ConfigError(f"affine_scale is [low, high] with 0 < low <= high, got {self.affine_scale!r}")


@dataclass
class Stage1Config:
    seed: int = 0
    size: int = 256
    slice_range: tuple[int, int] | None = (50, 80)
    epochs: int = 4
    steps_per_epoch: int = 60
    batch_size: int = 6
    lr: float = 5e-4
    betas: tuple[float, float] = (0.5, 0.999)
    mmd_weight: float = 1.0
    frequency_weight: float = 1.0
    tumor_weight: float = 1.0
    structure_weight: float = 1.0
    lpips_weight: float = 1.0
    tumor_crop: int = 96
    threads: int = 2
    data_root: str | None = None


@dataclass
class Stage2Config:
    seed: int = 0
    pairs_csv: str | None = None  #: 2AFC pairs (ranking loss); built from train cases if None
    rated_csv: str | None = None  #: rated set fake,real,source,score (MSE inconsistency loss)
    #: further 2AFC pair sets added to the pairs above, e.g. rule-3 pairs of synthesized outputs
    #: of the training cases (``twoafc --from-synthesized``)
    add_pairs_csv: list[str] = field(default_factory=list)
    n_pairs_per_rule: int = 40
    epochs: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.05
    #: where the 2AFC ranking loss compares the two sides: "score" (K-CROSS values; the shipped
    #: weights) or "log" (log-scores, i.e. the score networks' summed distances; does not fade
    #: when both sides score near 0, as GAN outputs do)
    rank_space: str = "score"
    #: give each pair set (the base pairs, then each ``add_pairs_csv`` set) the same total weight in
    #: the ranking loss, so a large added set does not swamp the clinically ordered pairs
    balance_pair_sets: bool = False
    batch_size: int = 64
    threads: int = 2
    data_root: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: score-head design of the fitted networks (``kcross_metric.core.nets.kcross_nets.DESIGNS``); the
    #: segmenter and stage-1 networks are taken as they are whatever their file's design
    design: str = "v2"
    #: the rule-1/rule-2 pairs of ``n_pairs_per_rule`` (built from the training cases)
    constructed_pairs: bool = True
    #: severity ladders per family from the training cases (``ratedsets.ladders``), consecutive pairs
    n_ladders_per_family: int = 0
    #: ladder families to train on; None = every family but ``ladders.HELD_OUT_FAMILIES``
    ladder_families: list[str] | None = None
    #: lesion-rule pairs per lesion edit (erase, fade, shrink, move, invent vs equal-MSE global)
    n_lesion_pairs_per_edit: int = 0
    #: lesion edits to train on; None = every edit but ``ladders.HELD_OUT_LESION_EDITS``
    lesion_edits: list[str] | None = None
    #: structure-rule pairs: a misregistered fake vs an aligned one of equal MSE (the aligned is better)
    n_misregistration_pairs: int = 0


@dataclass
class TranslationConfig:
    """A cross-modality translation model of the synthesized rated set (issue 4)."""

    family: str = "pix2pix"  #: "pix2pix" (paired U-Net + PatchGAN) or "cyclegan" (unpaired)
    direction: str = "t1-t2"  #: "<source>-<target>", contrasts of kcross_metric.train.data.CONTRASTS
    seed: int = 0
    crop: int = 256  #: slices are centre-cropped/padded to this, then average-pooled to ``size``
    size: int = 128
    slice_range: tuple[int, int] | None = (40, 120)
    val_slice_range: tuple[int, int] | None = (50, 110)
    val_slice_step: int = 2
    epochs: int = 15
    batch_size: int = 4
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    decay_from_epoch: int | None = None  #: linear LR decay to 0 from this epoch (0-based); None = half
    l1_weight: float = 100.0  #: pix2pix L1 weight (lambda)
    cycle_weight: float = 10.0  #: CycleGAN cycle-consistency weight (lambda)
    identity_weight: float = 0.0  #: CycleGAN identity weight (0: contrasts differ, see docs)
    pool_size: int = 50  #: CycleGAN fake-image history for the discriminators
    unet_depth: int = 6
    base_channels: int = 32
    max_channels: int = 128
    resnet_blocks: int = 6
    resnet_base: int = 24
    disc_base: int = 32
    max_steps_per_epoch: int | None = None  #: cap (smoke runs); None = every training slice once
    threads: int = 1
    data_root: str | None = None


def load_config(cls: type[T], path: str | Path | None = None, **overrides: Any) -> T:
    """Build ``cls`` from a YAML file (optional) and keyword overrides; unknown keys are errors."""
    values: dict[str, Any] = {}
    if path is not None:
        import yaml

        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of option: value")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    for key in ("slice_range", "val_slice_range", "betas", "channels", "affine_scale"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    if "lr_schedule" in values and values["lr_schedule"] is None:
        values["lr_schedule"] = []
    if isinstance(values.get("lr_schedule"), list):
        values["lr_schedule"] = [tuple(entry) if isinstance(entry, (list, tuple)) else entry
                                 for entry in values["lr_schedule"]]
    return cls(**values)


def config_dict(config: object) -> dict[str, Any]:
    return asdict(config)  # type: ignore[call-overload]
