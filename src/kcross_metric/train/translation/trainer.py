"""Train the translation models of the synthesized set: pix2pix (paired) and CycleGAN (unpaired).

* ``pix2pix`` (Isola et al., CVPR 2017): U-Net generator, conditional PatchGAN on (source, image),
  vanilla GAN loss (BCE with logits) + ``l1_weight`` * L1 to the real target.
* ``cyclegan`` (Zhu et al., ICCV 2017): two ResNet generators (source->target, target->source),
  two unconditional PatchGANs (instance norm), least-squares GAN loss, ``cycle_weight`` * L1 cycle
  consistency, a history pool of ``pool_size`` fakes for the discriminators. It is trained
  *unpaired*: the source and target batches of a step are drawn with independent permutations, so
  the model never sees which target belongs to which source. Identity loss defaults to 0: across
  contrasts the identity mapping is not the desired behaviour (documented choice).

Both: Adam (lr 2e-4, betas 0.5/0.999), constant LR then linear decay to 0 (from ``decay_from_epoch``,
default half the epochs), left-right flips + gain augmentation applied identically to a pair. The
run directory keeps ``model.safetensors`` + ``optimizer.pt`` + ``state.json`` for resuming and a
generator checkpoint per epoch, ``checkpoints/epoch_XXX.safetensors`` (the source->target
generator), from which :mod:`.synthesize` writes the per-epoch synthesized validation slices.
Validation figures per epoch (eval mode, whole validation slices): L1, PSNR (data range 1).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...weights import save_safetensors
from ..config import TranslationConfig, config_dict
from ..data import augment
from ..runner import RunDir, run_epochs, seed_everything
from .data import PairedSlices, paired_slices
from .nets import PatchDiscriminator, ResnetGenerator, UNetGenerator

__all__ = ["FAMILIES", "TranslationModel", "build_model", "train_translation", "checkpoint_path", "load_generator"]

FAMILIES: tuple[str, ...] = ("pix2pix", "cyclegan")


class TranslationModel(nn.Module):
    """All networks of one model; ``generator`` is always the source->target generator."""

    def __init__(self, family: str, config: TranslationConfig) -> None:
        super().__init__()
        if family not in FAMILIES:
            raise ConfigError(f"family must be one of {FAMILIES}, got {family!r}")
        self.family = family
        if family == "pix2pix":
            self.generator: nn.Module = UNetGenerator(config.unet_depth, config.base_channels, config.max_channels)
            self.disc_target = PatchDiscriminator(2, config.disc_base, norm="batch")
        else:
            self.generator = ResnetGenerator(config.resnet_base, config.resnet_blocks)
            self.generator_back = ResnetGenerator(config.resnet_base, config.resnet_blocks)
            self.disc_target = PatchDiscriminator(1, config.disc_base, norm="instance")
            self.disc_source = PatchDiscriminator(1, config.disc_base, norm="instance")

    def generator_parameters(self) -> list[nn.Parameter]:
        nets = [self.generator] + ([self.generator_back] if self.family == "cyclegan" else [])
        return [p for n in nets for p in n.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        nets = [self.disc_target] + ([self.disc_source] if self.family == "cyclegan" else [])
        return [p for n in nets for p in n.parameters()]


def build_model(config: TranslationConfig) -> TranslationModel:
    return TranslationModel(config.family, config)


class _OptimizerPair:
    """Generator and discriminator Adam optimizers saved/restored as one state dict."""

    def __init__(self, model: TranslationModel, config: TranslationConfig) -> None:
        self.g = torch.optim.Adam(model.generator_parameters(), lr=config.lr, betas=config.betas)
        self.d = torch.optim.Adam(model.discriminator_parameters(), lr=config.lr, betas=config.betas)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.g.param_groups + self.d.param_groups

    def state_dict(self) -> dict[str, Any]:
        return {"g": self.g.state_dict(), "d": self.d.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.g.load_state_dict(state["g"])
        self.d.load_state_dict(state["d"])


class _ImagePool:
    """CycleGAN's history of generated images (Shrivastava et al. 2017): with probability 1/2 a
    returned image is an older fake and the new one takes its place. Seeded by the epoch generator."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, batch: torch.Tensor, rng: random.Random) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for image in batch.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif rng.random() < 0.5:
                j = rng.randrange(self.size)
                out.append(self.images[j].clone())
                self.images[j] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)))


def _lsgan(logits: torch.Tensor, real: bool) -> torch.Tensor:
    return F.mse_loss(logits, torch.full_like(logits, float(real)))


def _pix2pix_step(model: TranslationModel, opt: _OptimizerPair, src: torch.Tensor, tgt: torch.Tensor,
                  config: TranslationConfig) -> dict[str, float]:
    fake = model.generator(src)
    _set_requires_grad(model.disc_target, True)
    opt.d.zero_grad(set_to_none=True)
    d_loss = 0.5 * (_bce(model.disc_target(src, tgt), True) + _bce(model.disc_target(src, fake.detach()), False))
    d_loss.backward()
    opt.d.step()
    _set_requires_grad(model.disc_target, False)
    opt.g.zero_grad(set_to_none=True)
    g_gan = _bce(model.disc_target(src, fake), True)
    g_l1 = F.l1_loss(fake, tgt)
    (g_gan + config.l1_weight * g_l1).backward()
    opt.g.step()
    return {"d": d_loss.item(), "g_gan": g_gan.item(), "g_l1": g_l1.item()}


