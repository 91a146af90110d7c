"""Write the Markdown model card of a weight file from its training runs.

    python -m kcross_metric.train.model_card --segmenter runs/segmenter --stage1 runs/stage1 \
        --stage2 runs/stage2 --weights src/kcross_metric/weights/kcross.safetensors --out kcross.md

The card holds what can be read from the runs (configs, per-epoch losses and validation figures,
wall time) and the fixed facts (data, licences, split, commands); free-text findings are appended
with ``--notes FILE``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from ..weights import sha256_file
from .splits import TRAIN_CASES, VALIDATION_CASES

DATA_LICENCES = {
    "BraTS-GLI-00000-000": "BraTS 2023 / TCIA, CC BY 4.0 (expert segmentation)",
    "TCGA-DU-7294": "TCGA-LGG / TCIA, CC BY 3.0 (algorithmic fused segmentation)",
    "IXI002-Guys-0828": "IXI, CC BY-SA 3.0 (healthy; T1 resampled to the T2 grid)",
    "BraTS-GLI-00001-000": "BraTS 2023 / TCIA, CC BY 4.0",
}


def _log(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _table(records: list[dict], max_rows: int = 25) -> str:
    if not records:
        return "(no epochs logged)\n"
    if len(records) > max_rows:  # keep the first epochs, then every k-th, and the last
        step = max(1, len(records) // max_rows)
        records = records[:5] + records[5:-1:step] + records[-1:]
    keys = list(records[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in records:
        lines.append("| " + " | ".join(f"{r.get(k):.4g}" if isinstance(r.get(k), float) else str(r.get(k)) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def _config(run: Path) -> dict:
    state = run / "state.json"
    return json.loads(state.read_text()).get("config", {}) if state.exists() else {}


def render(segmenter: Path, stage1: Path, stage2: Path, weights: Path, notes: str = "", appendices: Sequence[Path] = ()) -> str:
    runs = {"segmenter": segmenter, "stage1": stage1, "stage2": stage2}
    logs = {k: _log(v) for k, v in runs.items()}
    wall = {k: sum(r.get("seconds", 0.0) for r in v) for k, v in logs.items()}
    size_mb = weights.stat().st_size / 1e6
    out = [
        "# Model card: `kcross.safetensors`",
        "",
        f"- File: `{weights.name}`, {size_mb:.1f} MB, SHA-256 `{sha256_file(weights)}` (also in `SHA256SUMS`, checked on load).",
        "- Contents: every network of K-CROSS (`KCrossNetworks`): lesion segmenter, complex k-space U-Net,",
        "  tumor autoencoder, structure autoencoder, complex and natural score networks.",
        "- Produced by `kcross-train` (kcross_metric.train) on a 2-core CPU; total training wall time "
        f"{sum(wall.values()) / 60:.1f} min (segmenter {wall['segmenter'] / 60:.1f}, stage 1 {wall['stage1'] / 60:.1f}, "
        f"stage 2 {wall['stage2'] / 60:.1f}).",
        "",
        "## Data and licences",
        "",
        "Training cases (`kcross_metric.train.splits.TRAIN_CASES`):",
        "",
    ]
    out += [f"- `{c}`: {DATA_LICENCES.get(c, 'see MANIFEST')}" for c in TRAIN_CASES]
    out += [
        "",
        "Validation cases, never trained on (`VALIDATION_CASES`): "
        + ", ".join(f"`{c}`" for c in VALIDATION_CASES)
        + " (BRATS 2013: CC BY-NC-SA 3.0, used for validation figures only).",
        "",
        "**Terms of the weights.** The training data carry CC BY 4.0, CC BY 3.0 and CC BY-SA 3.0 terms",
        "(no non-commercial terms). The IXI subject's CC BY-SA 3.0 licence is share-alike: if the",
        "weights are a derivative of IXI data under that licence, redistribution must keep CC BY-SA",
        "terms and attribute IXI, BraTS (cite the BraTS papers) and TCIA/TCGA-LGG.",
        "",
        "## Reproduce",
        "",
        "```bash",
        "kcross-train segmenter --run runs/segmenter",
        "kcross-train stage1 --run runs/stage1",
        "python -m kcross_metric.train.ratedsets.twoafc --out runs/twoafc_val --split validation --n-pairs-per-rule 100",
        "kcross-train stage2 --run runs/stage2 --segmenter runs/segmenter --stage1 runs/stage1 \\",
        "    --val-pairs runs/twoafc_val/pairs.csv   # validation pairs are monitored only, never fitted",
        "kcross-train export --segmenter runs/segmenter --stage1 runs/stage1 --stage2 runs/stage2 \\",
        "    --out src/kcross_metric/weights/kcross.safetensors --overwrite",
        "python -m kcross_metric.train.model_card --segmenter runs/segmenter --stage1 runs/stage1 \\",
        "    --stage2 runs/stage2 --weights src/kcross_metric/weights/kcross.safetensors \\",
        "    --out src/kcross_metric/weights/kcross.md --notes src/kcross_metric/train/model_card_notes.md \\",
        "    --append docs/results-segmenter.md docs/results-twoafc.md",
        "# the two validation tables come from:",
        "python benchmarks/segmenter_dice.py --run runs/segmenter > docs/results-segmenter.md",
        "python benchmarks/twoafc_table.py runs/twoafc_val/pairs.csv --out docs/results-twoafc.md",
        "```",
        "",
        "Configs: `src/kcross_metric/train/configs/{segmenter,stage1,stage2}.yaml` (copied below as run).",
        "",
    ]
    for name, run in runs.items():
        out += [f"## {name}", "", "Config:", "", "```json", json.dumps(_config(run), indent=1, sort_keys=True), "```", "",
                "Per-epoch losses and validation figures (`log.jsonl`):", "", _table(logs[name])]
    for path in appendices:
        out += [f"## Validation: `{path.name}`", "", path.read_text().strip(), ""]
    if notes:
        out += ["## Findings and limitations", "", notes.strip(), ""]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kcross_metric.train.model_card")
    for name in ("segmenter", "stage1", "stage2", "weights", "out"):
        p.add_argument(f"--{name}", type=Path, required=True)
    p.add_argument("--notes", type=Path, default=None)
    p.add_argument("--append", type=Path, nargs="*", default=[], help="generated markdown to include (validation tables)")
    args = p.parse_args(argv)
    notes = args.notes.read_text() if args.notes else ""
    text = render(args.segmenter, args.stage1, args.stage2, args.weights, notes, args.append)
    from ..cli._common import atomic_write_text

    atomic_write_text(args.out, text, overwrite=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
