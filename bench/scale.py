#!/usr/bin/env python3
"""Scale benchmark (issue 12): training cost follows the ROIs, not the scene; the stretch sample; classification.

``train``: ``python -m engine train`` (the CLI, so the real path: label windows or the whole scene as
``--sampling auto`` decides) on the 192 x 160 EnMAP mosaic with its label raster and on the project's
generated 1000 x 1000 and 2000 x 2000 x 224 scenes with their ROIs (48 ROIs of 5 x 5 px each); every
run uses the 30/10 split, so each trains on 240 pixels and validates on 60. Each run is a child
process measuring its own peak RSS; the seconds per epoch come from its report (median of the epochs
after the first), beside the estimate the trainer logs before epoch 1. One run, so the scenes compare
as ratios.

``stretch``: the 2-98 % stretch fitted on the bounded row-block sample (engine/data/raster.py,
STRETCH_SAMPLE valid pixels) against the fit on every valid pixel, on the three shared scenes and the
generated 1000 x 1000 scene: the largest difference of a limit in stretch levels (1/255 of p98 - p2)
and the share of quantised values that change. The shared scenes are smaller than the default sample
(so it reads them whole); they are also measured with a sample of 4,096 px to show the method's error.

``heap``: the process's resident memory after a job, as QGIS keeps it (the engine hands the heap the
job freed back to the system at its end, ``engine.memory.gives_back_heap``) and as it was before (that
release switched off): training (the 1000 x 1000 scene's label windows, 2 epochs) and classification (the
1000 x 1000 raster, 512 px tiles), each in a fresh child process, on a worker thread as QGIS runs them.

``classify``: ``python -m engine classify`` (class map, confidence, clusters) of the generated scenes,
wall time and peak RSS, for a model trained on label windows (classified with its 64 px training tiles)
and one trained on a small whole scene (512 px tiles); each trained for one epoch (speed does not
depend on the weights).

    python bench/scale.py train --epochs 5 --model cssmamba --work /tmp/scale
    python bench/scale.py train --epochs 3 --model cssmamba --sizes 1000 --label-tile 128 --work /tmp/scale
    python bench/scale.py stretch --work /tmp/scale
    python bench/scale.py classify --sizes 1000,2000 --work /tmp/scale
    python bench/scale.py heap --work /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

BENCH = Path(__file__).resolve().parent
REPO_ROOT = BENCH.parent
for path in (REPO_ROOT, BENCH):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import numpy as np  # noqa: E402

from speed import _environment, _run_measuring_peak_rss, report_header  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results"
SHARED = REPO_ROOT.parent / "shared" / "data"
ENMAP = SHARED / "enmap_potsdam"
SHARED_SCENES = {"enmap_potsdam": ENMAP / "enmap_potsdam_mosaic.tif",
                 "salinas_a": SHARED / "salinas_a" / "salinas_a.tif",
                 "muufl": SHARED / "muufl_crop" / "muufl_hsi.tif"}


def generated(work: Path, size: int, bands: int = 224) -> Path:
    """The project's generated scene of size x size px (made once in ``work``)."""
    from engine.data.sample import generate_sample

    folder = work / f"sample_{size}_{bands}"
    if not (folder / "sample.tif").exists():
        generate_sample(str(folder), rows=size, cols=size, bands=bands, seed=1)
    return folder


def stand_in_aux(folder: Path) -> Path:
    """A 1-band auxiliary raster on a generated scene's grid (its first band): M3amba's speed and memory do
    not depend on what the auxiliary band holds."""
    from osgeo import gdal

    path = folder / "aux_band1.tif"
    if not path.exists():
        gdal.Translate(str(path), str(folder / "sample.tif"), bandList=[1], creationOptions=["TILED=YES"])
    return path


