"""``kcross-eval``: agreement of metrics with human ratings (NIRPS tables, rated sets, 2AFC pairs).

Subcommands::

    kcross-eval nirps [--csv PATH] [--prefill PATH] [--group-by dataset,model] [--max-epoch 40]
                      [--metrics mae,psnr,ssim] [--out table.md] [--csv-out table.csv]
    kcross-eval rated SET.csv --metrics psnr,ssim --data-range 1 [--group-by COL,...]
    kcross-eval 2afc PAIRS.csv --metrics psnr,ssim --data-range 1
    kcross-eval 2afc PAIRS.csv --metrics psnr,ssim --data-range=-1,1     (images in [-1, 1])
    kcross-eval 2afc PAIRS.csv --metrics kcross,ssim --data-range 1 [--weights kcross.safetensors]

Exit status: 0 on success, 2 on bad input (one-line message on stderr; ``--debug`` shows the
traceback). Outputs are written atomically and never overwritten without ``--overwrite``.
Heavy modules (numpy/scipy/torch) are imported only once a subcommand runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence

from ._common import add_imagenet_option, add_threads_option

__all__ = ["build_parser", "main"]

PROG = "kcross-eval"


def _csv_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return items


def _group_list(text: str) -> list[str]:
    return [] if text.strip().lower() in ("", "none", "all") else _csv_list(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _max_epoch(text: str) -> int | None:
    return None if text.strip().lower() in ("all", "none") else _positive_int(text)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"alpha must be in (0, 1), got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0.0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _data_range(text: str) -> float | tuple[float, float]:
    """``R`` (images in [0, R]) or ``LOW,HIGH`` (e.g. ``-1,1``), checked by the package's one helper."""
    parts = [t.strip() for t in text.strip().strip("()[]").split(",")]
    if len(parts) == 1:
        return _positive_float(parts[0])
    from .._util.checks import check_data_range  # torch: only once a subcommand that scores images runs
    from ..errors import RangeError

    try:
        return check_data_range([float(p) for p in parts])
    except (ValueError, RangeError) as exc:
        raise argparse.ArgumentTypeError(
            f"expected R (images in [0, R]) or LOW,HIGH with LOW < HIGH (e.g. --data-range=-1,1), got {text!r}"
            + (f": {exc}" if isinstance(exc, RangeError) else "")
        ) from None


