"""Training of the lesion segmenter (whole-tumour mask, any contrast).

Data: every subject of the training split present on the machine
(:data:`kcross_metric.train.splits.TRAIN_CASES`: gliomas with expert, fused or whole-tumour labels,
one multiple-sclerosis patient, the healthy IXI subject with all-negative slices), every contrast
each has, and optionally built-in phantom slices with lesions (``phantom_slices``). Training samples
random crops (a fraction centred on lesion pixels) of single-contrast slices with flips, transposes,
gamma and gain augmentation and, with probability ``degrade_prob``, one random MR artefact
(:func:`degrade`), because K-CROSS segments the *fake* image too; loss = BCE + soft Dice.
Validation: Dice per contrast, pooled over slices, on the labelled validation subjects (every
``val_slice_step``-th slice of ``val_slice_range``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..core.nets.segmenter import LesionSegmenter, segmenter_channels_of, segmenter_norm_of
from ..data import distortions as D
from .config import SegmenterConfig, config_dict
from .data import SliceSet, augment, available_cases, build_slices
from .runner import RunDir, run_epochs, seed_everything
from .splits import SUBJECTS, TRAIN_CASES, VALIDATION_CASES, subject

__all__ = ["DEGRADATIONS", "degrade", "dice_loss", "dice_score", "random_affine", "train_segmenter", "evaluate_segmenter"]


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
    from ..data.phantom import make_phantom

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


def random_affine(
    x: torch.Tensor, m: torch.Tensor, prob: float, scale: tuple[float, float], degrees: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zoom (factor in ``scale``, > 1 enlarges) and rotate (uniform in +-``degrees``) each sample of
    images ``x`` and masks ``m`` (B,1,H,W) about the centre, with probability ``prob``; images
    bilinear with zeros outside, masks bilinear then ``> 0.5``."""
    n = x.shape[0]
    chosen = torch.rand(n, generator=generator) < prob
    zoom = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=generator)
    angle = torch.deg2rad((2 * torch.rand(n, generator=generator) - 1) * degrees)
    if not bool(chosen.any()):
        return x, m
    zoom = torch.where(chosen, zoom, torch.ones_like(zoom))
    angle = torch.where(chosen, angle, torch.zeros_like(angle))
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    zeros = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x_out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    m_out = (F.grid_sample(m.to(x.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False) > 0.5)
    keep = ~chosen[:, None, None, None]
    return torch.where(keep, x, x_out), torch.where(keep, m, m_out.to(m.dtype))


def _rand(generator: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=generator))


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


#: The artefacts :func:`degrade` draws from, each with a severity range from barely visible to
#: strong (intensities in [0, 1]). They cover the families of :mod:`kcross_metric.data.distortions`.
DEGRADATIONS: dict[str, object] = {
    "blur": lambda x, g: D.gaussian_blur(x, _rand(g, 0.5, 2.5)),
    "rician": lambda x, g: D.rician_noise(x, _rand(g, 0.01, 0.12), generator=_seed(g)),
    "gaussian": lambda x, g: D.gaussian_noise(x, _rand(g, 0.01, 0.1), generator=_seed(g)),
    "undersample": lambda x, g: D.undersample(x, _rand(g, 2.0, 8.0), generator=_seed(g)),
    "ghosting": lambda x, g: D.ghosting(x, _rand(g, 0.2, 1.5)),
    "motion": lambda x, g: D.motion(x, _rand(g, 0.1, 0.5), _rand(g, 1.0, 6.0), generator=_seed(g)),
    "spike": lambda x, g: D.spike(x, _rand(g, 0.005, 0.05), generator=_seed(g)),
    "bias": lambda x, g: D.bias_field(x, _rand(g, 0.1, 0.6), generator=_seed(g)),
    "contrast": lambda x, g: D.contrast_change(x, gamma=_rand(g, 0.6, 1.6), scale=_rand(g, 0.8, 1.1)),
    "blur+noise": lambda x, g: D.rician_noise(D.gaussian_blur(x, _rand(g, 0.5, 1.5)), _rand(g, 0.01, 0.06),
                                              generator=_seed(g)),
}