def _train_cases(work: Path, sizes: List[int], model: str) -> Dict[str, List[str]]:
    multimodal = model == "m3amba"
    if multimodal:
        muufl = SHARED / "muufl_crop"
        cases = {"MUUFL crop 90x90x64 + LiDAR (label raster)": [
            "--raster", str(muufl / "muufl_hsi.tif"), "--labels", str(muufl / "muufl_labels.tif"),
            "--aux", str(muufl / "muufl_lidar.tif"), "--no-clip"]}
    else:
        cases = {"EnMAP mosaic 192x160 (label raster)": ["--raster", str(ENMAP / "enmap_potsdam_mosaic.tif"),
                                                        "--labels", str(ENMAP / "enmap_potsdam_labels.tif")]}
    for size in sizes:
        folder = generated(work, size)
        label = f"generated {size}x{size}x224{' + 1 aux band' if multimodal else ''} (48 ROIs)"
        cases[label] = ["--raster", str(folder / "sample.tif"), "--rois", str(folder / "sample_rois.gpkg"),
                        "--class-field", "class_id"]
        if multimodal:
            cases[label] += ["--aux", str(stand_in_aux(folder)), "--no-clip"]
    return cases


def bench_train(args: argparse.Namespace) -> Dict[str, Any]:
    work = Path(args.work)
    rows = []
    for label, inputs in _train_cases(work, [int(s) for s in args.sizes.split(",")], args.model).items():
        report = work / "report.json"
        command = [sys.executable, "-m", "engine", "train", *inputs, "--model", args.model, "--epochs",
                   str(args.epochs), "--device", "cpu", "--threads", str(args.threads), "--out", str(work / "model.pt"),
                   "--report", str(report)]
        if args.label_tile and label.startswith("generated"):
            command += ["--label-tile", str(args.label_tile)]
        start = time.perf_counter()
        peak_kb = _run_measuring_peak_rss(command)
        wall = time.perf_counter() - start
        with open(report, encoding="utf-8") as handle:
            done = json.load(handle)
        seconds = [h["seconds"] for h in done["history"]]
        provenance = done["metadata"]["provenance"]
        windows = provenance["sampling"]["windows"]
        tiling = done["metadata"].get("tiling")
        rows.append({"scene": label, "sampling": provenance["sampling"]["mode"]
                     + (f" ({tiling['tile']} px)" if tiling else ""), "windows": len(windows),
                     "window_pixels": sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in windows),
                     "epoch_s": float(np.median(seconds[1:] if len(seconds) > 1 else seconds)),
                     "first_epoch_s": seconds[0], "estimated_epoch_s": done.get("estimated_epoch_seconds"),
                     "projected_200_epochs_min": (seconds[0] + 199 * float(np.median(seconds[1:] or seconds))) / 60,
                     "wall_s": wall, "peak_rss_mb": peak_kb / 1024, "epochs": len(seconds)})
        print(json.dumps(rows[-1]), flush=True)
    return {"kind": "train", "model": args.model, "rows": rows}


def _stretch_difference(data: np.ndarray, valid: np.ndarray, sampled: Any, full: Any) -> Dict[str, float]:
    from engine.data.normalize import LEVELS, apply_stretch

    span = np.maximum(full.high - full.low, 1e-12)
    limits = max(np.abs(sampled.low - full.low).max(), np.abs(sampled.high - full.high).max())
    worst = float(np.max(np.maximum(np.abs(sampled.low - full.low), np.abs(sampled.high - full.high)) / span * LEVELS))
    changed = (apply_stretch(data, valid, sampled) != apply_stretch(data, valid, full))[:, valid].mean()
    return {"max_limit_difference_levels": worst, "max_limit_difference": float(limits),
            "changed_values_percent": 100 * float(changed)}


def bench_stretch(args: argparse.Namespace) -> Dict[str, Any]:
    from engine.data.normalize import fit_stretch
    from engine.data.raster import STRETCH_SAMPLE, load_training_raster, read_sample

    scenes = dict(SHARED_SCENES, **{"generated 1000x1000x224": generated(Path(args.work), 1000) / "sample.tif"})
    rows = []
    for name, path in scenes.items():
        info, data, valid = load_training_raster(str(path))
        full = fit_stretch(data, valid)
        for pixels in ([STRETCH_SAMPLE, 4096] if valid.size <= STRETCH_SAMPLE else [STRETCH_SAMPLE]):
            sample_info, sample, sample_valid = read_sample(info, pixels=pixels)
            assert sample_info.band_indices == info.band_indices
            rows.append({"scene": name, "pixels": int(valid.sum()), "sample": pixels, "sampled": int(sample.shape[2]),
                         **_stretch_difference(data, valid, fit_stretch(sample, sample_valid), full)})
            print(json.dumps(rows[-1]), flush=True)
        del data
    return {"kind": "stretch", "rows": rows}


