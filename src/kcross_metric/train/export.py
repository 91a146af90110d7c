"""Assemble the shipped ``kcross.safetensors`` from the segmenter, stage-1 and stage-2 runs.

A stage that was not retrained can come from an existing weight file (``base_weights``, e.g. the
bundled ``kcross.safetensors``): refitting only the score networks (stage 2) on your own rated set
or pair set needs neither the segmenter nor the stage-1 runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.nets.kcross_nets import KCrossNetworks
from ..core.nets.segmenter import segmenter_channels_of, segmenter_norm_of
from ..weights import load_safetensors, load_state_dict_strict, save_safetensors, write_checksums

__all__ = ["assemble_networks", "export_weights"]

_PARTS = {
    "segmenter": ("segmenter",),
    "stage1": ("complex_unet", "tumor", "structure"),
    "stage2": ("complex_score", "natural_score"),
}


def _base_state(base_weights: str | Path) -> tuple[dict, dict[str, str], str]:
    """Tensors, metadata and SHA-256 of a full K-CROSS weight file (verified like ``KCross(weights=)``)."""
    from ..weights import load_safetensors_with_metadata, resolve_weights, sha256_file

    path = resolve_weights(base_weights, filename="kcross.safetensors")
    tensors, metadata = load_safetensors_with_metadata(path)
    return tensors, metadata, sha256_file(path)


def assemble_networks(
    segmenter_run: str | Path | None = None,
    stage1_run: str | Path | None = None,
    stage2_run: str | Path | None = None,
    *,
    base_weights: str | Path | None = None,
) -> KCrossNetworks:
    """A :class:`KCrossNetworks` with the parts of the given runs loaded.

    Parts without a run come from ``base_weights`` (a full weight file) when given, else stay at
    their random initialisation (the training code's starting point).
    """
    base = _base_state(base_weights)[0] if base_weights is not None else None
    return _assemble(segmenter_run, stage1_run, stage2_run, base)


def _assemble(
    segmenter_run: str | Path | None,
    stage1_run: str | Path | None,
    stage2_run: str | Path | None,
    base_tensors: dict | None,
) -> KCrossNetworks:
    design = "v2"
    if stage2_run is not None:
        design = KCrossNetworks.design_of(load_safetensors(Path(stage2_run) / "model.safetensors"))
    elif base_tensors is not None:
        design = KCrossNetworks.design_of(base_tensors)
    if segmenter_run is not None:
        seg_state = load_safetensors(Path(segmenter_run) / "model.safetensors")
        channels, norm = segmenter_channels_of(seg_state), segmenter_norm_of(seg_state)
    else:
        channels = segmenter_channels_of(base_tensors or {}, "segmenter.")
        norm = segmenter_norm_of(base_tensors or {}, "segmenter.")
    nets = KCrossNetworks(design, channels, norm)
    if base_tensors is not None:
        # parts replaced by a run may differ in shape (another head design, another segmenter width)
        replaced = {"segmenter"} if segmenter_run is not None else set()
        if KCrossNetworks.design_of(base_tensors) != design:
            replaced |= set(_PARTS["stage2"])
        fresh = nets.state_dict()
        base_tensors = {k: v for k, v in base_tensors.items() if k.split(".")[0] not in replaced}
        base_tensors.update({k: v for k, v in fresh.items() if k.split(".")[0] in replaced})
        load_state_dict_strict(nets, base_tensors)  # a full, matching file: strict
    state = nets.state_dict()
    for stage, run in (("segmenter", segmenter_run), ("stage1", stage1_run), ("stage2", stage2_run)):
        if run is None:
            continue
        tensors = load_safetensors(Path(run) / "model.safetensors")
        if stage == "segmenter":
            tensors = {f"segmenter.{k}": v for k, v in tensors.items()}
        for key in tensors:
            if key.split(".")[0] not in _PARTS[stage] or key not in state:
                from ..errors import WeightsError

                raise WeightsError(f"{run}: unexpected key {key!r} for the {stage} part")
        state.update(tensors)
    load_state_dict_strict(nets, state)
    nets.eval()
    return nets


def export_weights(
    out_path: str | Path,
    *,
    segmenter_run: str | Path | None = None,
    stage1_run: str | Path | None = None,
    stage2_run: str | Path | None = None,
    base_weights: str | Path | None = None,
    overwrite: bool = False,
    update_checksums: bool = True,
) -> str:
    """Write the full weight file with run metadata; returns its SHA-256.

    Every part needs a run, or ``base_weights`` to take the parts without a run from; the base
    file's metadata of those parts is kept and its SHA-256 recorded as ``base_weights_sha256``.
    """
    from .._version import __version__
    from ..errors import ConfigError

    runs = {"segmenter": segmenter_run, "stage1": stage1_run, "stage2": stage2_run}
    missing = [stage for stage, run in runs.items() if run is None]
    if missing and base_weights is None:
        raise ConfigError(f"no run for {', '.join(missing)}: pass those runs or base_weights to take them from")
    if not any(run is not None for run in runs.values()):
        raise ConfigError("nothing to export: give at least one run (the base weights alone are already a file)")
    base_tensors, base_meta, base_sha = _base_state(base_weights) if base_weights is not None else (None, {}, "")
    nets = _assemble(segmenter_run, stage1_run, stage2_run, base_tensors)
    metadata = {"format": f"kcross-networks-{nets.design}", "kcross_metric_version": __version__}
    if base_weights is not None:
        metadata.update({f"{s}_state": base_meta[f"{s}_state"] for s in missing if f"{s}_state" in base_meta})
        metadata["base_weights_sha256"] = base_sha
    for stage, run in runs.items():
        if run is None:
            continue
        state_file = Path(run) / "state.json"
        if state_file.exists():
            metadata[f"{stage}_state"] = json.dumps(json.loads(state_file.read_text(encoding="utf-8")), sort_keys=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in nets.state_dict().items()}
    digest = save_safetensors(tensors, out_path, metadata=metadata, overwrite=overwrite)
    if update_checksums:
        write_checksums(Path(out_path).parent)
    return digest
