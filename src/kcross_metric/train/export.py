"""Assemble the shipped ``kcross.safetensors`` from the segmenter, stage-1 and stage-2 runs."""

from __future__ import annotations

import json
from pathlib import Path

from ..nets.kcross_nets import KCrossNetworks
from ..weights import load_safetensors, load_state_dict_strict, save_safetensors, write_checksums

__all__ = ["assemble_networks", "export_weights"]

_PARTS = {
    "segmenter": ("segmenter",),
    "stage1": ("complex_unet", "tumor", "structure"),
    "stage2": ("complex_score", "natural_score"),
}


def assemble_networks(
    segmenter_run: str | Path | None = None,
    stage1_run: str | Path | None = None,
    stage2_run: str | Path | None = None,
) -> KCrossNetworks:
    """A :class:`KCrossNetworks` with the parts of the given runs loaded (others left at init)."""
    nets = KCrossNetworks()
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
    segmenter_run: str | Path,
    stage1_run: str | Path,
    stage2_run: str | Path,
    overwrite: bool = False,
    update_checksums: bool = True,
) -> str:
    """Write the full weight file with run metadata; returns its SHA-256."""
    from .. import __version__

    nets = assemble_networks(segmenter_run, stage1_run, stage2_run)
    metadata = {"format": "kcross-networks-v1", "kcross_metric_version": __version__}
    for stage, run in (("segmenter", segmenter_run), ("stage1", stage1_run), ("stage2", stage2_run)):
        state_file = Path(run) / "state.json"
        if state_file.exists():
            metadata[f"{stage}_state"] = json.dumps(json.loads(state_file.read_text()), sort_keys=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in nets.state_dict().items()}
    digest = save_safetensors(tensors, out_path, metadata=metadata, overwrite=overwrite)
    if update_checksums:
        write_checksums(Path(out_path).parent)
    return digest
