"""``kcross-train``: train the networks of K-CROSS and export the weight file.

    kcross-train segmenter --config segmenter.yaml --run runs/segmenter
    kcross-train stage1    --config stage1.yaml    --run runs/stage1
    kcross-train stage2    --config stage2.yaml    --run runs/stage2 --segmenter runs/segmenter --stage1 runs/stage1
    kcross-train export    --segmenter runs/segmenter --stage1 runs/stage1 --stage2 runs/stage2 --out kcross.safetensors

Refit only the score networks on your own rated set, keeping the bundled segmenter and stage 1:

    kcross-train stage2 --run runs/stage2_mine --rated my_ratings.csv          # networks: bundled weights
    kcross-train export --base-weights bundled --stage2 runs/stage2_mine --out mine/kcross.safetensors
    kcross-train translation --family pix2pix --direction t1-t2 --run runs/gan/pix2pix_t1-t2
    kcross-train synthesize  --runs runs/gan --out runs/synthesized

``translation`` trains the cross-modality models of the synthesized rated set (pix2pix, CycleGAN)
with a checkpoint per epoch; ``synthesize`` writes their per-epoch outputs on the validation cases.

Rated sets, the SSFD encoder and model cards:

    kcross-train pairs      --out runs/twoafc_val [--split train] [--from-synthesized SYNTHESIZED_CSV]
    kcross-train ssfd       --run runs/ssfd --export ssfd.safetensors
    kcross-train model-card --segmenter runs/segmenter --stage1 runs/stage1 --stage2 runs/stage2 \\
                            --weights kcross.safetensors --out kcross.md

Runs are seeded and resumable: re-running a command continues after the last finished epoch.
``--smoke`` shrinks every size to a few steps (used by the tests). Config files for the shipped
weights are in ``kcross_metric/train/configs/``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._common import EXIT_OK, run_main, set_folder_variable

_SMOKE: dict[str, dict[str, object]] = {
    "segmenter": dict(epochs=1, steps_per_epoch=2, batch_size=2, slice_range=(70, 71)),
    "stage1": dict(epochs=1, steps_per_epoch=1, batch_size=2, slice_range=(70, 71)),
    "stage2": dict(epochs=2, n_pairs_per_rule=2, n_ladders_per_family=1, n_lesion_pairs_per_edit=1,
                   n_misregistration_pairs=1),
    "translation": dict(epochs=2, max_steps_per_epoch=1, batch_size=2, slice_range=(70, 71),
                        val_slice_range=(70, 72), size=64, unet_depth=4, base_channels=8, max_channels=16,
                        resnet_base=8, resnet_blocks=1, disc_base=8, pool_size=2),
}


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                   help="folder holding the datasets (brats/, ixi/, ...; default: $KCROSS_SHARED_DIR/data)")
    p.add_argument("--extra-root", type=Path, default=None, metavar="DIR",
                   help="folder the extra subjects were laid out in by extra/get.sh (default: $KCROSS_EXTRA_DIR, "
                        "else DATA_ROOT/extra); subjects not found are skipped with a warning")


def _apply_extra_root(args: argparse.Namespace) -> None:
    """``--extra-root`` for the case loader of every stage, via its variable (configs with an
    ``extra_root`` field get it as an override too, so the run's saved config records it)."""
    from ..train.data import EXTRA_ENV_VAR

    set_folder_variable("--extra-root", getattr(args, "extra_root", None), EXTRA_ENV_VAR)


def _configs_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "train" / "configs"


def build_parser() -> argparse.ArgumentParser:
    # the module docstring is the help text; its reST literals read as plain `code` in a terminal
    description = (__doc__ or "").replace("``", "`")
    parser = argparse.ArgumentParser(prog="kcross-train", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="stage", required=True)
    for stage in ("segmenter", "stage1", "stage2"):
        p = sub.add_parser(stage, help=f"train the {stage} networks")
        p.add_argument("--config", type=Path, default=None, help=f"YAML config (default: the shipped {stage}.yaml)")
        p.add_argument("--run", type=Path, required=True, help="run directory (checkpoints, logs)")
        p.add_argument("--no-resume", action="store_true", help="start from scratch even if the run has epochs")
        p.add_argument("--smoke", action="store_true", help="a few tiny steps, to check the pipeline")
        _data_options(p)
        p.add_argument("--debug", action="store_true")
        if stage == "segmenter":
            p.add_argument("--init", type=Path, default=None, metavar="RUN",
                           help="start from the weights of a finished segmenter run (or .safetensors file); "
                                "overrides the config's init_from")
        if stage == "stage2":
            p.add_argument("--segmenter", type=Path, default=None,
                           help="segmenter run directory (default: the segmenter of --base-weights)")
            p.add_argument("--stage1", type=Path, default=None,
                           help="stage-1 run directory (default: the stage-1 networks of --base-weights)")
            p.add_argument("--base-weights", default=None, metavar="PATH|bundled",
                           help="weight file the networks without a run come from "
                                "(default: 'bundled', the shipped kcross.safetensors)")
            p.add_argument("--pairs", type=Path, default=None, help="2AFC pairs.csv (default: built from training cases)")
            p.add_argument("--add-pairs", type=Path, action="append", default=[], metavar="PAIRS_CSV",
                           help="a further 2AFC pairs.csv added to the training pairs (repeatable)")
            p.add_argument("--rated", type=Path, default=None, help="rated set CSV: fake,real,source,score")
            p.add_argument("--val-pairs", type=Path, default=None, help="validation 2AFC pairs.csv")
    p = sub.add_parser("translation", help="train a cross-modality translation model (synthesized rated set)")
    p.add_argument("--family", choices=("pix2pix", "cyclegan"), required=True)
    p.add_argument("--direction", required=True, help="<source>-<target>, e.g. t1-t2, t1-flair, t2-flair")
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: the shipped translation_<family>.yaml)")
    p.add_argument("--run", type=Path, required=True, help="run directory (checkpoints per epoch, logs)")
    p.add_argument("--epochs", type=int, default=None, help="override the config's number of epochs")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if the run has epochs")
    p.add_argument("--smoke", action="store_true", help="a few tiny steps, to check the pipeline")
    _data_options(p)
    p.add_argument("--debug", action="store_true")
    p = sub.add_parser("synthesize", help="write every epoch's synthesized validation slices of translation runs")
    p.add_argument("--runs", type=Path, required=True, help="folder of translation run directories")
    p.add_argument("--out", type=Path, required=True, help="output folder (index synthesized.csv + .npy slices)")
    p.add_argument("--masks", choices=("segmenter", "none"), default="segmenter",
                   help="lesion masks of cases without a manual segmentation (default: the bundled K-CROSS segmenter)")
    p.add_argument("--split", choices=("validation", "train"), default="validation",
                   help="cases to synthesize: the held-out validation cases (default) or the training cases")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder's files")
    _data_options(p)
    p.add_argument("--debug", action="store_true")
    p = sub.add_parser("pairs", help="build a clinically ordered 2AFC pair set (rules 1-2 from real cases, "
                                      "or rule 3 from a synthesized set)")
    p.add_argument("--out", type=Path, required=True, help="output folder (pairs.csv + arrays/)")
    p.add_argument("--split", default="validation", choices=["validation", "train"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-pairs-per-rule", type=int, default=250)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--slice-range", type=int, nargs=2, default=(50, 80), metavar=("FIRST", "LAST"))
    p.add_argument("--data-dir", type=Path, default=None,
                   help="the shared data folder's data/ (default: $KCROSS_SHARED_DIR/data)")
    p.add_argument("--from-synthesized", type=Path, default=None, metavar="SYNTHESIZED_CSV",
                   help="instead of rules 1-2, build rule-3 pairs (synthesized_epochs) from the synthesized set "
                        "written by `kcross-train synthesize`")
    p.add_argument("--margin", type=float, default=0.1,
                   help="rule 3: relative error reduction needed globally and in the lesion (default 0.1)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--debug", action="store_true")
    p = sub.add_parser("ssfd", help="train the self-supervised SSFD encoder of the DFD-SSFD baseline")
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: the shipped ssfd.yaml)")
    p.add_argument("--run", type=Path, required=True, help="run directory (resumable)")
    p.add_argument("--export", type=Path, default=None, help="write the encoder .safetensors here")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --export file")
    p.add_argument("--debug", action="store_true")
    p = sub.add_parser("model-card", help="write the model card of a weight file from its training runs")
    for name in ("segmenter", "stage1", "stage2"):
        p.add_argument(f"--{name}", type=Path, default=None, help=f"{name} run (else carried over from --base-card)")
    p.add_argument("--weights", type=Path, required=True, help="the weight file the card describes")
    p.add_argument("--out", type=Path, required=True, help="the card (.md) to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--base-card", type=Path, default=None, help="the base weights' model card (refitted weights)")
    p.add_argument("--reproduce", type=Path, default=None, help="file with the commands of the Reproduce section")
    p.add_argument("--notes", type=Path, default=None)
    p.add_argument("--append", type=Path, nargs="*", default=[], help="generated markdown to include (validation tables)")
    p.add_argument("--debug", action="store_true")
    p = sub.add_parser("export", help="assemble kcross.safetensors from the three runs (or a base file and some runs)")
    for name in ("segmenter", "stage1", "stage2"):
        p.add_argument(f"--{name}", type=Path, default=None, help=f"{name} run directory")
    p.add_argument("--base-weights", default=None, metavar="PATH|bundled",
                   help="weight file the parts without a run are taken from ('bundled': the shipped file)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--debug", action="store_true")
    return parser


