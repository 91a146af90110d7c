"""Write the Markdown model card of a weight file from its training runs.

    kcross-train model-card --segmenter runs/segmenter --stage1 runs/stage1 \
        --stage2 runs/stage2 --weights src/kcross_metric/weights/kcross.safetensors --out kcross.md

The card holds what can be read from the runs (configs, per-epoch losses and validation figures,
wall time) and the fixed facts (data, licences, split, commands); free-text findings are appended
with ``--notes FILE``, without their HTML comments (the markers that tie the notes' figures to the
results pages they quote, checked by tests/test_model_card_notes.py).

Weights refitted on a base file (``kcross-train export --base-weights``) have runs only for the
retrained stages: pass ``--base-card`` (the base weights' card) and the sections and wall times of
the other stages are carried over from it verbatim, with the base file's SHA-256 from the weights.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from ..weights import sha256_file
from .splits import TRAIN_CASES, VALIDATION_CASES, subject


def _subject_line(case: str) -> str:
    s = subject(case)
    return f"- `{case}`: {s.licence}; lesion: {s.lesion}; labels: {s.label}"


def _log(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


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
    return json.loads(state.read_text(encoding="utf-8")).get("config", {}) if state.exists() else {}


def card_notes(notes: str) -> str:
    """The notes as the card holds them: HTML comments removed, with the blanks before them."""
    return re.sub(r"[ \t]*<!--.*?-->", "", notes, flags=re.DOTALL).strip()


_WALL_NAMES = {"segmenter": "segmenter", "stage1": "stage 1", "stage2": "stage 2"}


def card_section(card: str, name: str) -> str:
    """The ``## name`` section of a card (heading included), up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", card, flags=re.S | re.M)
    if match is None:
        from ..errors import FileFormatError

        raise FileFormatError(f"the base model card has no '## {name}' section")
    return match.group(0).rstrip() + "\n"


def card_wall_minutes(card: str, stage: str) -> float:
    """A stage's wall time in minutes as a card states it in its header line."""
    match = re.search(rf"\b{_WALL_NAMES[stage]} (\d+(?:\.\d+)?)[,)]", card)
    if match is None:
        from ..errors import FileFormatError

        raise FileFormatError(f"the base model card states no wall time for {_WALL_NAMES[stage]}")
    return float(match.group(1))


