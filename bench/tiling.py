#!/usr/bin/env python3
"""Tiled vs whole-image prediction (issue 3 §5): what the tile size and overlap cost in accuracy.

The models see the whole scene in training, but ``Classify raster`` streams a large raster through
overlapping tiles stitched by centre-crop (engine/inference/tiling.py), so a pixel near a tile edge loses the
context beyond it. This trains one model on a real scene (the 30/10 split of ``--seed``), predicts the
scene once whole and once per tile size × overlap, and reports for each the share of pixels whose class
equals the whole-image prediction and the test OA, so a default can be chosen by measurement.

    python bench/tiling.py --dataset muufl --tiles 24,32,48,64 --overlaps 0,8,16,32
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.accuracy import DATASETS, DEFAULT_DATA, RESULTS, load_scene  # noqa: E402
from engine.cli import parse_overrides  # noqa: E402
from engine.data.splits import fixed_count_split  # noqa: E402


def _test_oa(predicted: np.ndarray, index: np.ndarray, test: np.ndarray) -> float:
    return float((predicted[test] == index[test]).mean())


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from engine.data.normalize import apply_stretch, fit_stretch
    from engine.models.registry import build_model
    from engine.inference.tiling import predict_array
    from engine.training.train import TrainConfig, train_model

    scene = load_scene(DATASETS[args.dataset], Path(args.data))
    class_ids, _ = scene.usable_classes()
    index = scene.class_index(class_ids)
    split = fixed_count_split(index, seed=args.seed, valid=scene.valid)
    test = (split.test >= 0) & scene.valid
    image = apply_stretch(scene.data, scene.valid, fit_stretch(scene.data, scene.valid))
    torch.manual_seed(args.seed)
    model = build_model(args.model, image.shape[0], len(class_ids), **parse_overrides(args.set))
    result = train_model(model, image, scene.data, scene.valid, split,
                         TrainConfig(epochs=args.epochs, seed=args.seed, threads=args.threads))

    def predict(tile: Optional[int], overlap: int) -> Dict[str, Any]:
        started = time.perf_counter()
        probabilities, _ = predict_array(model, image, scene.valid, tile=tile, overlap=overlap)
        return {"tile": tile, "overlap": overlap, "seconds": time.perf_counter() - started,
                "predicted": probabilities.argmax(0)}

    whole = predict(None, 0)
    rows = []
    for tile in args.tiles:
        for overlap in args.overlaps:
            if 2 * overlap >= tile:
                continue                                   # no centre left to keep
            run_ = predict(tile, overlap)
            same = run_["predicted"][scene.valid] == whole["predicted"][scene.valid]
            rows.append({"tile": tile, "overlap": overlap, "agreement": float(same.mean()),
                         "test_oa": _test_oa(run_["predicted"], index, test), "seconds": run_["seconds"]})
            print(json.dumps(rows[-1]), flush=True)
    return {"benchmark": "tiling",
            "command": "python bench/tiling.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "torch": torch.__version__,
            "dataset": args.dataset, "shape": scene.meta["shape"], "model": args.model, "config": model.config,
            "seed": args.seed, "epochs": args.epochs, "best_epoch": result.best_epoch,
            "whole": {"test_oa": _test_oa(whole["predicted"], index, test), "seconds": whole["seconds"]},
            "rows": rows}


def render_markdown(report: Dict[str, Any]) -> str:
    bands, height, width = report["shape"]
    lines = ["# Tiled vs whole-image prediction", "", f"`{report['command']}`", "",
             f"{report['date']} · {report['machine']} · torch {report['torch']}", "",
             f"Scene: {report['dataset']}, {height} × {width} px, {bands} bands; {report['model']} "
             f"(width {report['config'].get('dim')}), seed {report['seed']}, {report['epochs']} epochs "
             f"(best epoch {report['best_epoch']}). Whole image in one pass: test OA "
             f"{100 * report['whole']['test_oa']:.2f} %, {report['whole']['seconds']:.2f} s.", "",
             "Agreement: share of valid pixels with the whole-image class.", "",
             "| tile px | overlap px | agreement % | test OA % | seconds |", "|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['tile']} | {r['overlap']} | {100 * r['agreement']:.2f} | {100 * r['test_oa']:.2f} | "
                     f"{r['seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="muufl")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="shared data folder (default ../shared/data)")
    parser.add_argument("--model", choices=["cssmamba", "mambahsi"], default="cssmamba")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="model option (repeatable)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiles", type=lambda t: [int(v) for v in t.split(",")], default=[24, 32, 48, 64])
    parser.add_argument("--overlaps", type=lambda t: [int(v) for v in t.split(",")], default=[0, 8, 16])
    parser.add_argument("--out", default=str(RESULTS / "tiling.json"), help="result JSON (the .md goes beside it)")
    args = parser.parse_args(argv)
    report = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    markdown = render_markdown(report)
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
