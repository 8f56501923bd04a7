"""Command line for ML users and CI: ``python -m engine {sample,selfcheck,demo} …``."""

import argparse
import logging
import os
import sys
from dataclasses import asdict
from typing import List, Optional


def _progress_printer(prefix: str):
    """A ``progress(fraction, text)`` callback that draws a one-line bar on a terminal."""
    interactive = sys.stderr.isatty()

    def progress(fraction: float, text: str = "") -> None:
        if text:
            if interactive:
                sys.stderr.write("\r\033[K")
            print(f"{prefix}: {text}", file=sys.stderr)
        if interactive:
            filled = int(30 * fraction)
            sys.stderr.write(f"\r{prefix} [{'#' * filled}{'.' * (30 - filled)}] {100 * fraction:5.1f}%")
            if fraction >= 1.0:
                sys.stderr.write("\n")
            sys.stderr.flush()

    return progress


def _cmd_sample(args: argparse.Namespace) -> int:
    from .data.sample import generate_sample

    paths = generate_sample(args.out, rows=args.rows, cols=args.cols, bands=args.bands, seed=args.seed,
                            progress=_progress_printer("sample"))
    for name, path in asdict(paths).items():
        print(f"{name:<12} {path}")
    return 0


def _cmd_selfcheck(args: argparse.Namespace) -> int:
    import torch

    from .selfcheck import run_selfcheck

    if args.threads:
        torch.set_num_threads(args.threads)
    report = run_selfcheck(args.raster, device=args.device, width=args.width, repeats=args.repeats,
                           progress=_progress_printer("selfcheck"))
    print("\n".join(report.lines()))
    return 0 if report.passed else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    raster = os.path.join(args.out, "sample.tif")
    if args.force or not os.path.exists(raster):
        if _cmd_sample(args):
            return 1
    else:
        print(f"using the existing sample {raster} (--force regenerates it)")
    args.raster = raster
    return _cmd_selfcheck(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="do not log what runs where (backend choices, builds)")
    commands = parser.add_subparsers(dest="command", required=True)

    def sample_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--rows", type=int, default=128, help="scene height in pixels (default 128)")
        p.add_argument("--cols", type=int, default=128, help="scene width in pixels (default 128)")
        p.add_argument("--bands", type=int, default=128, help="number of spectral bands (default 128)")
        p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")

    def check_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
        p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
        p.add_argument("--width", type=int, default=64, help="scan channels d (default 64)")
        p.add_argument("--repeats", type=int, default=3, help="timed repetitions; the best is shown")

    sample = commands.add_parser("sample", help="write the built-in synthetic hyperspectral sample")
    sample.add_argument("--out", required=True, help="output folder")
    sample_options(sample)
    sample.set_defaults(run=_cmd_sample)

    check = commands.add_parser("selfcheck", help="check the selective scan against float64 and time it")
    check.add_argument("--raster", required=True, help="a raster whose pixels feed the scan")
    check_options(check)
    check.set_defaults(run=_cmd_selfcheck)

    demo = commands.add_parser("demo", help="make the sample (once) and run the self-check on it")
    demo.add_argument("--out", default="sample", help="sample folder (default ./sample)")
    demo.add_argument("--force", action="store_true", help="regenerate the sample even if it exists")
    sample_options(demo)
    check_options(demo)
    demo.set_defaults(run=_cmd_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(name)s: %(message)s")
    try:
        return args.run(args)
    except ValueError as exc:  # bad input: the message is worded for the user
        print(f"error: {exc}", file=sys.stderr)
        return 2
