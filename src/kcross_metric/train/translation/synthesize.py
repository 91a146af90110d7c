"""The NIRPS-style synthesized set: every epoch's output of every translation model on the
validation cases, with the real target, the source and a lesion mask.

Layout written by :func:`write_synthesized_set` (paths in the index are relative to it)::

    OUT/synthesized.csv                       one row per synthesized slice (see COLUMNS)
    OUT/dataset.json                          provenance: runs, configs, checkpoint SHA-256s
    OUT/refs/<direction>/<case>_s<k>_{real,source,mask}.npy
    OUT/<family>_<direction>/epoch_<e>/<case>_s<k>.npy

Every image is a float32 (H, W) ``.npy`` in [0, 1] (masks 0/1), readable by
:func:`kcross_metric.data.io.load_image`, so ``kcross-score``/``kcross-eval`` and the benchmarks can read
the set directly. Lesion masks: the case's own segmentation where it has one
(``mask_kind=manual|algorithmic``); otherwise, with ``masks="segmenter"``, the union of the bundled
K-CROSS segmenter's masks on the real target and the source at full resolution, pooled like the
images (``mask_kind=segmenter``: a prediction, not a label); with ``masks="none"`` an empty mask
(``mask_kind=none``). See ``docs/datasets/synthesized.md``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..._util.files import atomic_write, atomic_write_text, sha256_file
from ...errors import ConfigError, OutputExistsError
from ..config import TranslationConfig, load_config
from .data import PairedSlices, paired_slices, parse_direction
from .trainer import checkpoint_path, load_generator

__all__ = ["COLUMNS", "find_runs", "write_synthesized_set", "load_synthesized_set"]

COLUMNS: tuple[str, ...] = (
    "fake", "real", "source", "mask", "mask_kind", "generator", "family", "direction",
    "source_contrast", "target_contrast", "epoch", "case", "slice",
)

_ALGORITHMIC_LABEL_CASES = ("TCGA-",)


def find_runs(runs_dir: str | Path) -> list[tuple[Path, TranslationConfig, int]]:
    """Translation run directories under ``runs_dir``: (path, config, finished epochs), sorted by name."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ConfigError(f"runs folder {runs_dir} does not exist")
    found = []
    for state_file in sorted(runs_dir.glob("*/state.json")):
        state = json.loads(state_file.read_text(encoding="utf-8"))
        config = state.get("config", {})
        if "family" not in config or "direction" not in config:
            continue
        cfg = load_config(TranslationConfig, None, **config)
        found.append((state_file.parent, cfg, int(state["epochs_done"])))
    if not found:
        raise ConfigError(f"no translation run (a folder with state.json from `kcross-train translation`) in {runs_dir}")
    return found


def _save(path: Path, array: np.ndarray) -> None:
    data = np.ascontiguousarray(array, dtype=np.float32)
    atomic_write(path, lambda tmp: np.save(tmp, data, allow_pickle=False), make_parents=True, suffix=".tmp.npy")


def _predicted_masks(cfg: TranslationConfig, full: PairedSlices) -> torch.Tensor:
    from ...core.metric import KCross

    metric = KCross()
    factor = cfg.crop // cfg.size
    masks = []
    for i in range(0, len(full), 8):
        m = metric.segment(full.target[i : i + 8]) | metric.segment(full.source[i : i + 8])
        masks.append(F.avg_pool2d(m.float(), factor) >= 0.5 if factor > 1 else m)
    return torch.cat(masks).float()


def _mask_kind(case_id: str, labelled: bool, masks: str) -> str:
    if labelled:
        return "algorithmic" if case_id.startswith(_ALGORITHMIC_LABEL_CASES) else "manual"
    return "segmenter" if masks == "segmenter" else "none"