def _base_weights(value: str | None) -> Path | None:
    """``--base-weights``: ``bundled`` is the shipped file (verified against its SHA256SUMS)."""
    if value is None:
        return None
    if value == "bundled":
        from ..weights import bundled_dir

        return bundled_dir() / "kcross.safetensors"
    return Path(value)


def _pairs(args: argparse.Namespace) -> int:
    import time

    from ..train.ratedsets.twoafc import build_synthesized_pairs, build_twoafc_set, load_twoafc_set

    t0 = time.perf_counter()
    if args.from_synthesized is not None:
        csv_path = build_synthesized_pairs(args.from_synthesized, args.out, margin=args.margin, seed=args.seed,
                                           max_pairs=args.n_pairs_per_rule, overwrite=args.overwrite)
    else:
        csv_path = build_twoafc_set(args.out, split=args.split, n_pairs_per_rule=args.n_pairs_per_rule, seed=args.seed,
                                    size=args.size, slice_range=tuple(args.slice_range), data_dir=args.data_dir,
                                    overwrite=args.overwrite)
    counts: dict[str, int] = {}
    for pair in load_twoafc_set(csv_path):
        counts[pair.rule] = counts.get(pair.rule, 0) + 1
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    print(f"wrote {sum(counts.values())} pairs ({summary}) to {csv_path} in {time.perf_counter() - t0:.1f} s")
    return EXIT_OK


