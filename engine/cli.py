"""Command line for ML users and CI: ``python -m engine {train,classify,evaluate,compare,suggest,roistats,postprocess,benchmark,demo,sample,selfcheck} …``.

Every subcommand has ``--help``. Bad input ends with ``error: …`` and exit status 2; Ctrl-C during
training or classification cancels cleanly (no model file, no half-written raster) with status 130.
"""

import argparse
import contextlib
import importlib.util
import json
import math
import logging
import os
import signal
import sys
from dataclasses import asdict
from typing import Any, Dict, Iterator, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_NAMES = ("cssmamba", "mambahsi")  # = engine.models.registry.MODEL_NAMES (a test keeps them equal)
MULTIMODAL_NAMES = ("m3amba",)          # = engine.models.registry.MULTIMODAL_NAMES
CLASSICAL_NAMES = ("rf", "svm")         # = engine.models.registry.CLASSICAL_NAMES
AUX_RESAMPLING = ("bilinear", "cubic", "nearest", "average")  # = engine.data.auxiliary.RESAMPLING
HSI_EPOCHS = 200                        # default epochs of the hyperspectral-only models
MULTIMODAL_EPOCHS = 100                 # = engine.multimodal.EPOCHS (MODELS.md §5.6)
DEVICES = ("auto", "cpu", "cuda")
# The demo: CSSMamba at the plugin's defaults (engine/models/registry.py: width 32, chosen by
# measurement) for 50 epochs on the 128 x 128 sample's ROIs, about a minute on 2 CPU cores.
# --set dim=128 --epochs 200 is the paper's setting.
DEMO_EPOCHS = 50
DEMO_OVERRIDES: dict = {}


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


_last_cancel = {"signal": 0}  # the signal that cancelled the last job, for its exit status


@contextlib.contextmanager
def _ctrl_c_cancels() -> Iterator[Any]:
    """Yield a ``cancelled()`` check that turns true on the first Ctrl-C or SIGTERM (a second Ctrl-C
    interrupts at once). SIGTERM (``kill``, a batch scheduler's time limit, torchrun stopping its workers,
    which sends it more than once) is a cancel like Ctrl-C, so the job removes its temporaries instead of
    leaving them behind; ``cancel_status()`` is then 143."""
    state = {"signal": 0}
    names = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}

    def handler(signum, frame):
        if state["signal"]:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        state["signal"] = signum
        print(f"\n{names.get(signum, 'signal')}: cancelling after the current step (Ctrl-C again to abort at once)",
              file=sys.stderr)

    try:
        previous = {signum: signal.signal(signum, handler) for signum in names}
    except ValueError:  # not the main thread: no signal handling, never cancelled
        yield lambda: False
        return
    try:
        yield lambda: bool(state["signal"])
    finally:
        _last_cancel["signal"] = state["signal"]
        for signum, action in previous.items():
            signal.signal(signum, action)


def cancel_status() -> int:
    """The exit status of a cancelled job: 128 + the signal that cancelled it (130 Ctrl-C, 143 SIGTERM)."""
    return 128 + (_last_cancel["signal"] or signal.SIGINT)


def parse_overrides(items: Optional[Sequence[str]]) -> Dict[str, Any]:
    """``["dim=64", "gate=\\"prior\\"", "token_selection=false", "name=abc"]`` → {"dim": 64, ...}.

    Each value is read as JSON when it parses (ints, floats, true/false, null, lists), else kept as the
    string, so ``gate=prior`` and ``gate="prior"`` both give "prior". Python's True/False/None work too.
    """
    python_words = {"True": True, "False": False, "None": None}
    overrides: Dict[str, Any] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r} (e.g. --set clusters_per_class=3)")
        text = text.strip()
        if text in python_words:
            value = python_words[text]
        else:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
        overrides[key] = value
    return overrides


def parse_bands(text: Optional[str]) -> Optional[List[int]]:
    """``"1-50,60,70-80"`` → [1, …, 50, 60, 70, …, 80] (1-based file bands); None for None."""
    if text is None:
        return None
    bands: List[int] = []
    for item in text.replace(" ", "").split(","):
        first, sep, last = item.partition("-")
        try:
            span = range(int(first), int(last) + 1) if sep else [int(first)]
        except ValueError:
            raise ValueError(f"--bands expects band numbers and ranges such as 1-50,60,70-80, got {text!r}") from None
        if not span:
            raise ValueError(f"--bands: the range {item!r} is empty; write the lower band first (e.g. 10-20)")
        bands.extend(span)
    return bands


