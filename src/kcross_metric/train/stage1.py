"""Stage 1 (paper Sec. III-C6, Eq. 19): the complex U-Net, the tumor path and the structure path.

Per step, a batch of slices with a (source, target) contrast pair drawn from what each case has:

* complex U-Net reconstructs the normalized k-space of the target: focal frequency loss;
* structure autoencoder reconstructs both (L1) and the pooled structure features of the source
  batch and the target batch are pulled together by a multi-kernel MMD (similarity loss);
* tumor autoencoder reconstructs the target's lesion region on a crop centred on the lesion:
  Laplacian-pyramid L1 + LPIPS (VGG16 ImageNet backbone from local files).

All loss weights are 1 as in the paper (configurable).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core.kspace import image_to_kspace
from ..core.nets.autoencoders import StructureAutoencoder, TumorAutoencoder
from ..core.nets.complex_unet import ComplexUNet
from .config import Stage1Config, config_dict
from .data import SliceSet, augment, available_cases, build_slices
from .losses import frequency_loss, mmd_loss, structure_loss, tumor_loss
from .runner import RunDir, run_epochs, seed_everything
from .splits import TRAIN_CASES

__all__ = ["Stage1Networks", "train_stage1", "pooled_structure", "lesion_crops"]


class Stage1Networks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.complex_unet = ComplexUNet()
        self.tumor = TumorAutoencoder()
        self.structure = StructureAutoencoder()


def pooled_structure(feats: list[torch.Tensor]) -> torch.Tensor:
    """Global-average-pooled structure features of every level, concatenated: (B, 128)."""
    return torch.cat([f.mean(dim=(-2, -1)) for f in feats], dim=1)


def lesion_crops(
    image: torch.Tensor, region: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops (N,1,size,size) centred on each sample's lesion centroid (samples must have a lesion)."""
    h, w = image.shape[-2:]
    out_i, out_m = [], []
    for i in range(image.shape[0]):
        ys, xs = region[i, 0].nonzero(as_tuple=True)
        cy, cx = int(ys.float().mean()), int(xs.float().mean())
        y0, x0 = min(max(cy - size // 2, 0), h - size), min(max(cx - size // 2, 0), w - size)
        out_i.append(image[i, :, y0 : y0 + size, x0 : x0 + size])
        out_m.append(region[i, :, y0 : y0 + size, x0 : x0 + size])
    return torch.stack(out_i), torch.stack(out_m)


def _sample_batch(
    sets: list[SliceSet], batch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    sizes = torch.tensor([len(s) for s in sets], dtype=torch.float)
    which = int(torch.multinomial(sizes, 1, generator=generator))
    s = sets[which]
    contrasts = list(s.images)
    idx = torch.randint(len(s), (batch_size,), generator=generator)
    src, tgt = [], []
    for i in idx.tolist():
        a, b = torch.randperm(len(contrasts), generator=generator)[:2].tolist()
        src.append(s.images[contrasts[a]][i])
        tgt.append(s.images[contrasts[b]][i])
    return torch.stack(src), torch.stack(tgt), s.lesion[idx]


def train_stage1(
    config: Stage1Config,
    run_dir: str | Path,
    *,
    resume: bool = True,
    cases: tuple[str, ...] = TRAIN_CASES,
    perceptual: nn.Module | None | str = "lpips_vgg",
    verbose: bool = True,
) -> Stage1Networks:
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    cases = available_cases(cases, config.data_root, require=True)
    sets = list(build_slices(cases, size=config.size, slice_range=config.slice_range, root=config.data_root).values())
    if perceptual == "lpips_vgg":
        from ..baselines.lpips import LPIPSVGG

        perceptual = LPIPSVGG(data_range=1.0)
    nets = Stage1Networks()
    optimizer = torch.optim.Adam(nets.parameters(), lr=config.lr, betas=config.betas)

    def train_epoch(generator: torch.Generator) -> dict[str, float]:
        sums = {"frequency": 0.0, "structure": 0.0, "mmd": 0.0, "tumor": 0.0}
        for _ in range(config.steps_per_epoch):
            source, target, lesion = _sample_batch(sets, config.batch_size, generator)
            source, target, lesion = augment([source, target, lesion], generator)
            both = torch.cat([source, target])
            # The complex U-Net sees the target contrast only (every contrast is a target in some
            # pair): it is the costliest network, and the metric only ever encodes targets.
            k = image_to_kspace(target)
            k_rec, _ = nets.complex_unet(k)
            l_freq = frequency_loss(k_rec, k)
            rec, feats = nets.structure(both)
            l_struct = structure_loss(rec, both)
            pooled = pooled_structure(feats)
            b = source.shape[0]
            l_mmd = mmd_loss(pooled[:b], pooled[b:])
            loss = (config.frequency_weight * l_freq + config.structure_weight * l_struct + config.mmd_weight * l_mmd)
            has = lesion.flatten(1).amax(dim=1) > 0
            l_tumor = torch.zeros(())
            if has.any():
                region = F.max_pool2d(lesion[has], 5, stride=1, padding=2)
                img_c, reg_c = lesion_crops(target[has], region, config.tumor_crop)
                pred, _ = nets.tumor(img_c, reg_c)
                l_tumor = tumor_loss(pred, img_c, reg_c, perceptual, config.lpips_weight)  # type: ignore[arg-type]
                loss = loss + config.tumor_weight * l_tumor
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for key, value in (("frequency", l_freq), ("structure", l_struct), ("mmd", l_mmd), ("tumor", l_tumor)):
                sums[key] += float(value.detach())
        return {key: v / config.steps_per_epoch for key, v in sums.items()}

    run_epochs(
        RunDir(run_dir), nets, optimizer, epochs=config.epochs, seed=config.seed,
        config={**config_dict(config), "train_cases": list(cases)},
        train_epoch=train_epoch, resume=resume, verbose=verbose,
    )
    nets.eval()
    return nets