def _ssfd(args: argparse.Namespace) -> int:
    import json
    import time

    from .._util.files import check_output_path
    from ..train.runner import RunDir
    from ..train.ssfd import export_encoder, load_ssfd_config, train_ssfd

    if args.export is not None:
        check_output_path(args.export, args.overwrite)  # before hours of training

    config = load_ssfd_config(args.config or _configs_dir() / "ssfd.yaml", epochs=args.epochs,
                              steps_per_epoch=args.steps_per_epoch)
    t0 = time.time()
    model, _ = train_ssfd(config, args.run, resume=not args.no_resume)
    wall = time.time() - t0
    if args.export is not None:
        state = RunDir(args.run).load_state()
        digest = export_encoder(model, config, args.export,
                                metadata={"epochs": str(state["epochs_done"]), "seed": str(config.seed)})
        print(json.dumps({"exported": str(args.export), "sha256": digest, "wall_seconds": round(wall, 1)}))
    return EXIT_OK


def _model_card(args: argparse.Namespace) -> int:
    from .._util.files import atomic_write_text, check_output_path
    from ..train.model_card import render

    check_output_path(args.out, args.overwrite)
    notes = args.notes.read_text(encoding="utf-8") if args.notes else ""
    base_card = args.base_card.read_text(encoding="utf-8") if args.base_card else None
    reproduce = args.reproduce.read_text(encoding="utf-8").strip().splitlines() if args.reproduce else None
    text = render(args.segmenter, args.stage1, args.stage2, args.weights, notes, args.append,
                  base_card=base_card, reproduce=reproduce)
    atomic_write_text(args.out, text, overwrite=args.overwrite)
    print(f"wrote {args.out}")
    return EXIT_OK