def _cyclegan_step(model: TranslationModel, opt: _OptimizerPair, src: torch.Tensor, tgt: torch.Tensor,
                   config: TranslationConfig, pools: tuple[_ImagePool, _ImagePool], rng: random.Random) -> dict[str, float]:
    discs = (model.disc_target, model.disc_source)
    for d in discs:
        _set_requires_grad(d, False)
    opt.g.zero_grad(set_to_none=True)
    fake_tgt = model.generator(src)
    fake_src = model.generator_back(tgt)
    g_gan = _lsgan(model.disc_target(fake_tgt), True) + _lsgan(model.disc_source(fake_src), True)
    cycle = F.l1_loss(model.generator_back(fake_tgt), src) + F.l1_loss(model.generator(fake_src), tgt)
    loss = g_gan + config.cycle_weight * cycle
    if config.identity_weight > 0:
        loss = loss + config.identity_weight * config.cycle_weight * (
            F.l1_loss(model.generator(tgt), tgt) + F.l1_loss(model.generator_back(src), src))
    loss.backward()
    opt.g.step()
    for d in discs:
        _set_requires_grad(d, True)
    opt.d.zero_grad(set_to_none=True)
    old_tgt = pools[0].query(fake_tgt, rng)
    old_src = pools[1].query(fake_src, rng)
    d_loss = 0.5 * (_lsgan(model.disc_target(tgt), True) + _lsgan(model.disc_target(old_tgt), False)
                    + _lsgan(model.disc_source(src), True) + _lsgan(model.disc_source(old_src), False))
    d_loss.backward()
    opt.d.step()
    return {"d": d_loss.item(), "g_gan": g_gan.item(), "cycle": cycle.item()}


def checkpoint_path(run: str | Path, epoch: int) -> Path:
    """Where the source->target generator after ``epoch`` (1-based) is kept."""
    return Path(run) / "checkpoints" / f"epoch_{epoch:03d}.safetensors"


def load_generator(run: str | Path, epoch: int, config: TranslationConfig) -> nn.Module:
    """The source->target generator of ``run`` after ``epoch``, in eval mode (SHA-256-free local file
    written by this package; loaded with safetensors, strict keys)."""
    from ...weights import load_safetensors, load_state_dict_strict

    model = build_model(config)
    load_state_dict_strict(model.generator, load_safetensors(checkpoint_path(run, epoch)))
    return model.generator.eval()


@torch.no_grad()
def _validate(generator: nn.Module, val: PairedSlices, batch_size: int = 16) -> dict[str, float]:
    errs, mses = [], []
    for i in range(0, len(val), batch_size):
        fake = generator(val.source[i : i + batch_size])
        diff = fake - val.target[i : i + batch_size]
        errs.append(diff.abs().flatten(1).mean(1))
        mses.append(diff.pow(2).flatten(1).mean(1))
    mse = torch.cat(mses).clamp_min(1e-10)
    return {"l1": float(torch.cat(errs).mean()), "psnr": float((10 * torch.log10(1.0 / mse)).mean())}


def train_translation(config: TranslationConfig, run_dir: str | Path, *, resume: bool = True,
                      verbose: bool = True) -> list[dict[str, Any]]:
    """Train (or resume) one translation model; returns the per-epoch log records of this call."""
    if config.family not in FAMILIES:
        raise ConfigError(f"family must be one of {FAMILIES}, got {config.family!r}")
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be >= 1, got {config.epochs}, {config.batch_size}")
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    train = paired_slices("train", config.direction, crop=config.crop, size=config.size,
                          slice_range=config.slice_range, root=config.data_root)
    val = paired_slices("validation", config.direction, crop=config.crop, size=config.size,
                        slice_range=config.val_slice_range, step=config.val_slice_step, root=config.data_root)
    model = build_model(config)
    opt = _OptimizerPair(model, config)
    run = RunDir(run_dir)
    pools = (_ImagePool(config.pool_size), _ImagePool(config.pool_size))
    decay_from = config.epochs // 2 if config.decay_from_epoch is None else config.decay_from_epoch

    def lr_at(epoch: int) -> float:
        if epoch < decay_from:
            return config.lr
        return config.lr * (1.0 - (epoch - decay_from) / float(config.epochs - decay_from + 1))

    def train_epoch(generator: torch.Generator) -> dict[str, float]:
        n = len(train)
        order = torch.randperm(n, generator=generator)
        partner = torch.randperm(n, generator=generator)  # unpaired targets for CycleGAN
        rng = random.Random(int(torch.randint(2**31, (1,), generator=generator)))
        steps = n // config.batch_size
        if config.max_steps_per_epoch is not None:
            steps = min(steps, config.max_steps_per_epoch)
        totals: dict[str, float] = {}
        for step in range(max(steps, 1)):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            if config.family == "pix2pix":
                src, tgt = augment([train.source[idx], train.target[idx]], generator)
                losses = _pix2pix_step(model, opt, src, tgt, config)
            else:
                (src,) = augment([train.source[idx]], generator)
                (tgt,) = augment([train.target[partner[step * config.batch_size : (step + 1) * config.batch_size]]], generator)
                losses = _cyclegan_step(model, opt, src, tgt, config, pools, rng)
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + v
        return {k: round(v / max(steps, 1), 5) for k, v in totals.items()}

    def validate() -> dict[str, float]:
        return _validate(model.generator, val)

    def keep_checkpoint(epoch: int) -> None:
        tensors = {k: v.detach().contiguous().cpu() for k, v in model.generator.state_dict().items()}
        path = checkpoint_path(run.path, epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_safetensors(tensors, path, overwrite=True,
                         metadata={"family": config.family, "direction": config.direction, "epoch": str(epoch)})

    return run_epochs(run, model, opt, epochs=config.epochs, seed=config.seed,  # type: ignore[arg-type]
                      config=config_dict(config), train_epoch=train_epoch, validate=validate, resume=resume,
                      verbose=verbose, lr_at=lr_at, on_epoch_end=keep_checkpoint)