def _common(with_groups: bool, default_groups: str = "none") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output and statistics")
    g.add_argument("--out", metavar="PATH", help="write the markdown report here (default: print it)")
    g.add_argument("--csv-out", metavar="PATH", help="also write the table as CSV")
    g.add_argument("--overwrite", action="store_true", help="replace existing output files")
    g.add_argument("--n-boot", type=_non_negative_int, default=1000, metavar="N",
                   help="bootstrap resamples for the CIs; 0 = no CIs (default: 1000)")
    g.add_argument("--alpha", type=_alpha, default=0.05, help="1 - CI level (default: 0.05, i.e. 95%% CIs)")
    g.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    g.add_argument("--higher-is-better", type=_csv_list, default=[], metavar="NAMES",
                   help="metric columns whose higher values are better (overrides the registry)")
    g.add_argument("--lower-is-better", type=_csv_list, default=[], metavar="NAMES",
                   help="metric columns whose lower values are better (overrides the registry)")
    if with_groups:
        g.add_argument("--group-by", type=_group_list, default=_group_list(default_groups), metavar="COLS",
                       help=f"comma-separated key columns to split the table by; 'none' = one group "
                            f"(default: {default_groups})")
    g.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def _images(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("metric computation")
    g.add_argument("--metrics", type=_csv_list, required=True, metavar="NAMES",
                   help="registered metric names, comma-separated (see kcross_metric.list_metrics())")
    g.add_argument("--data-range", type=_data_range, required=True, metavar="R|LOW,HIGH",
                   help="intensity range of the images: R for [0, R], or LOW,HIGH such as "
                        "--data-range=-1,1 for [-1, 1]; "
                        "never inferred")
    g.add_argument("--clip", action="store_true", help="clip intensities to the data range first")
    g.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_threads_option(g)
    g.add_argument("--weights", metavar="PATH", default=None,
                   help="K-CROSS weights (.safetensors) for metric 'kcross' (default: the bundled weights)")
    add_imagenet_option(g)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Agreement of image-quality metrics with human ratings: inconsistency (K-CROSS "
                    "Algorithm 4), SROCC/PLCC/KROCC with bootstrap CIs, 2AFC accuracy.",
    )
    # own dest: a subparser's default for --debug would otherwise overwrite this flag
    parser.add_argument("--debug", dest="debug_global", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("nirps", parents=[_common(True, "dataset,model")],
                       help="recompute the NIRPS tables from the published radiologist scores",
                       description="Recompute the NIRPS agreement tables (three inconsistency modes, "
                                   "SROCC/PLCC/KROCC with CIs) from published metric scores.")
    p.add_argument("--csv", metavar="PATH",
                   help="NIRPS scores: the published CSV or the prototype's per-item folder tree "
                        "(default: $KCROSS_SHARED_DIR/data/nirps/nirps_scores.csv)")
    p.add_argument("--prefill", metavar="PATH",
                   help="also evaluate the authors' L2-based pre-fill (nirps_dataset_human.txt) as metric 'prefill'")
    p.add_argument("--max-epoch", type=_max_epoch, default=40, metavar="N",
                   help="keep generator epochs 1..N; 'all' keeps every epoch (default: 40, as in the paper)")
    p.add_argument("--metrics", type=_csv_list, default=None, metavar="NAMES",
                   help="metric columns to evaluate (default: every metric column, e.g. mae,psnr,ssim)")
    p.set_defaults(handler=_cmd_nirps)

    p = sub.add_parser("rated", parents=[_common(True)],
                       help="score a rated image set (fake,real,source,score CSV) and tabulate agreement",
                       description="Compute metrics on a rated set CSV (columns fake,real,source,score, "
                                   "optional mask and group columns) and write the agreement tables.")
    p.add_argument("set_csv", metavar="SET.csv", help="rated set CSV")
    p.add_argument("--scores-out", metavar="PATH", help="also write the per-item metric values as CSV")
    _images(p)
    p.set_defaults(handler=_cmd_rated)

    p = sub.add_parser("2afc", parents=[_common(False)],
                       help="2AFC accuracy of metrics on a pair set (reference,a,b,better CSV)",
                       description="Compute 2AFC accuracy per rule on a pair-set CSV (columns reference,a,b,"
                                   "better with better = a|b or a fraction; optional source, mask, rule).")
    p.add_argument("pairs_csv", metavar="PAIRS.csv", help="pair set CSV")
    _images(p)
    p.set_defaults(handler=_cmd_2afc)
    return parser


# --------------------------------------------------------------------------------------------


def _outputs(args: argparse.Namespace, *names: str) -> None:
    from ..errors import ConfigError
    from ..evaluation.tables import check_writable

    paths = [getattr(args, n) for n in names if getattr(args, n, None)]
    seen: set[str] = set()
    for path in paths:
        key = str(path)
        if key in seen:
            raise ConfigError(f"the same output path {path} is given twice")
        seen.add(key)
        check_writable(path, overwrite=args.overwrite)


def _emit(args: argparse.Namespace, markdown: str, csv_text: str) -> None:
    from ..evaluation.tables import write_atomic

    if args.out:
        write_atomic(args.out, markdown, overwrite=args.overwrite)
    else:
        sys.stdout.write(markdown)
    if args.csv_out:
        write_atomic(args.csv_out, csv_text, overwrite=args.overwrite)


def _command_line(argv: Sequence[str] | None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([PROG, *args])


def _provenance(argv: Sequence[str] | None) -> list[str]:
    from .._version import __version__

    return [f"Generated by `{_command_line(argv)}` (kcross-metric {__version__})."]


def _cmd_nirps(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from ..evaluation.nirps import PAPER_TABLE_II, attach_prefill, load_nirps_prefill, load_nirps_scores
    from ..evaluation.tables import agreement_table, report_markdown, resolve_directions, rows_to_csv

    _outputs(args, "out", "csv_out")
    table = load_nirps_scores(args.csv, max_epoch=args.max_epoch)
    if args.prefill:
        table = attach_prefill(table, load_nirps_prefill(args.prefill))
    metrics = args.metrics or table.metric_names
    directions = resolve_directions(metrics, higher=args.higher_is_better, lower=args.lower_is_better)
    rows = agreement_table(table, metrics, directions, group_by=args.group_by,
                           n_boot=args.n_boot, alpha=args.alpha, seed=args.seed)
    epochs = "all epochs" if args.max_epoch is None else f"epochs 1-{args.max_epoch}"
    pre = _provenance(argv) + [
        f"{len(table)} rated items ({epochs}); metrics: "
        + ", ".join(f"{m} ({'higher' if directions[m] else 'lower'} is better)" for m in metrics)
        + f"; grouped by {', '.join(args.group_by) or 'nothing'}."
    ]
    reference: dict[tuple[str, tuple[tuple[str, str], ...]], float] | None = None
    note = ""
    if list(args.group_by) == ["dataset", "model"]:
        reference = {(m, (("dataset", d), ("model", g))): v for (m, g, d), v in PAPER_TABLE_II.items()}
        note = "Cells `ours / paper`: the paper's Table II value for the same metric, generator and dataset."
    md = report_markdown(rows, title="NIRPS: agreement of metrics with the radiologists", preamble=pre,
                         reference=reference, reference_note=note)
    _emit(args, md, rows_to_csv(rows))
    return 0


def _check_registered(metrics: Sequence[str]) -> None:
    from ..registry import metric_info

    for m in metrics:
        metric_info(m)  # ConfigError "unknown metric ..., available: ..." before any image is read


def _metric_kwargs(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Extra ``create_metric`` arguments: ``--weights`` goes to K-CROSS and nothing else
    (``--imagenet-dir`` and ``--threads`` are applied here too, before any metric is built)."""
    from ..errors import ConfigError
    from ._common import apply_imagenet_option, apply_threads_option

    apply_imagenet_option(args.imagenet_dir)
    apply_threads_option(args.threads, args.device)
    if args.weights is None:
        return {}
    if "kcross" not in [m.lower() for m in args.metrics]:
        raise ConfigError("--weights is for metric 'kcross', which is not in --metrics")
    return {"kcross": {"weights": args.weights}}


def _cmd_rated(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from .._util.checks import format_data_range
    from ..evaluation.rated import read_rated_csv, score_rated_set
    from ..evaluation.tables import agreement_table, report_markdown, resolve_directions, rows_to_csv, write_atomic

    _outputs(args, "out", "csv_out", "scores_out")
    _check_registered(args.metrics)
    metric_kwargs = _metric_kwargs(args)
    directions = resolve_directions(args.metrics, higher=args.higher_is_better, lower=args.lower_is_better)
    rated = read_rated_csv(args.set_csv)
    table = score_rated_set(rated, args.metrics, data_range=args.data_range, clip=args.clip, device=args.device,
                            metric_kwargs=metric_kwargs)
    rows = agreement_table(table, args.metrics, directions, group_by=args.group_by,
                           n_boot=args.n_boot, alpha=args.alpha, seed=args.seed)
    pre = _provenance(argv) + [
        f"{len(table)} rated items from `{args.set_csv}`; data_range={format_data_range(args.data_range)}"
        + (" (clipped)" if args.clip else "") + "; metrics: "
        + ", ".join(f"{m} ({'higher' if directions[m] else 'lower'} is better)" for m in args.metrics) + "."
    ]
    md = report_markdown(rows, title="Agreement of metrics with the ratings", preamble=pre)
    if args.scores_out:
        write_atomic(args.scores_out, table.to_csv_text(), overwrite=args.overwrite)
    _emit(args, md, rows_to_csv(rows))
    return 0


def _cmd_2afc(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from .._util.checks import format_data_range
    from ..evaluation.rated import read_pairs_csv, score_pairs, two_afc_rows
    from ..evaluation.tables import resolve_directions, two_afc_to_csv, two_afc_to_markdown

    _outputs(args, "out", "csv_out")
    _check_registered(args.metrics)
    metric_kwargs = _metric_kwargs(args)
    directions = resolve_directions(args.metrics, higher=args.higher_is_better, lower=args.lower_is_better)
    pairs = read_pairs_csv(args.pairs_csv)
    pairs, scores = score_pairs(pairs, args.metrics, data_range=args.data_range, clip=args.clip, device=args.device,
                                metric_kwargs=metric_kwargs)
    rows = two_afc_rows(pairs, scores, directions, n_boot=args.n_boot, alpha=args.alpha, seed=args.seed)
    md = "\n".join([
        "# 2AFC accuracy", "", *_provenance(argv),
        f"{len(pairs.reference)} pairs from `{args.pairs_csv}`; data_range={format_data_range(args.data_range)}.", "",
        two_afc_to_markdown(rows, level=1.0 - args.alpha),
    ])
    _emit(args, md, two_afc_to_csv(rows))
    return 0


def _one_line(exc: BaseException | str) -> str:
    if isinstance(exc, str):
        return " ".join(exc.split())
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    return text


def _join_negative_range(argv: Sequence[str]) -> list[str]:
    """``--data-range -1,1`` -> ``--data-range=-1,1``: argparse would take ``-1,1`` for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if token == "--data-range" and nxt is not None and nxt.startswith("-") and "," in nxt:
            out.append(f"{token}={nxt}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kcross-eval``; returns the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(_join_negative_range(sys.argv[1:] if argv is None else argv))
    handler: Callable[[argparse.Namespace, Sequence[str] | None], int] = args.handler
    try:
        return handler(args, argv)
    except Exception as exc:  # noqa: BLE001 - filtered below
        from ..errors import KCrossError

        expected: tuple[type[BaseException], ...] = (KCrossError, ValueError, OSError)
        if args.debug or args.debug_global or not isinstance(exc, expected):
            raise
        print(f"{PROG}: error: {_one_line(getattr(exc, 'cli_message', None) or exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