def write_synthesized_set(
    runs_dir: str | Path,
    out: str | Path,
    *,
    masks: str = "segmenter",
    split: str = "validation",
    overwrite: bool = False,
    root: str | Path | None = None,
    batch_size: int = 16,
) -> Path:
    """Write every finished epoch of every translation run under ``runs_dir`` to ``out``.

    ``split="validation"`` (the default) gives the held-out synthesized set. ``split="train"`` writes
    the same models' outputs on the *training* cases (the generators saw these cases, so the outputs
    are in-sample): material to fit the metric's score networks on GAN outputs without touching a
    validation case. Slices follow each run's ``val_slice_range``/``val_slice_step`` either way.

    Returns the path of the index CSV. Raises :class:`OutputExistsError` if ``out`` already holds
    an index and ``overwrite`` is False, :class:`ConfigError` for no runs or a bad ``masks``.
    """
    if masks not in ("segmenter", "none"):
        raise ConfigError(f"masks must be 'segmenter' or 'none', got {masks!r}")
    if split not in ("validation", "train"):
        raise ConfigError(f"split must be 'validation' or 'train', got {split!r}")
    out = Path(out)
    index = out / "synthesized.csv"
    if index.exists() and not overwrite:
        raise OutputExistsError(f"{index} exists; pass overwrite=True (--overwrite) to replace the set")
    runs = find_runs(runs_dir)
    rows: list[dict[str, Any]] = []
    provenance: dict[str, Any] = {"runs": [], "masks": masks, "split": split}
    refs_done: dict[str, list[dict[str, str]]] = {}
    for run_path, cfg, epochs_done in runs:
        source_c, target_c = parse_direction(cfg.direction)
        val = paired_slices(split, cfg.direction, crop=cfg.crop, size=cfg.size,
                            slice_range=cfg.val_slice_range, step=cfg.val_slice_step, root=root)
        ref_key = f"{cfg.direction}@{cfg.crop}/{cfg.size}/{cfg.val_slice_range}/{cfg.val_slice_step}"
        if ref_key not in refs_done:
            predicted = None
            if masks == "segmenter" and not bool(val.has_lesion_label.all()):
                full = paired_slices(split, cfg.direction, crop=cfg.crop, size=cfg.crop,
                                     slice_range=cfg.val_slice_range, step=cfg.val_slice_step, root=root)
                predicted = _predicted_masks(cfg, full)
            refs = []
            for i, (case_id, k) in enumerate(zip(val.case_ids, val.slice_index)):
                labelled = bool(val.has_lesion_label[i])
                kind = _mask_kind(case_id, labelled, masks)
                mask = val.lesion[i, 0] if labelled or predicted is None else predicted[i, 0]
                stem = f"refs/{cfg.direction}/{case_id}_s{k:03d}"
                names = {"real": f"{stem}_real.npy", "source": f"{stem}_source.npy", "mask": f"{stem}_mask.npy"}
                _save(out / names["real"], val.target[i, 0].numpy())
                _save(out / names["source"], val.source[i, 0].numpy())
                _save(out / names["mask"], mask.numpy())
                refs.append({**names, "mask_kind": kind})
            refs_done[ref_key] = refs
        refs = refs_done[ref_key]
        name = run_path.name
        checkpoints = {}
        for epoch in range(1, epochs_done + 1):
            ckpt = checkpoint_path(run_path, epoch)
            if not ckpt.exists():
                raise ConfigError(f"{run_path} reports {epochs_done} epochs but {ckpt} is missing")
            checkpoints[epoch] = sha256_file(ckpt)
            generator = load_generator(run_path, epoch, cfg)
            with torch.no_grad():
                fakes = torch.cat([generator(val.source[i : i + batch_size]) for i in range(0, len(val), batch_size)])
            for i, (case_id, k) in enumerate(zip(val.case_ids, val.slice_index)):
                rel = f"{name}/epoch_{epoch:03d}/{case_id}_s{k:03d}.npy"
                _save(out / rel, fakes[i, 0].numpy())
                rows.append({
                    "fake": rel, **refs[i], "generator": name, "family": cfg.family, "direction": cfg.direction,
                    "source_contrast": source_c, "target_contrast": target_c, "epoch": epoch,
                    "case": case_id, "slice": k,
                })
        provenance["runs"].append({"name": name, "epochs": epochs_done, "config": cfg.__dict__,
                                   "checkpoint_sha256": checkpoints})
    out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(COLUMNS))
    writer.writeheader()
    writer.writerows([{c: r[c] for c in COLUMNS} for r in rows])
    atomic_write_text(index, table.getvalue(), overwrite=True, newline="")
    atomic_write_text(out / "dataset.json", json.dumps(provenance, indent=2, default=str), overwrite=True)
    return index


def load_synthesized_set(index: str | Path) -> list[dict[str, Any]]:
    """Rows of ``synthesized.csv`` with ``fake``/``real``/``source``/``mask`` loaded as float32
    (H, W) tensors (files shared between rows are read once; their relative paths are kept in
    ``files``), ``epoch``/``slice`` as int.

    The records fit :func:`kcross_metric.train.ratedsets.twoafc.pairs_from_synthesized`
    (``case``, ``slice`` and ``target_contrast`` -> ``contrast`` keys are provided).
    """
    index = Path(index)
    if not index.is_file():
        raise ConfigError(f"synthesized set index {index} does not exist")
    cache: dict[str, torch.Tensor] = {}

    def image(rel: str) -> torch.Tensor:
        if rel not in cache:
            cache[rel] = torch.from_numpy(np.load(index.parent / rel, allow_pickle=False).astype(np.float32))
        return cache[rel]

    records = []
    with open(index, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            missing = [c for c in COLUMNS if c not in row]
            if missing:
                raise ConfigError(f"{index} lacks columns {missing}; expected {list(COLUMNS)}")
            rec: dict[str, Any] = dict(row)
            rec["files"] = {key: row[key] for key in ("fake", "real", "source", "mask")}
            for key in ("fake", "real", "source", "mask"):
                rec[key] = image(row[key])
            rec["epoch"], rec["slice"] = int(row["epoch"]), int(row["slice"])
            rec["contrast"] = row["target_contrast"]
            records.append(rec)
    return records