def render(
    segmenter: Path | None,
    stage1: Path | None,
    stage2: Path | None,
    weights: Path,
    notes: str = "",
    appendices: Sequence[Path] = (),
    *,
    base_card: str | None = None,
    reproduce: Sequence[str] | None = None,
) -> str:
    """The card's Markdown. A stage given as ``None`` is carried over from ``base_card``."""
    from ..errors import ConfigError

    runs = {"segmenter": segmenter, "stage1": stage1, "stage2": stage2}
    carried = [k for k, v in runs.items() if v is None]
    if carried and base_card is None:
        raise ConfigError(f"no run for {', '.join(carried)}: pass its run or the base weights' card")
    logs = {k: _log(v) for k, v in runs.items() if v is not None}
    wall = {k: sum(r.get("seconds", 0.0) for r in v) / 60 for k, v in logs.items()}
    wall.update({k: card_wall_minutes(base_card, k) for k in carried})  # type: ignore[arg-type]
    size_mb = weights.stat().st_size / 1e6
    base_line: list[str] = []
    if carried:
        from ..weights import load_safetensors_with_metadata

        base_sha = load_safetensors_with_metadata(weights)[1].get("base_weights_sha256", "(not recorded)")
        base_line = [f"- Refitted on a base file: {', '.join(_WALL_NAMES[k] for k in carried)} taken unchanged from "
                     f"the weights with SHA-256 `{base_sha}` (their sections below are copied from that file's card)."]
    out = [
        "# Model card: `kcross.safetensors`",
        "",
        f"- File: `{weights.name}`, {size_mb:.1f} MB, SHA-256 `{sha256_file(weights)}` (also in `SHA256SUMS`, checked on load).",
        "- Contents: every network of K-CROSS (`KCrossNetworks`): lesion segmenter, complex k-space U-Net,",
        "  tumor autoencoder, structure autoencoder, complex and natural score networks.",
        "- Produced by `kcross-train` (kcross_metric.train) on a 2-core CPU; summed epoch time "
        f"{sum(wall.values()):.1f} min (segmenter {wall['segmenter']:.1f}, stage 1 {wall['stage1']:.1f}, "
        f"stage 2 {wall['stage2']:.1f}); data loading and the encoding of stage-2 pairs are not included.",
        *base_line,
        "",
        "## Data and licences",
        "",
        "Training subjects (`kcross_metric.train.splits.TRAIN_CASES`; each stage's run config below lists",
        "`train_cases`, the ones present when it ran):",
        "",
    ]
    out += [_subject_line(c) for c in TRAIN_CASES]
    out += [
        "",
        "Validation subjects, never trained on or tuned to (`VALIDATION_CASES`):",
        "",
    ]
    out += [_subject_line(c) for c in VALIDATION_CASES]
    out += [
        "",
        "**Terms of the weights.** The training subjects carry CC BY 4.0, CC BY 3.0, CC BY-SA 3.0 and CC BY",
        "terms (no non-commercial or research-only terms: the BRATS 2013, `Brats18_2013_*` and `CBICA*`",
        "subjects are validation only). The IXI subject's CC BY-SA 3.0 licence is share-alike: if the",
        "weights are a derivative of IXI data under that licence, redistribution must keep CC BY-SA",
        "terms and attribute IXI, BraTS (cite the BraTS papers), TCIA/TCGA-GBM/TCGA-LGG and Lesjak et al.",
        "2017 (the Ljubljana multiple-sclerosis data).",
        "",
        "## Reproduce",
        "",
        "```bash",
    ]
    out += list(reproduce) if reproduce is not None else [
        "kcross-train segmenter --run runs/segmenter",
        "kcross-train stage1 --run runs/stage1",
        "kcross-train pairs --out runs/twoafc_val --split validation --n-pairs-per-rule 100",
        "kcross-train stage2 --run runs/stage2 --segmenter runs/segmenter --stage1 runs/stage1 \\",
        "    --val-pairs runs/twoafc_val/pairs.csv   # validation pairs are monitored only, never fitted",
        "kcross-train export --segmenter runs/segmenter --stage1 runs/stage1 --stage2 runs/stage2 \\",
        "    --out src/kcross_metric/weights/kcross.safetensors --overwrite",
        "kcross-train model-card --segmenter runs/segmenter --stage1 runs/stage1 \\",
        "    --stage2 runs/stage2 --weights src/kcross_metric/weights/kcross.safetensors \\",
        "    --out src/kcross_metric/weights/kcross.md --overwrite --notes src/kcross_metric/train/model_card_notes.md \\",
        "    --append docs/results-segmenter.md docs/results-twoafc.md",
        "# the two validation tables come from:",
        "python benchmarks/segmenter_dice.py --run runs/segmenter > docs/results-segmenter.md",
        "python benchmarks/twoafc_table.py runs/twoafc_val/pairs.csv --out docs/results-twoafc.md",
    ]
    out += [
        "```",
        "",
        "Configs: `src/kcross_metric/train/configs/{segmenter,stage1,stage2}.yaml` (copied below as run).",
        "",
    ]
    for name, run in runs.items():
        if run is None:
            out += [card_section(base_card, name)]  # type: ignore[arg-type]
            continue
        out += [f"## {name}", "", "Config:", "", "```json", json.dumps(_config(run), indent=1, sort_keys=True), "```", "",
                "Per-epoch losses and validation figures (`log.jsonl`):", "", _table(logs[name])]
    for path in appendices:
        out += [f"## Validation: `{path.name}`", "", path.read_text(encoding="utf-8").strip(), ""]
    notes = card_notes(notes)
    if notes:
        out += ["## Findings and limitations", "", notes, ""]
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover - the old entry point, moved to the CLI
    import sys

    sys.exit(f"python -m {__spec__.name if __spec__ else __name__} was replaced by `kcross-train model-card` (same options)")