def _print_metrics(metrics: Dict[str, Any], indent: str = "") -> None:
    print(f"{indent}OA {metrics['overall_accuracy']:.4f}  AA {metrics['average_accuracy']:.4f}  "
          f"kappa {metrics['kappa']:.4f}  ({metrics['pixels']:,} pixels)")
    for row in metrics["classes"]:
        if row["reference_pixels"]:
            producers = row["producers_accuracy"]
            users = "  -   " if row["users_accuracy"] is None else f"{row['users_accuracy']:.4f}"
            print(f"{indent}  {row['id']:>4} {row['name'][:24]:<24} {row['reference_pixels']:>7,} px  "
                  f"producer's {producers:.4f}  user's {users}")


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


def _split_options(args: argparse.Namespace):
    from .pipeline import SplitOptions

    return SplitOptions(mode=args.split, train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                        train_ratio=args.train_ratio, val_ratio=args.val_ratio, val_labels=args.val_labels,
                        val_rois=args.val_rois, val_class_field=args.val_class_field)


def _train(args: argparse.Namespace, overrides: Dict[str, Any], **inputs: Any):
    """Run train_from_files with the CLI's options; returns (metadata, result) or None when cancelled."""
    from .training.distributed import is_main
    from .pipeline import train_from_files
    from .training.train import TrainingCancelled

    if args.model in MULTIMODAL_NAMES:
        inputs = dict(inputs, aux=args.aux, aux_resampling=args.aux_resampling, clip_weights=args.clip_weights,
                      use_clip=not args.no_clip)

    if args.command == "train" and args.windows_per_step != 1:
        inputs["windows_per_step"] = args.windows_per_step
    if args.command == "train" and args.sampling != "auto":
        inputs["sampling"] = args.sampling
    if args.command == "train" and args.memory_budget_mb:
        inputs["memory_budget_mb"] = args.memory_budget_mb
    if args.command == "train" and args.label_tile is not None:
        inputs["label_tile"] = args.label_tile
    with _ctrl_c_cancels() as cancelled:
        try:
            return train_from_files(
                raster=args.raster, out_model=args.out_model, model=args.model, epochs=args.epochs, device=args.device,
                seed=args.seed, overrides=overrides, split=_split_options(args), patience=args.patience,
                threads=args.threads or None, progress=_progress_printer("train") if is_main() else None,
                cancelled=cancelled, **inputs)
        except TrainingCancelled:
            print("training cancelled: no model file written", file=sys.stderr)
            return None


def _print_training(metadata: Dict[str, Any], result: Any, model_path: str) -> None:
    provenance = metadata["provenance"]
    counts = provenance["split"]["counts"]
    print(f"model       {model_path}")
    print(f"classes     {len(metadata['classes']['ids'])} (train / validation / test pixels)")
    for cid, name, *numbers in zip(metadata["classes"]["ids"], metadata["classes"]["names"], counts["train"],
                                   counts["validation"], counts["test"]):
        print(f"  {cid:>4} {name[:24]:<24} {numbers[0]:>6} / {numbers[1]:>6} / {numbers[2]:>7}")
    print(f"best epoch  {provenance['best_epoch']} of {provenance['epochs_run']} "
          f"(validation OA {provenance['best_validation_oa']:.4f})")
    print(f"time        {result.seconds:.1f} s on {result.device} (scan backend {result.backend}, "
          f"{result.threads} threads)")
    print(f"{provenance['evaluated_on']:<11} ", end="")
    _print_metrics(provenance["metrics"])


