#!/usr/bin/env python3
"""Speed benchmark (issue 3 targets): training epochs on the EnMAP Potsdam mosaic, classification of a large raster.

``train``: seconds per training epoch (forward + backward + step + the full-image validation pass) of each
model configuration on the real 192 × 160 × 218 mosaic with the 30/10 split, all in one run so the
configurations compare as ratios; the 200-epoch time is projected from the epochs between the first and
the last (use --epochs 4 or more), and
``--full LABEL`` also trains that configuration for the real 200 epochs and reports the wall time.

``classify``: wall time and peak RSS of ``python -m engine classify`` (a child process, so the figure is the
whole job's: imports, reading, tiles, writing) on a raster made with the sample generator, e.g. 1000 × 1000
× 224; the model is trained for one epoch on a small sample of the same band layout (speed does not
depend on the weights).

    python bench/speed.py train --epochs 4 --config cssmamba:dim=32 --config mambahsi:dim=32
    python bench/speed.py classify --size 1000 --bands 224 --config cssmamba:dim=32
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.cli import parse_overrides  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results"
ENMAP = REPO_ROOT.parent / "shared" / "data" / "enmap_potsdam"


def _parse_config(text: str) -> Tuple[str, str, Dict[str, Any]]:
    """'cssmamba:dim=32,local_weights=shared' -> (label, model name, overrides)."""
    name, _, rest = text.partition(":")
    overrides = parse_overrides([item for item in rest.split(",") if item]) if rest else {}
    return text, name, overrides


def _environment(argv: List[str]) -> Dict[str, Any]:
    return {"command": "python bench/speed.py " + " ".join(shlex.quote(a) for a in argv),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": "cpu" if not torch.cuda.is_available()
            else torch.cuda.get_device_name(0)}


def bench_train(args: argparse.Namespace) -> Dict[str, Any]:
    from engine.data.labels import class_indices, read_label_raster
    from engine.data.normalize import apply_stretch, fit_stretch
    from engine.data.raster import load_training_raster
    from engine.data.splits import fixed_count_split
    from engine.models import build_model
    from engine.training.train import TrainConfig, train_model

    info, raw, valid = load_training_raster(str(ENMAP / "enmap_potsdam_mosaic.tif"))
    ids, table = read_label_raster(str(ENMAP / "enmap_potsdam_labels.tif"), info, valid=valid)
    split = fixed_count_split(class_indices(ids, table), seed=0, valid=valid)
    image = apply_stretch(raw, valid, fit_stretch(raw, valid))
    rows = []
    for label, name, overrides in map(_parse_config, args.config):
        for full in ([False, True] if label in args.full else [False]):
            torch.manual_seed(0)
            model = build_model(name, info.bands, len(table.ids), **overrides)
            epochs = 200 if full else args.epochs
            start = time.perf_counter()
            result = train_model(model, image, raw, valid, split, TrainConfig(epochs=epochs, device=args.device))
            wall = time.perf_counter() - start
            epoch_seconds = [h["seconds"] for h in result.history]
            # Steady state: after the first epoch (warm-up) and before the last, which alone runs a
            # validation pass (the others are scored by the next epoch's forward, engine/training/train.py).
            steady = float(np.median(epoch_seconds[1:-1] if len(epoch_seconds) > 2 else epoch_seconds[-1:]))
            rows.append({"config": label, "epochs": epochs, "parameters": sum(p.numel() for p in model.parameters()),
                         "first_epoch_s": epoch_seconds[0], "epoch_s": steady,
                         "projected_200_epochs_s": epoch_seconds[0] + 199 * steady, "wall_s": wall,
                         "best_val_oa": result.best_val_oa, "device": result.device, "backend": result.backend})
            print(json.dumps(rows[-1]), flush=True)
    return {"kind": "train", "scene": "enmap_potsdam mosaic 192x160, 218 bands, 30/10 split seed 0", "rows": rows}


def _run_measuring_peak_rss(command: List[str]) -> int:
    """Run ``command`` in a child that reports its own peak RSS (KiB) on exit; that number is the return value."""
    wrapper = ("import resource, runpy, sys\n"
               "sys.argv = sys.argv[1:]\n"
               "try:\n    runpy.run_module('engine', run_name='__main__')\n"
               "finally:\n    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", wrapper, "engine", *command[3:]], cwd=REPO_ROOT,
                          stderr=subprocess.PIPE, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode:
        raise SystemExit(f"classify failed with exit code {done.returncode}")
    return int(done.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0])


def bench_classify(args: argparse.Namespace) -> Dict[str, Any]:
    from engine.data.sample import generate_sample

    work = Path(args.work or tempfile.mkdtemp(prefix="cssmamba-speed-"))
    big = work / f"big_{args.size}"
    if not (big / "sample.tif").exists():
        generate_sample(str(big), rows=args.size, cols=args.size, bands=args.bands, seed=1)
    small = work / f"small_{args.bands}"
    if not (small / "sample.tif").exists():
        generate_sample(str(small), rows=64, cols=64, bands=args.bands, seed=2)
    rows = []
    for label, name, overrides in map(_parse_config, args.config):
        model_path = work / f"{label.replace(':', '_').replace(',', '_').replace('=', '-')}.cssm"
        settings = [f"--set={k}={json.dumps(v)}" for k, v in overrides.items()]
        subprocess.run([sys.executable, "-m", "engine", "-q", "train", "--raster", str(small / "sample.tif"),
                        "--rois", str(small / "sample_rois.gpkg"), "--class-field", "class_id", "--model", name,
                        "--epochs", "1", "--device", args.device, "--out", str(model_path), *settings],
                       check=True, cwd=REPO_ROOT)
        out = work / "classes.tif"
        command = [sys.executable, "-m", "engine", "-q", "classify", "--model", str(model_path),
                   "--raster", str(big / "sample.tif"), "--out", str(out), "--confidence", str(work / "conf.tif"),
                   "--device", args.device]
        if name == "cssmamba":
            command += ["--clusters", str(work / "clusters.tif")]
        if args.tile:
            command += ["--tile", str(args.tile), "--overlap", str(args.overlap)]
        start = time.perf_counter()
        peak_kb = _run_measuring_peak_rss(command)
        wall = time.perf_counter() - start
        rows.append({"config": label, "raster": f"{args.size}x{args.size}x{args.bands}", "tile": args.tile or "default",
                     "wall_s": wall, "peak_rss_mb": peak_kb / 1024})
        print(json.dumps(rows[-1]), flush=True)
    return {"kind": "classify", "rows": rows}


def report_header(title: str, env: Dict[str, Any]) -> List[str]:
    """The first lines of a speed or scale report: title, command, date and machine."""
    return [f"# {title}", "", f"`{env['command']}`", "",
            f"{env['date']} · {env['machine']} · torch {env['torch']} · {env['threads']} threads · {env['device']}", ""]


def render(report: Dict[str, Any]) -> str:
    lines = report_header(f"Speed: {report['kind']}", report["environment"])
    rows = report["rows"]
    if report["kind"] == "train":
        lines += [f"Scene: {report['scene']}", "",
                  "| config | params | epochs run | first epoch s | epoch s | 200 epochs (projected) | wall s | best val OA |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['config']} | {r['parameters']:,} | {r['epochs']} | {r['first_epoch_s']:.2f} | "
                         f"{r['epoch_s']:.2f} | {r['projected_200_epochs_s'] / 60:.1f} min | {r['wall_s']:.0f} | "
                         f"{r['best_val_oa']:.3f} |")
    else:
        lines += ["| config | raster | tile | wall s | peak RSS MB |", "|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['config']} | {r['raster']} | {r['tile']} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: List[str] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="kind", required=True)
    train = commands.add_parser("train", help="seconds per epoch on the EnMAP Potsdam mosaic")
    train.add_argument("--epochs", type=int, default=4, help="epochs timed per configuration (default 4)")
    train.add_argument("--full", action="append", default=[], metavar="CONFIG", help="also train CONFIG for 200 epochs")
    classify = commands.add_parser("classify", help="time and peak memory of classifying a large raster")
    classify.add_argument("--size", type=int, default=1000, help="raster rows = columns (default 1000)")
    classify.add_argument("--bands", type=int, default=224, help="bands (default 224)")
    classify.add_argument("--tile", type=int, help="tile size (default: the engine's)")
    classify.add_argument("--overlap", type=int, default=32, help="tile overlap with --tile (default 32)")
    classify.add_argument("--work", help="folder for the rasters and models (kept; default a new temp folder)")
    for sub in (train, classify):
        sub.add_argument("--config", action="append", required=True, metavar="MODEL:KEY=VALUE,...")
        sub.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
        sub.add_argument("--threads", type=int, help="torch threads (default torch's choice)")
        sub.add_argument("--out", help="result JSON (default bench/results/speed_<kind>.json; .md beside it)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = bench_train(args) if args.kind == "train" else bench_classify(args)
    report["environment"] = _environment(argv)
    out = Path(args.out or RESULTS / f"speed_{args.kind}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