def _body(args: argparse.Namespace) -> int:
    from ..train.config import SegmenterConfig, Stage1Config, Stage2Config, load_config

    tools = {"pairs": _pairs, "ssfd": _ssfd, "model-card": _model_card}
    if args.stage in tools:
        return tools[args.stage](args)
    if args.stage == "export":
        from ..train.export import export_weights

        digest = export_weights(args.out, segmenter_run=args.segmenter, stage1_run=args.stage1,
                                stage2_run=args.stage2, base_weights=_base_weights(args.base_weights),
                                overwrite=args.overwrite)
        print(f"wrote {args.out} sha256={digest}")
        return EXIT_OK
    _apply_extra_root(args)
    if args.stage == "synthesize":
        from ..train.translation.synthesize import write_synthesized_set

        index = write_synthesized_set(args.runs, args.out, masks=args.masks, split=args.split, overwrite=args.overwrite,
                                      root=args.data_root)
        print(f"synthesize: wrote {index}")
        return EXIT_OK
    if args.stage == "translation":
        from ..train.config import TranslationConfig
        from ..train.translation.trainer import train_translation

        path = args.config or _configs_dir() / f"translation_{args.family}.yaml"
        overrides = dict(_SMOKE["translation"]) if args.smoke else {}
        overrides.update(family=args.family, direction=args.direction)
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        if args.data_root is not None:
            overrides["data_root"] = str(args.data_root)
        config = load_config(TranslationConfig, path, **overrides)
        train_translation(config, args.run, resume=not args.no_resume)
        print(f"translation: done, run directory {args.run}")
        return EXIT_OK
    cls = {"segmenter": SegmenterConfig, "stage1": Stage1Config, "stage2": Stage2Config}[args.stage]
    config_path = args.config or _configs_dir() / f"{args.stage}.yaml"
    overrides = dict(_SMOKE[args.stage]) if args.smoke else {}
    if args.data_root is not None:
        overrides["data_root"] = str(args.data_root)
    if args.extra_root is not None and args.stage == "segmenter":
        overrides["extra_root"] = str(args.extra_root.expanduser().resolve())
    if args.stage == "segmenter" and args.init is not None:
        overrides["init_from"] = str(args.init.expanduser().resolve())
    if args.stage == "stage2":
        overrides.update(pairs_csv=str(args.pairs) if args.pairs else None, rated_csv=str(args.rated) if args.rated else None)
        if args.add_pairs:
            overrides["add_pairs_csv"] = [str(p) for p in args.add_pairs]
    config = load_config(cls, config_path, **overrides)
    resume = not args.no_resume
    if args.stage == "segmenter":
        from ..train.segmenter import train_segmenter

        val_cases: tuple[str, ...] | None = () if args.smoke else None  # smoke: no validation cases; None: the default ones
        train_segmenter(config, args.run, resume=resume, val_cases=val_cases)
    elif args.stage == "stage1":
        from ..train.stage1 import train_stage1

        train_stage1(config, args.run, resume=resume)
    else:
        from ..errors import ConfigError
        from ..train.export import assemble_networks
        from ..train.stage2 import train_stage2

        if args.segmenter is not None and args.stage1 is not None and args.base_weights is not None:
            raise ConfigError("--segmenter and --stage1 runs give every network: --base-weights would be unused")
        both_runs = args.segmenter is not None and args.stage1 is not None
        base = None if both_runs else _base_weights(args.base_weights or "bundled")
        nets = assemble_networks(args.segmenter, args.stage1, None, base_weights=base)
        val_bank = None
        if args.val_pairs is not None:
            from ..core.metric import KCross
            from ..train.ratedsets.twoafc import load_twoafc_set
            from ..train.stage2 import pair_bank

            val_bank = pair_bank(KCross.from_networks(nets), load_twoafc_set(args.val_pairs))
        train_stage2(config, args.run, nets, val_bank=val_bank, resume=resume)
    print(f"{args.stage}: done, run directory {args.run}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(lambda: _body(args), args.debug, "kcross-train")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