def bench_classify(args: argparse.Namespace) -> Dict[str, Any]:
    work = Path(args.work)
    small, large = generated(work, 64), generated(work, 1000)
    models = {  # what each model's classification uses by default: the tiles it was trained on, or 512 / 32 px
        "trained on label windows (tiles 64 / 8 px)": ["--raster", str(large / "sample.tif"), "--rois",
                                                       str(large / "sample_rois.gpkg"), "--sampling", "windows"],
        "trained on a whole 64 x 64 scene (tiles 512 / 32 px)": ["--raster", str(small / "sample.tif"), "--rois",
                                                                 str(small / "sample_rois.gpkg")]}
    rows = []
    for label, inputs in models.items():
        model = work / f"classify_{args.model}_{len(rows)}.pt"
        subprocess.run([sys.executable, "-m", "engine", "-q", "train", *inputs, "--class-field", "class_id",
                        "--model", args.model, "--epochs", "1", "--device", "cpu", "--out", str(model)],
                       check=True, cwd=REPO_ROOT)
        for size in [int(s) for s in args.sizes.split(",")]:
            big = generated(work, size)
            command = [sys.executable, "-m", "engine", "-q", "classify", "--model", str(model), "--raster",
                       str(big / "sample.tif"), "--out", str(work / "classes.tif"), "--confidence",
                       str(work / "confidence.tif"), "--device", "cpu", "--threads", str(args.threads)]
            if args.model == "cssmamba":
                command += ["--clusters", str(work / "clusters.tif")]
            start = time.perf_counter()
            peak_kb = _run_measuring_peak_rss(command)
            wall = time.perf_counter() - start
            rows.append({"model": label, "raster": f"{size}x{size}x224", "megapixels": size * size / 1e6,
                         "wall_s": wall, "seconds_per_megapixel": wall / (size * size / 1e6),
                         "peak_rss_mb": peak_kb / 1024})
            print(json.dumps(rows[-1]), flush=True)
    return {"kind": "classify", "model": args.model, "rows": rows}


_HEAP_JOB = """
import json, sys, threading
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads({threads})
from engine import memory, pipeline
if {kept}:
    memory.release_free_heap = lambda: False           # the engine before: the heap stays with the process
def resident():
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return [int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")]
def job():
    if {job!r} == "train":
        pipeline.train_from_files({raster!r}, {work!r} + "/heap_model.pt", rois={rois!r}, class_field="class_id",
                                  model="cssmamba", epochs=2, device="cpu", seed=0)
    else:
        pipeline.classify_file({model!r}, {raster!r}, {work!r} + "/heap_classes.tif",
                               confidence={work!r} + "/heap_conf.tif", clusters={work!r} + "/heap_clusters.tif",
                               device="cpu")
worker = threading.Thread(target=job)                  # as QGIS runs a Processing algorithm: off the main thread
worker.start()
worker.join()
print(json.dumps(dict(zip(("rss_after_mb", "peak_rss_mb"), resident()))))
"""


def bench_heap(args: argparse.Namespace) -> Dict[str, Any]:
    work = Path(args.work)
    small, large = generated(work, 64), generated(work, 1000)
    model = work / "heap_whole64.pt"
    subprocess.run([sys.executable, "-m", "engine", "-q", "train", "--raster", str(small / "sample.tif"), "--rois",
                    str(small / "sample_rois.gpkg"), "--class-field", "class_id", "--epochs", "1", "--device", "cpu",
                    "--out", str(model)], check=True, cwd=REPO_ROOT)
    rows = []
    for job in ("train", "classify"):
        for kept in (True, False):
            code = _HEAP_JOB.format(root=str(REPO_ROOT), threads=args.threads, kept=kept, job=job,
                                    raster=str(large / "sample.tif"), rois=str(large / "sample_rois.gpkg"),
                                    work=str(work), model=str(model))
            done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
            rows.append(dict(json.loads(done.stdout.strip().splitlines()[-1]), job=job,
                             heap="kept (before)" if kept else "given back (now)"))
            print(json.dumps(rows[-1]), flush=True)
    return {"kind": "heap", "model": "cssmamba", "rows": rows}