def _check_modalities(args: argparse.Namespace) -> None:
    """The multi-modal options go with a multi-modal model and only with one; the deep-model options
    (epochs and the like) not with a classical one."""
    if args.model in CLASSICAL_NAMES:
        deep = [option for option, used in (
            ("--epochs", args.epochs is not None), ("--patience", args.patience is not None),
            ("--sampling", args.sampling != "auto"), ("--memory-budget-mb", bool(args.memory_budget_mb)),
            ("--label-tile", args.label_tile is not None),
            ("--windows-per-step", args.windows_per_step != 1)) if used]
        if deep:
            raise ValueError(f"{', '.join(deep)} {'is' if len(deep) == 1 else 'are'} for the deep models "
                             f"({', '.join(MODEL_NAMES + MULTIMODAL_NAMES)}); {args.model} is fitted once on the "
                             "training pixels and tuned on the validation pixels: leave them out")
    if args.model in MULTIMODAL_NAMES:
        if not args.aux:
            raise ValueError(f"--model {args.model} needs at least one --aux raster (LiDAR, SAR) of the area of --raster")
        if args.windows_per_step != 1:
            raise ValueError(f"--windows-per-step is for the whole-window models ({', '.join(MODEL_NAMES)}); "
                             f"{args.model} trains on minibatches of crops")
        if args.label_tile is not None:
            raise ValueError(f"--label-tile is for the whole-window models ({', '.join(MODEL_NAMES)}); the label "
                             f"windows of {args.model} follow its crop size")
    elif args.aux or args.aux_resampling or args.clip_weights or args.no_clip:
        raise ValueError(f"--aux, --aux-resampling, --clip-weights and --no-clip are for the multi-modal models "
                         f"({', '.join(MULTIMODAL_NAMES)}); {args.model} reads the hyperspectral raster only")


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import distributed
    from .paths import write_text_atomic

    _check_modalities(args)
    if args.epochs is None:
        args.epochs = (MULTIMODAL_EPOCHS if args.model in MULTIMODAL_NAMES else 1 if args.model in CLASSICAL_NAMES
                       else HSI_EPOCHS)
    args.out_model = args.out
    inputs = dict(labels=args.labels, rois=args.rois, class_field=args.class_field, name_field=args.name_field,
                  other_outputs={"training report": args.report})
    bands = parse_bands(args.bands)
    if bands is not None:
        inputs["bands"] = bands
    with distributed.session(args.device) as group:
        if group is not None and args.model in MULTIMODAL_NAMES:
            raise ValueError(f"{args.model} trains on one device (its crop trainer has no DistributedDataParallel "
                             f"yet); run it without torchrun, or train {' or '.join(MODEL_NAMES)} on several GPUs")
        if group is not None and args.windows_per_step != 1:
            raise ValueError("--windows-per-step is set by torchrun's process count (one window per process and "
                             "step); leave it out under torchrun")
        trained = _train(args, parse_overrides(args.set), **inputs)
    if trained is None:
        return cancel_status()
    if group is not None and group.rank != 0:
        return 0                                       # rank 0 prints and writes the report
    metadata, result = trained
    _print_training(metadata, result, args.out)
    if args.report:
        report = {"metadata": metadata, "history": result.history, "command": sys.argv,
                  "estimated_epoch_seconds": None if math.isnan(result.estimated_epoch_seconds)
                  else result.estimated_epoch_seconds}
        write_text_atomic(args.report, json.dumps(report, indent=2), "training report")
        print(f"report      {args.report}")
    return 0


def _classify(args: argparse.Namespace, model: str, raster: str, out: str, aux: Optional[List[str]] = None,
              bands: Optional[List[int]] = None, **outputs: Optional[str]) -> Optional[dict]:
    """classify_file (with the auxiliary rasters of a multi-modal model); None when cancelled."""
    from .pipeline import classify_file
    from .inference.predict import PredictionCancelled

    with _ctrl_c_cancels() as cancelled:
        try:
            return classify_file(model, raster, out, tile=args.tile, overlap=args.overlap, bands=bands, aux=aux,
                                 device=args.device, threads=args.threads or None,
                                 progress=_progress_printer("classify"), cancelled=cancelled, **outputs)
        except PredictionCancelled:
            print("classification cancelled: no output raster written", file=sys.stderr)
            return None


