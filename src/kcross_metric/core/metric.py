"""K-CROSS: the k-space-aware cross-modality score (Xie et al., "K-Space-Aware Cross-Modality Score
for Synthesized Neuroimage Quality Assessment").

``KCross()(fake, real, source)`` scores synthesized target-modality MR images against the real
target image (and optionally the source image the fake was synthesized from):

* inputs (B,1,H,W) slices or (B,1,D,H,W) volumes (axial slices along D), intensities in
  ``[0, data_range]`` with a zero background (skull-stripped), or in ``[low, high]`` for
  ``data_range=(low, high)`` (e.g. ``(-1, 1)`` for a tanh generator; the background is then ``low``);
  3 identical channels (grayscale saved as RGB) are taken as one;
* output (B,) scores in [0, 1], higher is better, 1 for a fake identical to the real image;
  :meth:`KCross.score` returns them in a :class:`KCrossResult` with the branch qualities (and their
  per-slice values for volumes), and :meth:`KCross.explain` a :class:`KCrossExplanation`, the same
  result plus error maps.

Three branches (paper Sec. III): a complex U-Net on normalized k-space, a tumor encoder on the
lesion region (mask from a frozen segmenter, a user mask, or any callable), and a structure encoder
shared by source and target. Their difference vectors go through the complex and natural score
networks; the branch qualities are multiplied (``combine="product"``, see docs/design-decisions.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import nn

from .._util.checks import (
    DataRange,
    check_data_range,
    check_pair,
    check_reduction,
    check_tensor,
    intensity_range,
    reduce,
    single_channel,
)
from ..errors import ConfigError, DeviceMismatchError, EmptyReferenceError, NonFiniteError, ShapeError
from .branches import (
    BRANCHES,
    FEATURE_BRANCHES,
    StructureReference,
    complex_branch_features,
    lesion_change_features,
    structure_branch_features,
    structure_reference,
    tumor_branch_features,
)
from .kspace import fft2c, image_to_kspace
from .nets.kcross_nets import PAD_MULTIPLE, KCrossNetworks, head_energies, natural_energy
from .reference_cache import ReferenceCache, ReferenceCacheInfo, content_key

__all__ = [
    "DEFAULT_REFERENCE_CACHE_MB",
    "KSPACE_ERROR_EPS",
    "MIN_SHARE_TOTAL",
    "WEIGHTS_FILENAME",
    "KCross",
    "KCrossExplanation",
    "KCrossResult",
    "Segmenter",
]

Segmenter = Callable[[torch.Tensor], torch.Tensor]
Combine = Literal["product", "mean", "complex", "natural"]
_COMBINES = ("product", "mean", "complex", "natural")
WEIGHTS_FILENAME = "kcross.safetensors"
#: Default bound of :class:`KCross`'s reference cache, MiB (about 48 slices of 256x256)
DEFAULT_REFERENCE_CACHE_MB = 512

#: Contributions ``-log q`` summed over the feature branches below which :meth:`KCrossResult.shares`
#: gives no shares: the scores display as 1.0000 and every branch at 0.0000
MIN_SHARE_TOTAL = 1e-4
#: Added to ``|fft2c(fake) - fft2c(real)|`` before the log of :attr:`KCrossExplanation.kspace_error`:
#: identical slices give ``log(1e-8) = -18.4``.
KSPACE_ERROR_EPS = 1e-8
# Smallest quality used in -log q, so a quality that underflows to 0 gives a large finite value.
_TINY = 1e-30
_NO_SLICES = "{what} needs per-slice values: score a volume, or use KCross.explain for slices"


def _neg_log(q: torch.Tensor) -> torch.Tensor:
    return 0.0 - torch.log(q.clamp_min(_TINY))  # 0.0 - x: no negative zero for q == 1


@dataclass
class KCrossResult:
    """Everything :meth:`KCross.score` computes. ``B`` samples, ``D`` axial slices of volumes.

    Attributes:
        score: (B,) quality in [0, 1], higher is better; for volumes the mean over scored slices.
        branches: :data:`~kcross_metric.core.branches.BRANCHES` (complex, tumor, structure, natural) ->
            (B,) branch qualities ``exp(-network output)`` in [0, 1], for volumes the mean over
            scored slices. ``tumor`` is 1.0 where no lesion was found (the branch is dropped).
        lesion_mask: bool mask, same shape as the inputs, the lesion region the tumor branch used.
        has_lesion: (B,) for slices, (B,D) for volumes: whether the tumor branch was active.
        slice_scores: (B,D) per-slice scores for volumes (NaN for slices not scored), else None.
        slice_used: (B,D) bool, slices that contain brain and were scored; None for slices.
        version: package version and the weights that produced the scores.
        slice_branches: name -> (B,D) per-slice branch qualities for volumes (NaN for slices not
            scored), else None.
        combine: the metric's ``combine`` rule (the contribution identity below holds for
            ``"product"``).

    Contributions ``-log q`` (:attr:`contributions`, :attr:`slice_contributions`) tell how much each
    branch pulls the score below 1. With ``combine="product"`` the score is
    ``q_complex * q_natural``, so ``complex + natural`` contributions equal ``-log(score)`` exactly,
    slice by slice. ``tumor`` and ``structure`` are the natural score network with the other
    branch's difference vector zeroed (:meth:`KCross.qualities`), so they split the natural part
    only approximately.
    """

    score: torch.Tensor
    branches: dict[str, torch.Tensor]
    lesion_mask: torch.Tensor
    has_lesion: torch.Tensor
    slice_scores: torch.Tensor | None = None
    slice_used: torch.Tensor | None = None
    version: dict[str, object] = field(default_factory=dict)
    slice_branches: dict[str, torch.Tensor] | None = None
    combine: str = "product"

    @property
    def contributions(self) -> dict[str, torch.Tensor]:
        """Name -> (B,) ``-log(branches[name])`` (0 = this branch costs nothing)."""
        return {k: _neg_log(q) for k, q in self.branches.items()}

    @property
    def slice_contributions(self) -> dict[str, torch.Tensor] | None:
        """Name -> (B,D) per-slice ``-log q`` (NaN for slices not scored); None for slice inputs."""
        if self.slice_branches is None or self.slice_used is None:
            return None
        out = {}
        for k, q in self.slice_branches.items():
            c = torch.full_like(q, float("nan"))
            # the log of the scored slices alone: a vectorised log may round an element differently
            # depending on its position, so the NaN padding must not shift them
            c[self.slice_used] = _neg_log(q[self.slice_used])
            out[k] = c
        return out

    def shares(self, sample: int = 0, slice_index: int | None = None) -> dict[str, float]:
        """Fractions of the feature branches' (complex, tumor, structure) contributions (sum to 1),
        or all 0 when the contributions sum to less than :data:`MIN_SHARE_TOTAL` (nothing to share
        out: fractions of rounding noise would read as a diagnosis).

        For one sample (volume mean) or, with ``slice_index``, one slice of it (volumes and
        explanations only).
        """
        if slice_index is None:
            contributions = self.contributions
            parts = {k: float(contributions[k][sample]) for k in FEATURE_BRANCHES}
        else:
            per_slice = self.slice_contributions
            if per_slice is None:
                raise ConfigError(_NO_SLICES.format(what="shares(slice_index=...)"))
            parts = {k: float(per_slice[k][sample, slice_index]) for k in FEATURE_BRANCHES}
        parts = {k: (v if math.isfinite(v) else 0.0) for k, v in parts.items()}
        total = sum(parts.values())
        return {k: (v / total if total >= MIN_SHARE_TOTAL else 0.0) for k, v in parts.items()}

    def worst_slices(self, n: int, sample: int = 0) -> list[int]:
        """Indices of the ``n`` scored slices with the lowest scores, worst first (volumes and
        explanations only)."""
        if n < 0:
            raise ConfigError(f"n must be >= 0, got {n}")
        if self.slice_scores is None or self.slice_used is None:
            raise ConfigError(_NO_SLICES.format(what="worst_slices"))
        scores = self.slice_scores[sample].detach().float().cpu()
        used = self.slice_used[sample].cpu()
        idx = used.nonzero().squeeze(1)
        order = torch.argsort(scores[idx], stable=True)
        return [int(i) for i in idx[order][:n]]


@dataclass(kw_only=True)
class KCrossExplanation(KCrossResult):
    """What :meth:`KCross.explain` returns: the pair's :class:`KCrossResult` plus two error maps.

    The per-slice fields are filled for slice inputs too, with ``D = 1``: ``slice_scores``,
    ``slice_used`` (all True), ``has_lesion`` and ``slice_branches`` are (B,1).

    Attributes:
        error_map: inputs' (1-channel) shape, ``|fake - real|`` over the span of ``data_range``,
            in [0, 1].
        kspace_error: inputs' shape, ``log(|fft2c(fake) - fft2c(real)| + KSPACE_ERROR_EPS)`` per
            axial slice, centred (DC at ``(H//2, W//2)``), on the [0, 1]-scaled images.
    """

    error_map: torch.Tensor
    kspace_error: torch.Tensor


def _result_dtype(x: torch.Tensor) -> torch.dtype:
    """Scores are float64 for float64 inputs, else float32 (the networks' precision)."""
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    h, w = x.shape[-2:]
    th, tw = max(multiple, math.ceil(h / multiple) * multiple), max(multiple, math.ceil(w / multiple) * multiple)
    pad = ((tw - w) // 2, tw - w - (tw - w) // 2, (th - h) // 2, th - h - (th - h) // 2)
    return (F.pad(x, pad) if any(pad) else x), pad


def _put_levels(ref: dict[str, torch.Tensor], name: str, levels: list[torch.Tensor]) -> None:
    """Encoder levels into the flat reference dict, as ``name.0``, ``name.1``, ..."""
    for i, t in enumerate(levels):
        ref[f"{name}.{i}"] = t


def _get_levels(ref: dict[str, torch.Tensor], name: str) -> list[torch.Tensor]:
    """The encoder levels :func:`_put_levels` stored (an empty list if none)."""
    out: list[torch.Tensor] = []
    while f"{name}.{len(out)}" in ref:
        out.append(ref[f"{name}.{len(out)}"])
    return out


def _unpad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


class KCross(nn.Module):
    """K-CROSS metric module. Frozen, in eval mode; differentiable with respect to its inputs.

    Args:
        weights: path to a ``.safetensors`` file; ``None`` uses the weights bundled with the package
            (an :class:`~kcross_metric.errors.UntrainedWeightsError` if this build has none).
        data_range: intensity range of the inputs: a number R for ``[0, R]``, or a pair
            ``(low, high)`` such as ``(-1, 1)`` (torchmetrics' convention), mapped once to [0, 1] on
            entry, so scores equal those of the images rescaled to [0, 1]. Never inferred from data.
        reduction: ``"none"`` (B,) | ``"mean"`` | ``"sum"``.
        segmenter: optional callable ``(N,1,H,W) in [0,1] -> (N,1,H,W)`` lesion probabilities or
            booleans, replacing the bundled segmenter. A ``mask=`` given to the call overrides both.
        combine: how the complex and natural qualities make the score (``"product"`` default;
            ``"mean"``, or one branch family alone for ablations).
        slice_batch_size: slices scored at once; bounds memory for volumes.
        min_lesion_pixels: predicted lesions smaller than this (per slice) count as no lesion.
        brain_threshold, min_brain_fraction: a volume slice is scored when at least
            ``min_brain_fraction`` of the real slice's pixels exceed ``brain_threshold`` of the
            range above its lower bound (``brain_threshold * data_range`` for ``[0, data_range]``).
        reference_cache_mb: memory (MiB) for the reference cache: what K-CROSS computes from the real
            image and the source alone (lesion masks, k-space, encoder features; about 10.5 MB per
            256x256 slice) is kept per chunk of ``slice_batch_size`` slices, keyed by content, and
            reused when the same reference comes again (a validation set scored every epoch), so
            that only the fake side is computed. Scores are unchanged (bitwise). ``0`` turns it off.
            Chunks beyond the bound are computed each time and not stored
            (:mod:`kcross_metric.core.reference_cache`);
            :meth:`clear_reference_cache` empties it, :meth:`reference_cache_info` counts hits.

    Example:
        >>> import torch
        >>> from kcross_metric import KCross
        >>> metric = KCross.untrained(seed=0)  # doctest: +SKIP (KCross() loads trained weights)
        >>> real = torch.rand(2, 1, 64, 64)
        >>> metric(real, real).shape
        torch.Size([2])
    """

    higher_is_better = True
    is_differentiable = True
    score_range = (0.0, 1.0)

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        data_range: DataRange = 1.0,
        reduction: str = "none",
        segmenter: Segmenter | None = None,
        combine: Combine = "product",
        slice_batch_size: int = 4,
        min_lesion_pixels: int = 16,
        brain_threshold: float = 0.02,
        min_brain_fraction: float = 0.01,
        reference_cache_mb: float = DEFAULT_REFERENCE_CACHE_MB,
        _networks: KCrossNetworks | None = None,
    ) -> None:
        super().__init__()
        self.data_range = check_data_range(data_range)
        self.reduction = check_reduction(reduction)
        if combine not in _COMBINES:
            raise ConfigError(f"combine must be one of {_COMBINES}, got {combine!r}")
        if segmenter is not None and not callable(segmenter):
            raise ConfigError(f"segmenter must be callable, got {type(segmenter).__name__}")
        if int(slice_batch_size) < 1:
            raise ConfigError(f"slice_batch_size must be >= 1, got {slice_batch_size}")
        if (isinstance(reference_cache_mb, bool) or not isinstance(reference_cache_mb, (int, float))
                or not math.isfinite(reference_cache_mb) or reference_cache_mb < 0):
            raise ConfigError(f"reference_cache_mb must be a number >= 0 (0 turns the cache off), got {reference_cache_mb!r}")
        self._reference_cache = ReferenceCache(int(reference_cache_mb * 2**20))
        self.combine = combine
        self.custom_segmenter = segmenter
        self.slice_batch_size = int(slice_batch_size)
        self.min_lesion_pixels = int(min_lesion_pixels)
        self.brain_threshold = float(brain_threshold)
        self.min_brain_fraction = float(min_brain_fraction)

        if _networks is not None:
            self.nets = _networks
            self.weights_info: dict[str, object] = {"weights": None, "pretrained": False}
        else:
            from ..weights import load_safetensors_with_metadata, load_state_dict_strict, resolve_weights, sha256_file

            path = resolve_weights(weights, filename=WEIGHTS_FILENAME)
            tensors, metadata = load_safetensors_with_metadata(path)
            self.nets = KCrossNetworks.for_state(tensors)
            load_state_dict_strict(self.nets, tensors)
            self.weights_info = {
                "weights": Path(path).name,
                "weights_sha256": sha256_file(path),
                "pretrained": True,
                "metadata": dict(metadata or {}),
            }
        self.nets.eval()
        self.nets.requires_grad_(False)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def untrained(cls, seed: int = 0, design: str = "v2", **kwargs: object) -> KCross:
        """Randomly initialised architecture (for training and tests). Scores are meaningless."""
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            nets = KCrossNetworks(design)
        finally:
            torch.random.set_rng_state(gen_state)
        return cls(_networks=nets, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_networks(cls, networks: KCrossNetworks, **kwargs: object) -> KCross:
        """Wrap trained networks held in memory (used by the training code)."""
        return cls(_networks=networks, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_pretrained(
        cls,
        repo_id: str,
        *,
        revision: str,
        filename: str = WEIGHTS_FILENAME,
        cache_dir: str | Path | None = None,
        local_files_only: bool | None = None,
        expected_sha256: str | None = None,
        allow_unpinned: bool = False,
        **kwargs: object,
    ) -> KCross:
        """Load weights from a Hugging Face Hub repository at a pinned ``revision`` (commit sha)."""
        from ..weights import hub_download

        path = hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            expected_sha256=expected_sha256,
            allow_unpinned=allow_unpinned,
        )
        model = cls(weights=path, **kwargs)  # type: ignore[arg-type]
        model.weights_info.update({"repo_id": repo_id, "revision": revision})
        return model

    def train(self, mode: bool = True) -> KCross:
        # The metric's networks stay in eval mode (frozen BN statistics): scores never depend on
        # the batch. Training code trains ``KCrossNetworks`` directly.
        super().train(mode)
        self.nets.eval()
        return self

    @property
    def version(self) -> dict[str, object]:
        from .._version import __version__

        info: dict[str, object] = {"kcross_metric": __version__, "combine": self.combine}
        info.update({k: v for k, v in self.weights_info.items() if k != "metadata"})
        return info

    # ------------------------------------------------------------------ validation
    def _check_inputs(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        source: torch.Tensor | None,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Validate the inputs in the caller's units; returns them with 3 identical channels
        (grayscale saved as RGB) reduced to one, ``x[:, :1]``."""
        dr = intensity_range(self.data_range)
        fake = check_tensor(fake, "fake", ndims=(4, 5), channels=1, data_range=dr, gray_rgb=True)
        real = check_tensor(real, "real", ndims=(4, 5), channels=1, data_range=dr, gray_rgb=True)
        check_pair(fake, real, ("fake", "real"))
        if source is not None:
            source = check_tensor(source, "source", ndims=(4, 5), channels=1, data_range=dr, gray_rgb=True)
            check_pair(fake, source, ("fake", "source"))
        if mask is not None:
            if not isinstance(mask, torch.Tensor):
                raise ShapeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
            if mask.dim() == fake.dim() and mask.shape[1] == 3 and mask.device.type != "meta":
                mask = single_channel(mask, "mask")
            if mask.shape != fake.shape:
                raise ShapeError(f"mask must have the inputs' shape {tuple(fake.shape)}, got {tuple(mask.shape)}")
            if mask.device != fake.device:
                raise DeviceMismatchError(f"mask is on {mask.device} but fake is on {fake.device}")
            if mask.is_floating_point() and mask.device.type != "meta" and not bool(torch.isfinite(mask).all()):
                raise NonFiniteError("mask contains NaN or Inf values; expected a boolean or 0/1 lesion mask")
        return fake, real, source, mask

    # ------------------------------------------------------------------ lesion masks
    def _lesion_probability(self, image: torch.Tensor) -> torch.Tensor:
        """(N,1,H,W) lesion probabilities in [0, 1] from the bundled or the user's segmenter."""
        if self.custom_segmenter is not None:
            out = self.custom_segmenter(image)
            if not isinstance(out, torch.Tensor) or out.shape != image.shape:
                raise ShapeError(
                    f"segmenter must return a tensor of shape {tuple(image.shape)}, got "
                    f"{getattr(out, 'shape', type(out).__name__)}"
                )
            return out.float().clamp(0.0, 1.0)
        return torch.sigmoid(self.nets.segmenter(image))

    def _segment(self, image: torch.Tensor) -> torch.Tensor:
        return self._lesion_probability(image) > 0.5

    def segment(self, image: torch.Tensor) -> torch.Tensor:
        """The lesion mask the metric's segmenter (bundled or ``segmenter=``) gives ``image``.

        Args:
            image: (B, 1, H, W) slices in [0, 1] (any contrast), on the metric's device.

        Returns:
            bool (B, 1, H, W), True inside the predicted lesion. Not differentiable.
        """
        image = check_tensor(image, "image", ndims=(4,), channels=1, data_range=1.0)
        with torch.no_grad():
            padded, pad = _pad_to_multiple(image, PAD_MULTIPLE)
            return _unpad(self._segment(padded), pad)

    def _keep_large_lesions(self, lesion: torch.Tensor) -> torch.Tensor:
        """``lesion`` (N,1,H,W) bool with slices of fewer than ``min_lesion_pixels`` pixels cleared."""
        counts = lesion.flatten(1).sum(dim=1)
        return lesion & (counts >= self.min_lesion_pixels)[:, None, None, None]

    # ------------------------------------------------------------------ scoring of slices
    def reference_features(
        self, real: torch.Tensor, source: torch.Tensor | None, mask: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """Everything K-CROSS computes from the reference alone, for (N,1,H,W) slices in [0,1].

        The real image's k-space and encoder features (complex U-Net, structure, and for design v2 the
        tumor encoder on the lesion region), the source's structure features and its distance to the
        real image, and (v2) the real image's lesion probabilities, lesion mask and region. Flat
        name -> (N, ...) tensors (encoder levels as ``name.0``, ``name.1``, ...), the form
        :meth:`slice_features` takes as ``reference=`` and the reference cache stores per chunk.
        """
        real_p, _ = _pad_to_multiple(real, PAD_MULTIPLE)
        source_p = _pad_to_multiple(source, PAD_MULTIPLE)[0] if source is not None else None
        mask_p = _pad_to_multiple(mask.float(), PAD_MULTIPLE)[0] if mask is not None else None
        nets = self.nets
        kspace_real = image_to_kspace(real_p)
        ref: dict[str, torch.Tensor] = {"kspace_real": kspace_real}
        _put_levels(ref, "complex_real", nets.complex_unet.encode(kspace_real))
        structure = structure_reference(nets.structure, real_p, source_p)
        _put_levels(ref, "structure_real", structure.feats_real)
        if structure.feats_source is not None and structure.real_to_source is not None:
            _put_levels(ref, "structure_source", structure.feats_source)
            ref["real_to_source"] = structure.real_to_source
        with torch.no_grad():
            if nets.design == "v2":
                # the region comes from the real image and the source only, so it does not move between
                # two fakes of one real image (a lesion added or moved in the fake is seen by the
                # lesion-change features)
                prob_real = self._lesion_probability(real_p.detach())
                if mask_p is not None:
                    lesion = mask_p > 0.5
                else:
                    lesion = prob_real > 0.5
                    if source_p is not None:
                        lesion = lesion | self._segment(source_p.detach())
                ref["prob_real"], ref["lesion"] = prob_real, self._keep_large_lesions(lesion)
            elif mask_p is not None:
                ref["lesion"] = self._keep_large_lesions(mask_p > 0.5)
            else:
                # v1: union over real, fake (a hallucinated lesion) and source, completed with the
                # fake's mask by slice_features
                lesion = self._segment(real_p.detach())
                ref["lesion_reference"] = lesion | self._segment(source_p.detach()) if source_p is not None else lesion
        if nets.design == "v2":
            ref["region"] = F.max_pool2d(ref["lesion"].float(), 5, stride=1, padding=2)  # the lesion border too
            _put_levels(ref, "tumor_real", nets.tumor.encode(real_p, ref["region"]))
        else:
            ref["real"] = real_p  # v1: the tumor region, hence the real side of the tumor encoder, needs the fake
        return ref

    def slice_features(
        self,
        fake: torch.Tensor,
        real: torch.Tensor | None,
        source: torch.Tensor | None,
        mask: torch.Tensor | None,
        *,
        reference: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Branch difference vectors of (N,1,H,W) slices in [0,1] (no validation, no scaling).

        ``reference``: :meth:`reference_features` of ``real``, ``source`` and ``mask`` if already
        computed (then those three are not read). Returns ``complex`` (N,512) complex, ``tumor``
        (N,256), ``structure`` (N,256), ``has_lesion`` (N,), ``lesion_mask`` (N,1,H,W) bool and, for
        design v2, ``lesion_change`` (N,2). Used by scoring and by stage-2 training.
        """
        if reference is None:
            if real is None:
                raise ConfigError("slice_features needs real (or reference=)")
            reference = self.reference_features(real, source, mask)
        ref = reference
        fake_p, pad = _pad_to_multiple(fake, PAD_MULTIPLE)
        nets = self.nets
        change = None
        if nets.design == "v2":
            with torch.no_grad():
                change = lesion_change_features(self._lesion_probability(fake_p.detach()), ref["prob_real"])
            lesion, region = ref["lesion"], ref["region"]
            tumor = tumor_branch_features(nets.tumor, fake_p, None, region, _get_levels(ref, "tumor_real"))
        else:
            if "lesion" in ref:
                lesion = ref["lesion"]
            else:
                with torch.no_grad():
                    lesion = self._keep_large_lesions(ref["lesion_reference"] | self._segment(fake_p.detach()))
            region = F.max_pool2d(lesion.float(), 5, stride=1, padding=2)
            tumor = tumor_branch_features(nets.tumor, fake_p, ref["real"], region)
        structure = StructureReference(
            _get_levels(ref, "structure_real"), _get_levels(ref, "structure_source") or None, ref.get("real_to_source")
        )
        out = {
            "complex": complex_branch_features(
                nets.complex_unet, image_to_kspace(fake_p), ref["kspace_real"], _get_levels(ref, "complex_real")
            ),
            "tumor": tumor,
            "structure": structure_branch_features(nets.structure, fake_p, None, None, structure),
            "has_lesion": lesion.flatten(1).any(dim=1),
            "lesion_mask": _unpad(lesion, pad),
        }
        if change is not None:
            out["lesion_change"] = change
        return out

    def qualities(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Branch qualities and the combined score from :meth:`slice_features` vectors."""
        nets = self.nets
        vc, vt, vs = features["complex"], features["tumor"], features["structure"]
        vm = features.get("lesion_change")
        zeros = torch.zeros_like(vt)
        e_complex, e_natural = head_energies(nets.design, nets.complex_score, nets.natural_score, vc, vt, vs, vm)
        q_complex, q_natural = torch.exp(-e_complex), torch.exp(-e_natural)
        # branch qualities for reports and ablations: the natural head with the other branch at 0;
        # the lesion-change features (v2) belong to the tumor branch
        q_tumor = torch.exp(-natural_energy(nets.design, nets.natural_score, vt, zeros, vm))
        no_change = None if vm is None else torch.zeros_like(vm)
        q_structure = torch.exp(-natural_energy(nets.design, nets.natural_score, zeros, vs, no_change))
        if self.combine == "product":
            score = q_complex * q_natural
        elif self.combine == "mean":
            score = 0.5 * (q_complex + q_natural)
        elif self.combine == "complex":
            score = q_complex
        else:
            score = q_natural
        return {
            "score": score.clamp(0.0, 1.0),
            "complex": q_complex,
            "natural": q_natural,
            "tumor": q_tumor,
            "structure": q_structure,
        }

    def _score_slices(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        source: torch.Tensor | None,
        mask: torch.Tensor | None,
        use_cache: bool = False,
    ) -> dict[str, torch.Tensor]:
        """(N,1,H,W) in [0,1] float32 -> dict of (N,) qualities and the (N,1,H,W) lesion mask."""
        reference = self._cached_reference(real, source, mask) if use_cache else None
        feats = self.slice_features(fake, real, source, mask, reference=reference)
        out = self.qualities(feats)
        out["has_lesion"], out["lesion_mask"] = feats["has_lesion"], feats["lesion_mask"]
        return out

    # ------------------------------------------------------------------ reference cache
    def _cache_usable(self, real: torch.Tensor, source: torch.Tensor | None, mask: torch.Tensor | None) -> bool:
        """The cache serves design v2 (whose reference side does not depend on the fake), frozen
        networks and references that take no gradient (a cached tensor carries no graph), the
        bundled segmenter or a module one (a plain callable's state cannot be seen), and float32
        work outside autocast (an autocast call computes other features)."""
        if not self._reference_cache.enabled or self.nets.design != "v2":
            return False
        seg = self.custom_segmenter
        if seg is not None and not isinstance(seg, nn.Module):
            return False
        if torch.is_autocast_enabled(real.device.type):
            return False
        if any(p.requires_grad for p in self._fingerprinted_tensors()):
            return False
        return not any(t is not None and t.requires_grad for t in (real, source, mask))

    def _fingerprinted_tensors(self) -> list[torch.Tensor]:
        modules: list[nn.Module] = [self.nets]
        if isinstance(self.custom_segmenter, nn.Module):
            modules.append(self.custom_segmenter)
        return [t for m in modules for t in (*m.parameters(), *m.buffers())]

    def _network_fingerprint(self) -> tuple[object, ...]:
        """Changes when a network tensor (the custom segmenter's too) is replaced, moved or modified
        in place through autograd-visible ops (version counter). Not seen: writes through ``.data``
        and in-place changes of tensors made inside ``torch.inference_mode``; call
        :meth:`clear_reference_cache` after those."""
        tensors = self._fingerprinted_tensors()
        return (self.custom_segmenter, torch.get_float32_matmul_precision(),
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
                *((t.data_ptr(), -1 if t.is_inference() else t._version, t.device.type) for t in tensors))

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], *args: object, **kwargs: object) -> KCross:
        # .to() / .cpu() / .half(): the entries belong to the old tensors; free them now, not at the next call
        cache = self.__dict__.get("_reference_cache")
        if cache is not None:
            cache.clear()
        return super()._apply(fn, *args, **kwargs)

    def _cached_reference(
        self, real: torch.Tensor, source: torch.Tensor | None, mask: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """:meth:`reference_features` of the chunk, from the cache if this chunk was seen before.

        Chunks, not single slices, are the unit: the stored tensors were computed on exactly the
        batch a recomputation would use, so a hit is bit for bit what the uncached metric computes
        (a convolution's rounding can depend on the batch it runs in).
        """
        cache = self._reference_cache
        cache.check_fingerprint(self._network_fingerprint())
        on_cpu = tuple(t.detach().cpu() if t is not None else None for t in (real, source, mask))
        key = content_key(on_cpu, (str(real.device), self.min_lesion_pixels))
        entry = cache.get(key)
        if entry is not None:
            return entry
        # normal tensors even inside the caller's inference_mode: a cached tensor may later be saved for
        # the backward pass of a loss (inference tensors cannot be)
        with torch.inference_mode(False), torch.no_grad():
            computed = self.reference_features(real, source, mask)
        cache.put(key, computed)
        return computed

    def clear_reference_cache(self) -> None:
        """Forget every cached reference slice (see ``reference_cache_mb``)."""
        self._reference_cache.clear()

    def reference_cache_info(self) -> ReferenceCacheInfo:
        """Hits, misses, entries and bytes of the reference cache (chunks of slices, since construction)."""
        return self._reference_cache.info()

    def _score_in_chunks(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        source: torch.Tensor | None,
        mask: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        parts: list[dict[str, torch.Tensor]] = []
        step = self.slice_batch_size
        use_cache = self._cache_usable(real, source, mask)
        for i in range(0, fake.shape[0], step):
            sl = slice(i, i + step)
            parts.append(
                self._score_slices(
                    fake[sl], real[sl], source[sl] if source is not None else None, mask[sl] if mask is not None else None,
                    use_cache,
                )
            )
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    # ------------------------------------------------------------------ public API
    def score(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        source: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> KCrossResult:
        """Per-sample scores, branch qualities and lesion masks; per-slice scores and branch
        qualities for volumes (:class:`KCrossResult`).

        ``fake``, ``real``, ``source``: (B,1,H,W) or (B,1,D,H,W) in the metric's ``data_range``
        (3 identical channels are taken as one); ``mask``: optional lesion mask of that shape.
        """
        fake, real, source, mask = self._check_inputs(fake, real, source, mask)
        f, r, s = self._to_unit(fake), self._to_unit(real), self._to_unit(source)
        return self._score_unit(f, r, s, mask, _result_dtype(fake))

    def _score_unit(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        source: torch.Tensor | None,
        mask: torch.Tensor | None,
        out_dtype: torch.dtype,
    ) -> KCrossResult:
        """Validated inputs in [0, 1] (:meth:`_to_unit`) -> the result, values in ``out_dtype``."""
        if fake.dim() == 4:
            out = self._score_in_chunks(fake, real, source, mask)
            return KCrossResult(
                score=out["score"].to(out_dtype),
                branches={k: out[k].to(out_dtype) for k in BRANCHES},
                lesion_mask=out["lesion_mask"],
                has_lesion=out["has_lesion"],
                version=self.version,
                combine=self.combine,
            )
        return self._score_volume(fake, real, source, mask, out_dtype)

    @overload
    def _to_unit(self, t: torch.Tensor) -> torch.Tensor: ...

    @overload
    def _to_unit(self, t: None) -> None: ...

    def _to_unit(self, t: torch.Tensor | None) -> torch.Tensor | None:
        """Validated inputs in the metric's ``data_range`` -> float32 in [0, 1], the networks' scale:
        the one mapping of the inputs (:meth:`IntensityRange.to_internal`, then ``1 / data_range``
        for a range starting at 0)."""
        if t is None:
            return None
        rng = intensity_range(self.data_range)
        return (rng.to_internal(t.float()) * (1.0 / rng.compute_range)).clamp(0.0, 1.0)

    def brain_slices(self, real01: torch.Tensor) -> torch.Tensor:
        """(B, D) bool: the axial slices of real volumes (B,1,D,H,W) in [0, 1] that are scored: at
        least ``min_brain_fraction`` of their pixels above ``brain_threshold``.

        Raises:
            EmptyReferenceError: a volume has no such slice (empty or all-background reference).
        """
        b, d = real01.shape[0], real01.shape[2]
        with torch.no_grad():
            fraction = (real01 > self.brain_threshold).flatten(3).float().mean(dim=3).view(b, d)
            used = fraction >= self.min_brain_fraction
        empty = (~used.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            rule = (f"no slice with brain (at least {self.min_brain_fraction:g} of the pixels above "
                    f"{self.brain_threshold:g} of the range): an empty or all-background reference cannot "
                    "be scored against")
            raise EmptyReferenceError(
                f"real volume(s) {empty} of the batch have {rule}; check the data, or lower "
                "KCross(min_brain_fraction=..., brain_threshold=...) for very dark images",
                cli_message=f"the real volume has {rule}; check the file",
            )
        return used

    def _score_volume(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        source: torch.Tensor | None,
        mask: torch.Tensor | None,
        out_dtype: torch.dtype,
    ) -> KCrossResult:
        b, _, d, h, w = fake.shape

        def to_slices(t: torch.Tensor) -> torch.Tensor:
            return t.permute(0, 2, 1, 3, 4).reshape(b * d, 1, h, w)

        f, r = to_slices(fake), to_slices(real)
        s = to_slices(source) if source is not None else None
        m = to_slices(mask) if mask is not None else None
        used = self.brain_slices(real)
        idx = used.flatten().nonzero().squeeze(1)
        out = self._score_in_chunks(
            f[idx], r[idx], s[idx] if s is not None else None, m[idx] if m is not None else None
        )

        def scatter(values: torch.Tensor, fill: float) -> torch.Tensor:
            full = torch.full((b * d,), fill, dtype=values.dtype, device=values.device)
            return full.index_put((idx,), values).view(b, d)

        slice_scores = scatter(out["score"], float("nan"))
        weights = used.to(slice_scores.dtype)
        n_used = weights.sum(dim=1)

        def volume_mean(values: torch.Tensor) -> torch.Tensor:
            full = scatter(values, 0.0)
            return (full * weights).sum(dim=1) / n_used

        lesion_full = torch.zeros((b * d, 1, h, w), dtype=torch.bool, device=fake.device)
        lesion_full[idx] = out["lesion_mask"]
        has_lesion = torch.zeros(b * d, dtype=torch.bool, device=fake.device)
        has_lesion[idx] = out["has_lesion"]
        return KCrossResult(
            score=volume_mean(out["score"]).to(out_dtype),
            branches={k: volume_mean(out[k]).to(out_dtype) for k in BRANCHES},
            lesion_mask=lesion_full.view(b, d, 1, h, w).permute(0, 2, 1, 3, 4),
            has_lesion=has_lesion.view(b, d),
            slice_scores=slice_scores.to(out_dtype),
            slice_used=used,
            version=self.version,
            slice_branches={k: scatter(out[k], float("nan")).to(out_dtype) for k in BRANCHES},
            combine=self.combine,
        )

    def forward(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        source: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-sample scores (B,) in [0, 1] (or reduced), higher is better."""
        return reduce(self.score(fake, real, source, mask).score, self.reduction)

    def explain(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        source: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> KCrossExplanation:
        """:meth:`score` without gradients, plus the error maps (see :mod:`kcross_metric.core.explain`).

        Inputs as for :meth:`score`. Returns a :class:`KCrossExplanation`: the :class:`KCrossResult`
        with its per-slice fields (B,D) also for slice inputs (``D = 1``), ``error_map`` and
        ``kspace_error`` of the inputs' (1-channel) shape.
        """
        fake, real, source, mask = self._check_inputs(fake, real, source, mask)
        with torch.no_grad():
            f, r = self._to_unit(fake), self._to_unit(real)
            res = self._score_unit(f, r, self._to_unit(source), mask, _result_dtype(fake))
            error = (f - r).abs().to(res.score.dtype)
            kspace_error = torch.log((fft2c(f) - fft2c(r)).abs() + KSPACE_ERROR_EPS).to(res.score.dtype)
        if res.slice_scores is None:  # slice inputs: one slice per sample
            res = replace(
                res,
                has_lesion=res.has_lesion[:, None],
                slice_scores=res.score[:, None],
                slice_used=torch.ones_like(res.has_lesion)[:, None],
                slice_branches={k: q[:, None] for k, q in res.branches.items()},
            )
        return KCrossExplanation(
            **{fld.name: getattr(res, fld.name) for fld in fields(res)}, error_map=error, kspace_error=kspace_error
        )

    def extra_repr(self) -> str:
        return (f"data_range={self.data_range}, reduction={self.reduction!r}, combine={self.combine!r}, "
                f"pretrained={self.weights_info.get('pretrained')}")