def render(report: Dict[str, Any]) -> str:
    lines = report_header(f"Scale: {report['kind']}", report["environment"])
    rows = report["rows"]
    if report["kind"] == "train":
        lines += [f"Model {report['model']} (plugin default{', no CLIP' if report['model'] == 'm3amba' else ''}), "
                  f"30/10 split, `--sampling auto`.", "",
                  "| scene | sampling | windows | px per epoch | epoch s | estimated s | 200 epochs | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            estimate = "" if r["estimated_epoch_s"] is None else f"{r['estimated_epoch_s']:.1f}"
            lines.append(f"| {r['scene']} | {r['sampling']} | {r['windows']} | {r['window_pixels']:,} | "
                         f"{r['epoch_s']:.2f} | {estimate} | {r['projected_200_epochs_min']:.1f} min | "
                         f"{r['peak_rss_mb']:.0f} |")
        base = {r["scene"]: r["epoch_s"] for r in rows}
        names = list(base)
        if len(names) >= 3:
            lines += ["", f"Ratios: {names[2]} / {names[1]} = {base[names[2]] / base[names[1]]:.2f}; "
                          f"{names[1]} / {names[0]} = {base[names[1]] / base[names[0]]:.2f}."]
    elif report["kind"] == "stretch":
        lines += ["| scene | valid px | sample | px sampled | max limit difference (levels of 1/255) | "
                  "quantised values changed |", "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['scene']} | {r['pixels']:,} | {r['sample']:,} | {r['sampled']:,} | "
                         f"{r['max_limit_difference_levels']:.3f} | {r['changed_values_percent']:.3f} % |")
    elif report["kind"] == "heap":
        lines += ["CSSMamba (plugin default), the generated 1000 x 1000 x 224 scene; resident memory of the process "
                  "after the job (what QGIS keeps) and its peak during the job. The release comes after the peak, so "
                  "a difference in the peak is the run-to-run spread of the allocator, not its effect "
                  "(`allocator_classify.md`).", "",
                  "| job | freed heap | RSS after the job MB | peak RSS MB |", "|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['job']} | {r['heap']} | {r['rss_after_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
    else:
        lines += [f"Model {report['model']} (plugin default); class map, confidence"
                  f"{' and clusters' if report['model'] == 'cssmamba' else ''}.", "",
                  "| model | raster | wall s | s per megapixel | peak RSS MB |", "|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['model']} | {r['raster']} | {r['wall_s']:.1f} | {r['seconds_per_megapixel']:.1f} | "
                         f"{r['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    train = sub.add_parser("train", help="epoch time and peak RSS by scene size")
    train.add_argument("--epochs", type=int, default=5, help="epochs per scene (default 5)")
    train.add_argument("--model", default="cssmamba", choices=["cssmamba", "mambahsi", "m3amba"],
                       help="m3amba trains without CLIP, on MUUFL with its LiDAR and on the generated scenes with "
                            "their first band as a stand-in auxiliary raster")
    train.add_argument("--sizes", default="1000,2000", help="generated scene sizes (default 1000,2000)")
    train.add_argument("--label-tile", type=int, help="training window size on the generated scenes (default: the "
                                                      "engine's, 64 px)")
    stretch = sub.add_parser("stretch", help="stretch from the bounded sample against the full-scene fit")
    classify = sub.add_parser("classify", help="classification time and peak RSS by raster size")
    classify.add_argument("--model", default="cssmamba", choices=["cssmamba", "mambahsi"])
    classify.add_argument("--sizes", default="1000,2000", help="generated raster sizes (default 1000,2000)")
    heap = sub.add_parser("heap", help="resident memory after a training and a classification job")
    for p in (train, stretch, classify, heap):
        p.add_argument("--work", required=True, help="folder for the generated scenes (kept between runs)")
        p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
        p.add_argument("--out", help="result JSON (default bench/results/scale_<kind>.json; .md beside it)")
    args = parser.parse_args(argv)
    if args.kind == "train" and args.label_tile is not None and (args.model == "m3amba" or args.label_tile <= 0):
        parser.error("--label-tile is a size in px for cssmamba and mambahsi (m3amba's windows follow its crop)")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    report = {"train": bench_train, "stretch": bench_stretch, "classify": bench_classify,
              "heap": bench_heap}[args.kind](args)
    report["environment"] = _environment(argv)
    report["environment"]["command"] = report["environment"]["command"].replace("bench/speed.py", "bench/scale.py")
    out = Path(args.out) if args.out else RESULTS / f"scale_{args.kind}.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(render(report), encoding="utf-8")
    print(render(report))
    print(f"results: {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