def _cmd_classify(args: argparse.Namespace) -> int:
    outputs = dict(confidence=args.confidence, probabilities=args.probabilities)
    if args.aux:
        unused = [option for option, value in (("--clusters", args.clusters), ("--tile", args.tile),
                                               ("--overlap", args.overlap)) if value is not None]
        if unused:
            raise ValueError(f"{', '.join(unused)} do not apply to multi-modal models (they give no clusters and "
                             "predict on overlapping crops); leave them out")
    else:
        outputs["clusters"] = args.clusters
    written = _classify(args, args.model, args.raster, args.out, aux=args.aux, bands=parse_bands(args.bands), **outputs)
    if written is None:
        return cancel_status()
    for kind, path in written.items():
        print(f"{kind:<14} {path}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_files

    metrics = evaluate_files(args.pred, labels=args.labels, rois=args.rois, class_field=args.class_field,
                             name_field=args.name_field, json_out=args.json)
    print(f"prediction  {metrics['prediction']}")
    print(f"reference   {metrics['reference']}")
    _print_metrics(metrics)
    _print_area(metrics["area_adjusted"])
    if args.json:
        print(f"json        {args.json}")
    return 0


def _print_area(area: Dict[str, Any]) -> None:
    """Olofsson et al. (2014)'s area-weighted OA and the estimated class areas, with 95 % intervals."""
    def interval(value: Optional[float], half: Optional[float], scale: float = 1.0, digits: int = 0) -> str:
        if value is None:
            return "–"
        return f"{scale * value:,.{digits}f}" + ("" if half is None else f" ± {scale * half:,.{digits}f}")

    print(f"area-adjusted OA (Olofsson et al. 2014): {interval(area['overall_accuracy'], area['overall_accuracy_ci95'], 100, 2)} %")
    unit = "ha" if area["pixel_area_m2"] is not None else "px"
    for entry in area["classes"]:
        mapped, estimate, half = ((entry["mapped_area_ha"], entry["area_ha"], entry["area_ha_ci95"]) if unit == "ha"
                                  else (entry["mapped_pixels"], entry["area_pixels"], entry["area_pixels_ci95"]))
        print(f"  class {entry['id']:>3} {entry['name'][:20]:<20} mapped {mapped:,.1f} {unit}, "
              f"estimated {interval(estimate, half, digits=1)} {unit}")
    for note in area["notes"]:
        print(f"  note: {note}")


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_models
    from .training.train import TrainingCancelled
    from .inference.predict import PredictionCancelled

    if args.epochs is None:
        args.epochs = HSI_EPOCHS
    with _ctrl_c_cancels() as cancelled:
        try:
            comparison = compare_models(
                args.raster, args.out_dir, models=[m for m in args.models.split(",") if m.strip()],
                labels=args.labels, rois=args.rois, class_field=args.class_field, name_field=args.name_field,
                split=_split_options(args), seed=args.seed, epochs=args.epochs, device=args.device,
                threads=args.threads or None, bands=parse_bands(args.bands), progress=_progress_printer("compare"),
                cancelled=cancelled)
        except (TrainingCancelled, PredictionCancelled):
            print("comparison cancelled: the finished models stay in --out-dir, nothing is half-written, and there "
                  "is no report",
                  file=sys.stderr)
            return cancel_status()
    print(f"{'model':<10} {'OA':>7} {'AA':>7} {'kappa':>7} {'train s':>8} {'classify s':>10}")
    for row in comparison["models"]:
        m = row["metrics"]
        print(f"{row['model']:<10} {100 * m['overall_accuracy']:7.2f} {100 * m['average_accuracy']:7.2f} "
              f"{m['kappa']:7.4f} {row['train_seconds']:8.1f} {row['predict_seconds']:10.1f}")
    print(f"report      {comparison['report']}")
    return 0


def _cmd_suggest(args: argparse.Namespace) -> int:
    from .inference.predict import PredictionCancelled
    from .suggest import suggest_file

    with _ctrl_c_cancels() as cancelled:
        try:
            result = suggest_file(args.model, args.raster, args.out, n=args.count, labels=args.labels, rois=args.rois,
                                  class_field=args.class_field, min_distance=args.min_distance, device=args.device,
                                  threads=args.threads or None, progress=_progress_printer("suggest"),
                                  cancelled=cancelled)
        except PredictionCancelled:
            print("cancelled: no suggestion layer written", file=sys.stderr)
            return cancel_status()
    for record in result["suggestions"]:
        print(f"{record['rank']:>3}. row {record['row']:>5}, col {record['col']:>5}: {record['reason']}")
    print(f"suggestions {result['path']}")
    return 0


def _cmd_roistats(args: argparse.Namespace) -> int:
    from .paths import check_distinct, write_text_atomic
    from .report import roi_statistics_html, write_report
    from .roistats import roi_statistics

    check_distinct({"raster": args.raster, "label raster": args.labels, "ROI file": args.rois},
                   {"HTML report": args.out, "JSON file": args.json})
    stats = roi_statistics(args.raster, labels=args.labels, rois=args.rois, class_field=args.class_field,
                           name_field=args.name_field, bands=parse_bands(args.bands)).as_dict()
    write_report(args.out, roi_statistics_html(stats))
    if args.json:
        write_text_atomic(args.json, json.dumps(stats, indent=2) + "\n", "JSON file")
    for entry in stats["classes"]:
        print(f"class {entry['id']:>3} {entry['name'][:24]:<24} {entry['pixels']:>7,} px in {entry['rois']:,} ROIs")
    for warning in stats["warnings"]:
        print(f"warning: {warning}")
    print(f"report      {args.out}")
    return 0


def _cmd_postprocess(args: argparse.Namespace) -> int:
    from .inference.postprocess import majority, sieve

    if (args.sieve is None) == (args.majority is None):
        raise ValueError("give either --sieve PIXELS (minimum mapping unit) or --majority WINDOW, one per run")
    if args.sieve is not None:
        out = sieve(args.classes, args.out, args.sieve, args.connectedness)
        print(f"patches under {args.sieve} px ({args.connectedness}-connected) merged into their largest neighbour")
    else:
        out = majority(args.classes, args.out, args.majority)
        print(f"majority of every {args.majority} x {args.majority} px window")
    print(f"classes     {out}")
    return 0


def load_benchmark_module():
    """bench/accuracy.py of the repository (the installed plugin ships no benchmarks)."""
    path = os.path.join(ROOT, "bench", "accuracy.py")
    if not os.path.isfile(path):
        raise ValueError(f"the accuracy benchmark is not here ({path} is missing): it lives in the repository's "
                         "bench/ folder and is not part of the installed plugin; run it from a checkout")
    spec = importlib.util.spec_from_file_location("bench_accuracy", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _cmd_benchmark(args: argparse.Namespace) -> int:
    return load_benchmark_module().main(args.bench_args)


def _cmd_demo(args: argparse.Namespace) -> int:
    """Sample (once) → train on its ROIs → classify the whole scene → assess against the full reference map."""
    raster = os.path.join(args.out, "sample.tif")
    if args.force or not os.path.exists(raster):
        if _cmd_sample(args):
            return 1
    else:
        print(f"using the existing sample {raster} (--force regenerates it)")
    out = {name: os.path.join(args.out, f"demo_{name}.tif") for name in ("classes", "confidence", "clusters")}
    args.raster, args.out_model = raster, os.path.join(args.out, f"demo_{args.model}.pt")
    overrides = dict(DEMO_OVERRIDES, **parse_overrides(args.set))
    trained = _train(args, overrides, rois=os.path.join(args.out, "sample_rois.gpkg"), class_field="class_id",
                     name_field="class_name")
    if trained is None:
        return cancel_status()
    metadata, result = trained
    print(f"== trained {args.model} ({json.dumps(overrides)}) on the sample's ROIs, {args.epochs} epochs")
    _print_training(metadata, result, args.out_model)
    written = _classify(args, args.out_model, raster, out["classes"], confidence=out["confidence"],
                        clusters=out["clusters"])
    if written is None:
        return cancel_status()
    from .evaluation import evaluate_files

    labels = os.path.join(args.out, "sample_labels.tif")
    metrics = evaluate_files(out["classes"], labels=labels, json_out=os.path.join(args.out, "demo_accuracy.json"))
    print("== whole-scene accuracy of the class map against the sample's full reference map (ROI pixels included)")
    _print_metrics(metrics)
    print("== outputs")
    for kind, path in list(written.items()) + [("accuracy json", os.path.join(args.out, "demo_accuracy.json"))]:
        print(f"{kind:<14} {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-q", "--quiet", action="store_true", help="do not log what runs where (backend choices, builds)")
    commands = parser.add_subparsers(dest="command", required=True)

    def sample_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--rows", type=int, default=128, help="scene height in pixels (default 128)")
        p.add_argument("--cols", type=int, default=128, help="scene width in pixels (default 128)")
        p.add_argument("--bands", type=int, default=128, help="number of spectral bands (default 128)")
        p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")

    def check_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", choices=DEVICES, default="auto")
        p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
        p.add_argument("--width", type=int, default=64, help="scan channels d (default 64)")
        p.add_argument("--repeats", type=int, default=3, help="timed repetitions; the best is shown")

    def reference_options(p: argparse.ArgumentParser, what: str) -> None:
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--labels", help=f"{what} label raster on the same grid (0 = unlabelled)")
        source.add_argument("--rois", help=f"{what} ROI vector (polygons or points, any CRS)")
        p.add_argument("--class-field", help="ROI attribute holding the integer class id (required with --rois)")
        p.add_argument("--name-field", help="ROI attribute holding the class name (optional)")

    def split_options(p: argparse.ArgumentParser, default: str) -> None:
        """How the labelled pixels are split (pipeline.SplitOptions); ``default``: the --split mode."""
        p.add_argument("--split", choices=["fixed", "ratio", "spatial", "auto"], default=default,
                       help="fixed: N train / M validation pixels per class, rest test (the papers' protocol; "
                            "train's default); ratio: fractions per class; spatial: the same counts from separate "
                            "ROIs (connected components, cut into blocks where a class has fewer than 3), the test "
                            "pixels from the other ROIs (or blocks), so none lies in a training ROI; auto: spatial "
                            "when every class has at least 3 separate ROIs, else fixed (the toolbox's and compare's "
                            "default)")
        p.add_argument("--train-per-class", type=int, default=30,
                       help="fixed/spatial split: training pixels (default 30)")
        p.add_argument("--val-per-class", type=int, default=10,
                       help="fixed/spatial split: validation pixels (default 10)")
        p.add_argument("--train-ratio", type=float, default=0.1, help="ratio split: training fraction (default 0.1)")
        p.add_argument("--val-ratio", type=float, default=0.01, help="ratio split: validation fraction (0.01)")
        p.add_argument("--val-labels", help="validation label raster: all training labels train, these select "
                                            "the epoch and are what the metrics are computed on")
        p.add_argument("--val-rois", help="validation ROI vector (as --val-labels)")
        p.add_argument("--val-class-field", help="class field of --val-rois (default: --class-field)")

    def training_options(p: argparse.ArgumentParser, epochs: Optional[int], seed: bool = True) -> None:
        """epochs None: the default depends on the model (the train command, which offers M3amba)."""
        if epochs is None:
            p.add_argument("--model", choices=MODEL_NAMES + CLASSICAL_NAMES + MULTIMODAL_NAMES, default="cssmamba",
                           help="architecture (default cssmamba); m3amba fuses the raster with --aux rasters; rf "
                                "(random forest, 500 trees) and svm (RBF) are the classical baselines, tuned on "
                                "the validation pixels")
            p.add_argument("--epochs", type=int, help=f"training epochs (default {HSI_EPOCHS}; "
                                                      f"{MULTIMODAL_EPOCHS} for m3amba)")
        else:
            p.add_argument("--model", choices=MODEL_NAMES, default="cssmamba", help="architecture (default cssmamba)")
            p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
        p.add_argument("--device", choices=DEVICES, default="auto", help="auto = CUDA when available (default)")
        if seed:
            p.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and training")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="model config override, repeatable, value read as JSON when it parses "
                            "(e.g. --set clusters_per_class=2 --set gate=prior)")
        split_options(p, "fixed")
        p.add_argument("--patience", type=int, help="stop after this many epochs without a better validation OA")
        p.add_argument("--threads", type=int, default=0,
                       help="CPU threads of torch and scikit-learn (default: the libraries' choice)")

    def tiling_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tile", type=int, help="tile size in pixels (default: the engine's measured default)")
        p.add_argument("--overlap", type=int, help="tile overlap in pixels (default: the engine's)")

    train = commands.add_parser("train", help="train a model on a raster with label raster or ROIs",
                                description="Train CSSMamba or MambaHSI on a raster, or M3amba on a raster plus "
                                            "auxiliary rasters (--aux, with --clip-weights FILE or --no-clip); the "
                                            "model file stores the weights, class table, band list, stretch and "
                                            "provenance.")
    train.add_argument("--raster", required=True, help="hyperspectral raster (any GDAL format)")
    reference_options(train, "training")
    training_options(train, epochs=None)
    train.add_argument("--aux", action="append", metavar="FILE",
                       help="m3amba: auxiliary raster (LiDAR DSM/intensity, SAR), repeatable; resampled onto the "
                            "--raster grid, reprojected when its CRS differs; classify takes the same, in this order")
    train.add_argument("--aux-resampling", action="append", choices=AUX_RESAMPLING,
                       help="m3amba: resampling of the --aux rasters, once for all or once per --aux (default "
                            "bilinear, for continuous data; nearest for classes; average for much finer rasters)")
    clip = train.add_mutually_exclusive_group()
    clip.add_argument("--clip-weights", metavar="FILE",
                      help="m3amba: local CLIP ViT-B/32 image-encoder weights (OpenAI's ViT-B-32.pt, an open_clip or "
                           "safetensors file); the plugin never downloads them")
    clip.add_argument("--no-clip", action="store_true",
                      help="m3amba: the documented ablation without the CLIP branch (no weights needed)")
    train.add_argument("--windows-per-step", type=int, default=1, metavar="N",
                       help="average the gradients of N training windows per optimizer step (the scene is cut into "
                            "at least N windows); what 'torchrun --nproc_per_node=N' computes on N GPUs at once")
    train.add_argument("--sampling", choices=("auto", "windows", "whole"), default="auto",
                       help="what training reads and steps over: the classification tiles that hold labelled "
                            "pixels (the cost follows the ROIs, not the scene; classify repeats the tiles), the "
                            "whole scene, or auto (default: the whole scene when it is at most one classification "
                            "tile, 512 px, and fits in memory, else the tiles)")
    train.add_argument("--label-tile", type=int, metavar="PX",
                       help="cssmamba, mambahsi: side of the tiles training steps over when it trains on label "
                            "windows (default 64, measured; 32-512); classify repeats the tiles. Larger tiles give "
                            "more context at a training time in proportion to their pixels (128: about 3 times) and "
                            "did not raise CSSMamba's accuracy on the EnMAP scene")
    train.add_argument("--memory-budget-mb", type=int, metavar="MB",
                       help="memory a training step may use (default: half the RAM, 80 %% of the free GPU memory); "
                            "a window that needs more is cut into overlapping windows")
    train.add_argument("--bands", help="file bands to train on, e.g. 1-50,60,70-80 (default: every band but alpha "
                                       "and bad bands); classify reads the same ones")
    train.add_argument("--out", required=True, help="model file to write (written only when training ends)")
    train.add_argument("--report", help="JSON report: metadata, test metrics and the per-epoch history")
    train.set_defaults(run=_cmd_train)

    classify = commands.add_parser("classify", help="classify a raster with a model file",
                                   description="Classify a raster of any size in overlapping tiles; outputs "
                                               "share the input's grid and CRS.")
    classify.add_argument("--model", required=True, help="model file written by 'train'")
    classify.add_argument("--raster", required=True, help="raster with the training raster's bands")
    classify.add_argument("--aux", action="append", metavar="FILE",
                          help="auxiliary raster of a multi-modal (m3amba) model, repeatable, in the training order")
    classify.add_argument("--bands", help="file bands of --raster to read, in the model's band order (e.g. "
                                          "1-50,60): needed when --raster has another band count than the training "
                                          "raster and no wavelengths to match them by")
    classify.add_argument("--out", required=True, help="class raster (GeoTIFF, 0 = nodata, colour table)")
    classify.add_argument("--confidence", help="confidence raster (max softmax probability, float32)")
    classify.add_argument("--clusters", help="cluster-map raster (CSSMamba's cluster of each pixel)")
    classify.add_argument("--probabilities", help="per-class probability raster (one band per class)")
    tiling_options(classify)
    classify.add_argument("--device", choices=DEVICES, default="auto")
    classify.add_argument("--threads", type=int, default=0, help="CPU threads (default: the libraries' choice)")
    classify.set_defaults(run=_cmd_classify)

    evaluate = commands.add_parser("evaluate", help="accuracy of a class raster against reference labels or ROIs",
                                   description="Confusion matrix, OA, AA, kappa and per-class accuracies over the "
                                               "reference's classes.")
    evaluate.add_argument("--pred", required=True, help="class raster (e.g. the 'classify' --out)")
    reference_options(evaluate, "reference")
    evaluate.add_argument("--json", help="write the metrics and confusion matrix to this JSON file")
    evaluate.set_defaults(run=_cmd_evaluate)

    compare = commands.add_parser("compare", help="train several models on the same split, one report",
                                  description="Train the --models on the same ROIs and split, classify the raster "
                                              "with each and write --out-dir/compare.html (OA/AA/kappa, times, "
                                              "per-class accuracy, class maps side by side, confusion matrices) "
                                              "beside every model file and class map.")
    compare.add_argument("--raster", required=True, help="the raster to train on and classify")
    reference_options(compare, "training")
    compare.add_argument("--models", default="rf,svm,mambahsi,cssmamba",
                         help="comma list, at least two of rf, svm, mambahsi, cssmamba (default all four)")
    compare.add_argument("--epochs", type=int, help=f"epochs of the deep models (default {HSI_EPOCHS})")
    compare.add_argument("--device", choices=DEVICES, default="auto", help="auto = CUDA when available (default)")
    compare.add_argument("--seed", type=int, default=0, help="seed of the split and of every model")
    split_options(compare, "auto")
    compare.add_argument("--bands", help="file bands, e.g. 1-50,60 (default: every band but alpha and bbl=0)")
    compare.add_argument("--threads", type=int, default=0, help="CPU threads (default: the libraries' choice)")
    compare.add_argument("--out-dir", required=True, help="folder for the report, model files and class maps")
    compare.set_defaults(run=_cmd_compare)

    suggest = commands.add_parser("suggest", help="where to draw the next ROIs: where the model is least sure",
                                  description="Classify --raster with --model and write --count points where the "
                                              "model hesitates most between two classes (and on class or cluster "
                                              "borders), spread over the scene and the classes, away from the "
                                              "ROIs or labels given; fill in their class_id and add them to the "
                                              "ROIs.")
    suggest.add_argument("--model", required=True, help="model file (.pt)")
    suggest.add_argument("--raster", required=True, help="the raster to suggest on (the model's bands)")
    suggest_source = suggest.add_mutually_exclusive_group()
    suggest_source.add_argument("--labels", help="label raster of the existing training labels (kept away from)")
    suggest_source.add_argument("--rois", help="the existing ROI vector (kept away from)")
    suggest.add_argument("--class-field", help="class id field of --rois")
    suggest.add_argument("--count", type=int, default=20, help="number of suggestions (default 20)")
    suggest.add_argument("--min-distance", type=float,
                         help="least distance in pixels between suggestions and from the ROIs (default: from the "
                              "scene size and --count)")
    suggest.add_argument("--device", choices=DEVICES, default="auto", help="auto = CUDA when available (default)")
    suggest.add_argument("--threads", type=int, default=0, help="CPU threads (default: the libraries' choice)")
    suggest.add_argument("--out", required=True, help="point GeoPackage (.gpkg) of the suggestions")
    suggest.set_defaults(run=_cmd_suggest)

    stats = commands.add_parser("roistats", help="class spectra, ROI counts and separability before training",
                                description="Per class the mean ± std spectrum, pixel and ROI counts, and the "
                                            "Jeffries-Matusita separability of every pair, as an HTML report; "
                                            "warns on classes under 30 px and pairs under JM 1.9.")
    stats.add_argument("--raster", required=True, help="the raster to train on")
    reference_options(stats, "training")
    stats.add_argument("--bands", help="file bands, e.g. 1-50,60 (default: every band but alpha and bbl=0)")
    stats.add_argument("--out", required=True, help="HTML report")
    stats.add_argument("--json", help="every number of the report as JSON")
    stats.set_defaults(run=_cmd_roistats)

    post = commands.add_parser("postprocess", help="clean a class map: minimum mapping unit or majority filter",
                               description="Merge patches smaller than a minimum mapping unit into their largest "
                                           "neighbour (--sieve, GDAL's sieve filter) or give every pixel the "
                                           "majority class of its window (--majority). Unclassified pixels (0) "
                                           "stay; colours and class names are kept.")
    post.add_argument("--classes", required=True, help="class raster (the 'classify' --out)")
    post.add_argument("--out", required=True, help="cleaned class raster (GeoTIFF)")
    post.add_argument("--sieve", type=int, metavar="PIXELS", help="minimum mapping unit in pixels (at least 2)")
    post.add_argument("--connectedness", type=int, choices=[4, 8], default=8,
                      help="with --sieve: 4 (edges) or 8 (edges and corners, default) neighbours make a patch")
    post.add_argument("--majority", type=int, metavar="WINDOW", help="odd window size in pixels, e.g. 3 or 5")
    post.set_defaults(run=_cmd_postprocess)

    benchmark = commands.add_parser("benchmark", add_help=False,
                                    help="accuracy benchmark on ../shared/data (bench/accuracy.py; "
                                         "'benchmark --help' lists its options)")
    benchmark.set_defaults(run=_cmd_benchmark)

    sample = commands.add_parser("sample", help="write the built-in synthetic hyperspectral sample")
    sample.add_argument("--out", required=True, help="output folder")
    sample_options(sample)
    sample.set_defaults(run=_cmd_sample)

    check = commands.add_parser("selfcheck", help="check the selective scan against float64 and time it")
    check.add_argument("--raster", required=True, help="a raster whose pixels feed the scan")
    check_options(check)
    check.set_defaults(run=_cmd_selfcheck)

    demo = commands.add_parser("demo", help="sample (once) → train CSSMamba on its ROIs → classify → evaluate",
                               description="Make the built-in sample if missing, train on its ROIs, classify the "
                                           "whole scene and assess the class map against the full reference map. "
                                           f"Trains the plugin's default CSSMamba for {DEMO_EPOCHS} epochs to "
                                           "finish in about a minute on 2 CPU cores; --set dim=128 --epochs 200 is the "
                                           "paper's setting.")
    demo.add_argument("--out", default="sample", help="sample and output folder (default ./sample)")
    demo.add_argument("--force", action="store_true", help="regenerate the sample even if it exists")
    sample_options(demo)
    training_options(demo, epochs=DEMO_EPOCHS, seed=False)
    tiling_options(demo)
    demo.set_defaults(run=_cmd_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "benchmark":
        args.bench_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(name)s: %(message)s")
    try:
        return args.run(args)
    except (ValueError, OSError) as exc:  # bad input, a full disk: the message is worded for the user
        print(f"error: {exc}", file=sys.stderr)
        return 2
