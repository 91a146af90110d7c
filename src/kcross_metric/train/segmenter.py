"""Training of the lesion segmenter (whole-tumour mask, any contrast).

Data: the lesion cases of the training split (BraTS-GLI-00000-000 expert labels, TCGA-DU-7294 fused
algorithmic labels), the healthy IXI subject (all-negative slices), every contrast each case has, and
optionally built-in phantom slices with lesions (``phantom_slices``; generic "lesion = focal
abnormal signal" examples, since only two real lesion cases carry licences without
non-commercial terms). Training samples random crops (a fraction centred on lesion pixels) of
single-contrast slices with flips, transposes, gamma and gain augmentation; loss = BCE + soft Dice. Validation: Dice per contrast on held-out cases with labels (BRATS 2013,
FLAIR and T1c), on whole slices (every third slice of 50-110 during training).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..nets.segmenter import LesionSegmenter
from .config import SegmenterConfig, config_dict
from .data import SliceSet, augment, build_slices
from .runner import RunDir, run_epochs, seed_everything
from .splits import TRAIN_CASES, VALIDATION_CASES

__all__ = ["dice_loss", "dice_score", "train_segmenter", "evaluate_segmenter"]


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum()
    return 1.0 - (2.0 * inter + eps) / (prob.sum() + target.sum() + eps)


def dice_score(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Dice of boolean masks pooled over all slices; 1.0 when both are empty."""
    p, t = pred.bool(), target.bool()
    denom = p.sum() + t.sum()
    return 1.0 if int(denom) == 0 else float(2.0 * (p & t).sum() / denom)


def _crops(
    images: torch.Tensor, lesion: torch.Tensor, crop: int, lesion_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = images.shape
    out_i, out_m = [], []
    for i in range(n):
        centre = None
        if lesion[i].any() and torch.rand(1, generator=generator).item() < lesion_fraction:
            ys, xs = lesion[i, 0].nonzero(as_tuple=True)
            j = int(torch.randint(len(ys), (1,), generator=generator))
            centre = (int(ys[j]), int(xs[j]))
        if centre is None:
            centre = (int(torch.randint(crop // 2, h - crop // 2 + 1, (1,), generator=generator)),
                      int(torch.randint(crop // 2, w - crop // 2 + 1, (1,), generator=generator)))
        y0 = min(max(centre[0] - crop // 2, 0), h - crop)
        x0 = min(max(centre[1] - crop // 2, 0), w - crop)
        out_i.append(images[i, :, y0 : y0 + crop, x0 : x0 + crop])
        out_m.append(lesion[i, :, y0 : y0 + crop, x0 : x0 + crop])
    return torch.stack(out_i), torch.stack(out_m)


def _flatten_contrasts(sets: dict[str, SliceSet]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    images, masks, names = [], [], []
    for s in sets.values():
        for contrast, tensor in s.images.items():
            images.append(tensor)
            masks.append(s.lesion)
            names += [contrast] * len(s)
    return torch.cat(images), torch.cat(masks), names


def _every_nth(s: SliceSet, n: int) -> SliceSet:
    keep = list(range(0, len(s), n))
    return SliceSet(
        images={c: t[keep] for c, t in s.images.items()},
        lesion=s.lesion[keep],
        has_lesion_label=s.has_lesion_label[keep],
        case_ids=[s.case_ids[i] for i in keep],
        slice_index=[s.slice_index[i] for i in keep],
    )


def phantom_slices(n: int, size: int, seed: int = 10_000) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` phantom slices (a quarter healthy) in every contrast: images (4n,1,S,S), masks."""
    from ..phantom import make_phantom

    images, masks = [], []
    for i in range(n):
        ph = make_phantom((size, size), contrasts=("t1", "t1c", "t2", "flair"), seed=seed + i,
                          lesion=(i % 4 != 3), noise=0.01 * (i % 3), bias=0.1 * (i % 2))
        for c in ("t1", "t1c", "t2", "flair"):
            images.append(ph[c])
            masks.append(ph["mask"])
    return torch.cat(images), torch.cat(masks)


def _augment_geometry_and_contrast(x: torch.Tensor, m: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    n = x.shape[0]
    if torch.rand(1, generator=generator).item() < 0.5:  # same transpose for the whole batch
        x, m = x.transpose(-2, -1), m.transpose(-2, -1)
    flip_v = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip_v[:, None, None, None], x.flip(-2), x)
    m = torch.where(flip_v[:, None, None, None], m.flip(-2), m)
    gamma = torch.exp((torch.rand(n, generator=generator) - 0.5) * 0.8)  # 0.67 .. 1.49
    x = x.clamp_min(0).pow(gamma[:, None, None, None])
    return x, m


def evaluate_segmenter(model: LesionSegmenter, sets: dict[str, SliceSet], batch_size: int = 16) -> dict[str, float]:
    """Dice per contrast (pooled over slices) on labelled slice sets."""
    model.eval()
    result: dict[str, float] = {}
    with torch.no_grad():
        for s in sets.values():
            labelled = s.has_lesion_label
            if not labelled.any():
                continue
            for contrast, tensor in s.images.items():
                preds = []
                for i in range(0, len(s), batch_size):
                    preds.append(torch.sigmoid(model(tensor[i : i + batch_size])) > 0.5)
                pred = torch.cat(preds)[labelled]
                result[f"dice_{contrast}"] = dice_score(pred, s.lesion[labelled] > 0.5)
    return result


def train_segmenter(
    config: SegmenterConfig, run_dir: str | Path, *, resume: bool = True, cases: tuple[str, ...] = TRAIN_CASES,
    val_cases: tuple[str, ...] | None = None, verbose: bool = True,
) -> LesionSegmenter:
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    train_sets = build_slices(cases, size=config.size, slice_range=config.slice_range, root=config.data_root)
    images, masks, _ = _flatten_contrasts(train_sets)
    if config.phantom_slices > 0:
        ph_images, ph_masks = phantom_slices(config.phantom_slices, config.size)
        images, masks = torch.cat([images, ph_images]), torch.cat([masks, ph_masks])
    if val_cases is None:
        val_cases = tuple(c for c in VALIDATION_CASES if c.startswith("brats_2013"))
    val_sets = build_slices(val_cases, size=config.size, slice_range=(50, 110), root=config.data_root) if val_cases else {}
    val_sets = {k: _every_nth(v, 3) for k, v in val_sets.items()}

    model = LesionSegmenter()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    def train_epoch(generator: torch.Generator) -> dict[str, float]:
        total = 0.0
        for _ in range(config.steps_per_epoch):
            idx = torch.randint(len(images), (config.batch_size,), generator=generator)
            x, m = _crops(images[idx], masks[idx], config.crop, config.lesion_crop_fraction, generator)
            x, m = augment([x, m], generator)
            x, m = _augment_geometry_and_contrast(x, m, generator)
            logits = model(x)
            loss = F.binary_cross_entropy_with_logits(logits, m) + dice_loss(logits, m)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        return {"loss": total / config.steps_per_epoch}

    run_epochs(
        RunDir(run_dir), model, optimizer, epochs=config.epochs, seed=config.seed, config=config_dict(config),
        train_epoch=train_epoch, validate=(lambda: evaluate_segmenter(model, val_sets)) if val_sets else None,
        resume=resume, verbose=verbose,
        lr_at=lambda epoch: config.lr * (config.lr_drop_factor if config.lr_drop_epoch is not None and epoch >= config.lr_drop_epoch else 1.0),
    )
    model.eval()
    return model