def degrade(x: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Each sample of ``x`` (B,1,H,W) in [0, 1], with probability ``prob``, gets one artefact of
    :data:`DEGRADATIONS` (drawn uniformly, severity uniform in its range)."""
    if prob <= 0:
        return x
    names = list(DEGRADATIONS)
    out = x.clone()
    for i in range(x.shape[0]):
        if float(torch.rand(1, generator=generator)) < prob:
            name = names[int(torch.randint(len(names), (1,), generator=generator))]
            out[i : i + 1] = DEGRADATIONS[name](x[i : i + 1].clamp(0, 1), generator)  # type: ignore[operator]
    return out


def evaluate_segmenter(model: LesionSegmenter, sets: dict[str, SliceSet], batch_size: int = 16) -> dict[str, float]:
    """Dice per contrast, pooled over every labelled slice of every set: ``dice_<contrast>`` over the
    glioma subjects, ``ms_dice_<contrast>`` over the multiple-sclerosis ones (their many small lesions
    would otherwise be drowned by the large tumours)."""
    model.eval()
    sums: dict[str, list[float]] = {}  # key -> [2*intersection, |pred| + |target|]
    with torch.no_grad():
        for s in sets.values():
            labelled = s.has_lesion_label
            if not labelled.any():
                continue
            is_ms = torch.tensor([s.case_ids[i] in SUBJECTS and subject(s.case_ids[i]).lesion == "ms"
                                  for i in range(len(s))])
            for contrast, tensor in s.images.items():
                preds = []
                for i in range(0, len(s), batch_size):
                    preds.append(torch.sigmoid(model(tensor[i : i + batch_size])) > 0.5)
                pred, target = torch.cat(preds), s.lesion > 0.5
                for prefix, rows in (("", labelled & ~is_ms), ("ms_", labelled & is_ms)):
                    if rows.any():
                        acc = sums.setdefault(f"{prefix}dice_{contrast}", [0.0, 0.0])
                        acc[0] += 2.0 * float((pred[rows] & target[rows]).sum())
                        acc[1] += float(pred[rows].sum() + target[rows].sum())
    return {k: (1.0 if den == 0 else num / den) for k, (num, den) in sorted(sums.items())}


def _load_initial_weights(model: LesionSegmenter, source: Path) -> None:
    """Weights of a finished segmenter run (its ``model.safetensors``) or of a ``.safetensors`` file."""
    from ..errors import ConfigError
    from ..weights import load_safetensors, load_state_dict_strict

    file = source / "model.safetensors" if source.is_dir() else source
    if not file.is_file():
        raise ConfigError(f"init_from: no segmenter weights at {file} (a finished run directory or a .safetensors file)")
    state = load_safetensors(file)
    if segmenter_channels_of(state) != model.channels or segmenter_norm_of(state) != model.norm:
        raise ConfigError(
            f"init_from: {file} holds a segmenter of widths {segmenter_channels_of(state)} and {segmenter_norm_of(state)} "
            f"normalization; this run's config asks for {model.channels} and {model.norm}")
    load_state_dict_strict(model, state)


def train_segmenter(
    config: SegmenterConfig, run_dir: str | Path, *, resume: bool = True, cases: tuple[str, ...] = TRAIN_CASES,
    val_cases: tuple[str, ...] | None = None, verbose: bool = True,
) -> LesionSegmenter:
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    model = LesionSegmenter(tuple(config.channels), config.norm)
    if config.init_from is not None:  # checked before the (minutes of) data loading
        _load_initial_weights(model, Path(config.init_from))
    cases = available_cases(cases, config.data_root, config.extra_root, require=True)
    train_sets = build_slices(cases, size=config.size, slice_range=config.slice_range, root=config.data_root,
                              extra=config.extra_root)
    images, masks, _ = _flatten_contrasts(train_sets)
    if config.phantom_slices > 0:
        ph_images, ph_masks = phantom_slices(config.phantom_slices, config.size)
        images, masks = torch.cat([images, ph_images]), torch.cat([masks, ph_masks])
    if val_cases is None:
        labelled = tuple(c for c in VALIDATION_CASES if subject(c).label != "none")
        val_cases = available_cases(labelled, config.data_root, config.extra_root)
    val_sets = build_slices(val_cases, size=config.size, slice_range=config.val_slice_range, root=config.data_root,
                            extra=config.extra_root) if val_cases else {}
    val_sets = {k: _every_nth(v, config.val_slice_step) for k, v in val_sets.items()}

    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    def train_epoch(generator: torch.Generator) -> dict[str, float]:
        total = 0.0
        for _ in range(config.steps_per_epoch):
            idx = torch.randint(len(images), (config.batch_size,), generator=generator)
            x, m = _crops(images[idx], masks[idx], config.crop, config.lesion_crop_fraction, generator)
            x, m = augment([x, m], generator)
            x, m = _augment_geometry_and_contrast(x, m, generator)
            if config.affine_prob > 0:
                x, m = random_affine(x, m, config.affine_prob, config.affine_scale, config.affine_degrees, generator)
            x = degrade(x, config.degrade_prob, generator)
            logits = model(x)
            loss = F.binary_cross_entropy_with_logits(logits, m) + dice_loss(logits, m)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        return {"loss": total / config.steps_per_epoch}

    run_epochs(
        RunDir(run_dir), model, optimizer, epochs=config.epochs, seed=config.seed,
        config={**config_dict(config), "train_cases": list(cases), "val_cases": list(val_cases)},
        train_epoch=train_epoch, validate=(lambda: evaluate_segmenter(model, val_sets)) if val_sets else None,
        resume=resume, verbose=verbose,
        lr_at=config.lr_at,
    )
    model.eval()
    return model
