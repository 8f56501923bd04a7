#!/usr/bin/env python3
"""Multi-modal benchmark (issue 5 item 6): M3amba against CSSMamba and RF on the MUUFL crop.

Methods, all on one split per seed:

* ``m3amba``: the engine's M3amba on the HSI + the 2 LiDAR bands, **CLIP branch disabled** (the
  documented ablation ``use_clip=False``, fusion seed z₀ = 0: no CLIP weights exist on our machines),
  engine defaults (``registry.PLUGIN_DEFAULTS``: width 16, depth 2; AdamW lr 1e-3, weight decay 0.05,
  batch 16, cosine schedule; ``engine.multimodal``) unless ``--set``; crop training through
  the engine's one trainer (``engine.training.train.train_patches``, M3amba's crop recipe), best-validation epoch kept,
  whole-scene prediction with the
  averaged logits of overlapping crops (each pixel predicted once).
* ``cssmamba_hsi``: CSSMamba on the HSI alone, exactly as ``bench/accuracy.py`` runs it (its ``run_deep``,
  200 epochs by default, ``--cssmamba-epochs``).
* ``rf_hsi_lidar``: RF on the standardised HSI + LiDAR stack (66 features), tuned on the validation
  pixels exactly as ``bench/accuracy.py``'s RF (its ``run_sklearn``: 500 trees, max_features ∈ {sqrt, 0.3}).
* ``rf_hsi`` (optional, not in the default list): the same RF on the HSI alone, for the LiDAR's gain.

Split: ``fixed_count_split(scene.class_index(class_ids), seed, valid=HSI valid)``, the call of
``bench/accuracy.py``, so the splits are those of its MUUFL results. The LiDAR is warped onto the HSI
grid with the engine's ``open_aux``/``read_aux`` (bilinear; on the crop the grids coincide, so it is the
identity). The split never looks at the LiDAR: a LiDAR nodata pixel inside the HSI's valid area keeps its
place in the split and gets LiDAR value 0 (the engine's value for invalid pixels), for M3amba after
its stretch and for RF before standardising; the count of such pixels is in the report (0 on the crop).

    python bench/multimodal.py --threads 1                        # 3 methods x 5 seeds -> bench/results/
    python bench/multimodal.py --methods m3amba --seeds 1 --epochs 40 --threads 1 --out /tmp/conv.json
    python bench/multimodal.py --render --notes-file notes.md     # re-render the markdown with notes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from bench.accuracy import (DATASETS, RESULTS, RunSettings, Scene, _csv, _key, _mean_std,  # noqa: E402
                            _record, environment, load_scene, run_deep, run_sklearn, write_report)
from engine.cli import parse_overrides  # noqa: E402
from engine.data.splits import Split, fixed_count_split  # noqa: E402
from engine.precision import choose_precision  # noqa: E402

DATASET = "muufl"
LIDAR = "muufl_crop/muufl_lidar.tif"
RESAMPLING = "bilinear"
METHODS = ("m3amba", "cssmamba_hsi", "rf_hsi_lidar", "rf_hsi")
DEFAULT_METHODS = ("m3amba", "cssmamba_hsi", "rf_hsi_lidar")
TITLES = {"m3amba": "M3amba (HSI+LiDAR, no CLIP)", "cssmamba_hsi": "CSSMamba (HSI only)",
          "rf_hsi_lidar": "RF (HSI+LiDAR)", "rf_hsi": "RF (HSI only)"}
HEADS = ("hsi", "fusion", "aux")   # M3amba's M₁, M_f, M₂
CURVE_EPOCHS = (1, 2, 5, 10, 15, 20, 30, 40, 50, 60, 80, 100, 150, 200)


# ----------------------------------------------------------------------------------------------- data

def load_lidar(scene: Scene, data_dir: Path) -> Tuple[np.ndarray, np.ndarray, Dict[str, Any]]:
    """The LiDAR raster on the HSI grid: data (2, H, W) float32 in its units (0 where invalid), valid (H, W)
    and a JSON-able description."""
    from engine.data.auxiliary import open_aux, read_aux
    from engine.data.raster import open_raster

    info = open_raster(str(data_dir / DATASETS[DATASET].raster))
    aux = open_aux(str(data_dir / LIDAR), info, RESAMPLING)
    data, valid = read_aux(aux, info)
    if data.shape[1:] != scene.valid.shape:
        raise ValueError(f"LiDAR on the HSI grid is {data.shape[1:]}, the scene {scene.valid.shape}")
    meta = {"path": LIDAR, "bands": aux.bands, "resampling": RESAMPLING,
            "nodata_in_hsi_valid": int((scene.valid & ~valid).sum()),
            "labelled_nodata_in_hsi_valid": int((scene.valid & ~valid & (scene.labels > 0)).sum())}
    return data.astype(np.float32), valid, meta


def split_for(scene: Scene, class_ids: Sequence[int], seed: int) -> Split:
    """The split of bench/accuracy.py (HSI valid mask), the same for every method."""
    return fixed_count_split(scene.class_index(class_ids), seed, valid=scene.valid)


def split_digest(split: Split) -> str:
    """sha256 over the train / validation / test index maps: equal digests = identical splits."""
    digest = hashlib.sha256()
    for part in (split.train, split.validation, split.test):
        digest.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
    return digest.hexdigest()


def import_cssmamba(path: Path, scene: Scene, class_ids: Sequence[int], seeds: Sequence[int], done: set,
                    run_index: int) -> List[Dict[str, Any]]:
    """bench/accuracy.py's CSSMamba records of the MUUFL crop for ``seeds`` not yet done, as cssmamba_hsi
    records of this report. Their split is the one this script makes (same function, scene and valid mask);
    ValueError when the class list or the pixel counts of the split differ."""
    source = json.loads(path.read_text(encoding="utf-8"))
    if source.get("datasets", {}).get(DATASET, {}).get("class_ids") != list(class_ids):
        raise ValueError(f"{path} has other MUUFL classes than this scene; its splits cannot be the same")
    records = []
    for seed in seeds:
        if (DATASET, "cssmamba_hsi", None, seed) in done:
            continue
        found = [r for r in source["results"] if (r["dataset"], r["method"], r.get("variant"), r["seed"])
                 == (DATASET, "cssmamba", None, seed)]
        if not found:
            continue
        record = dict(found[-1])
        split = split_for(scene, class_ids, seed)
        counts = tuple(int((part >= 0).sum()) for part in (split.train, split.validation, split.test))
        if counts != (record["train_pixels"], record["validation_pixels"], record["test_pixels"]):
            raise ValueError(f"{path} seed {seed}: split sizes {record['train_pixels']}/{record['validation_pixels']}/"
                             f"{record['test_pixels']} differ from this script's {counts}")
        run = source["runs"][record["run"]]
        record.update(method="cssmamba_hsi", run=f"{run_index} (imported)", split_sha256=split_digest(split),
                      imported_from={"file": str(path), "run": record["run"], "command": run["command"],
                                     "started": run["started"], "epochs": run["epochs"]})
        records.append(record)
    return records


# ----------------------------------------------------------------------------------------------- M3amba

class _HeadView:
    """M3amba seen through one head: forward returns (·, head k, ·) so averaged-crop prediction reads it."""

    def __init__(self, net: Any, k: int) -> None:
        self.net, self.k, self.crop = net, k, net.crop

    def __call__(self, x_hsi: Any, x_aux: Any) -> Tuple[Any, Any, Any]:
        out = self.net(x_hsi, x_aux)
        return None, out[self.k], None

    @property
    def training(self) -> bool:
        return self.net.training

    def eval(self) -> "_HeadView":
        self.net.eval()
        return self

    def train(self, mode: bool = True) -> "_HeadView":
        self.net.train(mode)
        return self


def run_m3amba(scene: Scene, lidar: np.ndarray, lidar_valid: np.ndarray, split: Split, class_ids: Sequence[int],
               seed: int, settings: RunSettings, overrides: Dict[str, Any]) -> Dict[str, Any]:
    """Train M3amba without CLIP on the split, keep the best-validation epoch, predict the whole scene."""
    import torch

    from engine.training.crops import BATCH_SIZE, PREDICT_STRIDE, predict_at
    from engine.data.normalize import apply_stretch, fit_stretch
    from engine.models.registry import build_multimodal_model
    from engine.multimodal import LEARNING_RATE, WEIGHT_DECAY
    from engine.training.sampler import Patch, Window
    from engine.training.train import TrainConfig, seed_everything, train_patches

    valid = scene.valid
    both = valid & lidar_valid
    hsi = apply_stretch(scene.data, valid, fit_stretch(scene.data, valid))        # as run_deep's CSSMamba input
    aux = apply_stretch(lidar, both, fit_stretch(lidar, both))                     # 0 at LiDAR nodata
    seed_everything(seed)                                                          # initialisation is seeded
    net = build_multimodal_model("m3amba", scene.data.shape[0], lidar.shape[0], len(class_ids), use_clip=False,
                                 **overrides)
    config = TrainConfig(epochs=settings.epochs, lr=LEARNING_RATE, device=settings.device, seed=seed,
                         threads=settings.threads)
    progress = None
    if settings.progress:
        from bench.accuracy import _throttled_progress
        progress = _throttled_progress(f"{scene.name} m3amba seed {seed}")
    patch = Patch(Window(0, valid.shape[0], 0, valid.shape[1]), hsi, scene.data, valid, split.train, split.validation,
                  split.test, aux=aux)
    result = train_patches(net, [patch], config, progress=progress)
    device = torch.device(result.device)
    net.to(device)
    ids = np.asarray(class_ids, np.int64)
    precision = choose_precision(device, config.precision)

    def predict(model: Any) -> np.ndarray:
        return predict_at(model, hsi, aux, valid, PREDICT_STRIDE, BATCH_SIZE, device,
                          autocast=lambda: precision.autocast(device))

    started = time.perf_counter()
    index = predict(net)
    predict_seconds = time.perf_counter() - started
    predicted = np.where(index >= 0, ids[np.maximum(index, 0)], 0)
    # Diagnostics: test OA of each head of the kept model (M_f is the prediction; M₁ sees mostly the HSI
    # stream, M₂ the LiDAR stream, both fed by the fusion stream).
    test = split.test >= 0
    head_oa = {}
    for k, head in enumerate(HEADS):
        index_k = index if head == "fusion" else predict(_HeadView(net, k))
        head_oa[head] = float((index_k[test] == split.test[test]).mean())
    net.to("cpu")
    history = [{"epoch": h["epoch"], "loss": round(h["loss"], 5), "val_oa": h["val_oa"],
                "seconds": round(h["seconds"], 3)} for h in result.history]
    return _record(scene, split, class_ids, predicted, result.seconds, predict_seconds, config=dict(net.config),
                   best_epoch=result.best_epoch, epochs=settings.epochs, epochs_run=len(result.history),
                   validation_oa=result.best_val_oa, device=str(result.device), backend=result.backend,
                   threads=result.threads, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY, batch_size=BATCH_SIZE,
                   parameters=sum(p.numel() for p in net.parameters() if p.requires_grad),
                   seconds_per_epoch=result.seconds / len(result.history), head_test_oa=head_oa, history=history)


# ----------------------------------------------------------------------------------------------- report

def _groups(report: Dict[str, Any]) -> Dict[str, List[Dict[str, Any]]]:
    order = {m: i for i, m in enumerate(METHODS)}
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for record in sorted(report["results"], key=lambda r: (order.get(r["method"], 99), r["seed"])):
        groups.setdefault(record["method"], []).append(record)
    return groups


def target_lines(groups: Dict[str, List[Dict[str, Any]]]) -> List[str]:
    """Issue 5's target: M3amba mean OA ≥ CSSMamba (HSI only) + 1 pp and ≥ RF (HSI+LiDAR) + 5 pp."""
    mean = {m: 100 * float(np.mean([r["overall_accuracy"] for r in g])) for m, g in groups.items()}
    if not {"m3amba", "cssmamba_hsi", "rf_hsi_lidar"} <= mean.keys():
        return ["Target check: needs m3amba, cssmamba_hsi and rf_hsi_lidar results."]
    ok = lambda flag: "met" if flag else "**missed**"  # noqa: E731
    m, c, r = mean["m3amba"], mean["cssmamba_hsi"], mean["rf_hsi_lidar"]
    seeds = {m_: sorted(x["seed"] for x in g) for m_, g in groups.items()}
    same = "" if len({tuple(s) for s in seeds.values()}) == 1 else " (the methods have different seeds!)"
    return [f"Target check (mean OA{same}): M3amba {m:.2f} ≥ CSSMamba (HSI only) {c:.2f} + 1 = {c + 1:.2f}: "
            f"{ok(m >= c + 1)} ({m - c:+.2f} pp); M3amba ≥ RF (HSI+LiDAR) {r:.2f} + 5 = {r + 5:.2f}: "
            f"{ok(m >= r + 5)} ({m - r:+.2f} pp)."]


def render_markdown(report: Dict[str, Any]) -> str:
    info = report["datasets"].get(DATASET)
    lines = ["# Multi-modal benchmark: MUUFL crop (HSI + LiDAR)", "", "Produced by (run index, command, device):", ""]
    for i, run in enumerate(report["runs"]):
        lines.append(f"{i}. `{run['command']}`  \n   {run['started']}, {run['device']}, {run['threads']} thread(s), "
                     f"torch {run['torch']}, scikit-learn {run['scikit-learn']}, M3amba epochs {run['epochs']}, "
                     f"CSSMamba epochs {run.get('cssmamba_epochs')}, RF trees {run.get('rf_trees')}, "
                     f"M3amba overrides {json.dumps(run['overrides'])}")
    lines += ["", "Protocol: per seed one 30/10 split per class (15 train at ≤ 30 px, the rest test) from "
              "`fixed_count_split` on the HSI's valid mask, exactly as `bench/accuracy.py`; every method gets "
              "the same split (its sha256 is in each JSON record). OA / AA / κ in % on the test pixels, mean ± std "
              "(ddof 0) over the seeds. **M3amba runs without its CLIP branch** (the documented ablation "
              "`use_clip=False`, fusion seed z₀ = 0: no CLIP ViT-B/32 weights exist on our machines), engine "
              "defaults unless overridden; best-validation epoch kept; whole-scene prediction by averaged "
              "logits of overlapping 32 px crops (stride 16). CSSMamba: `bench/accuracy.py`'s `run_deep` on "
              "the HSI only. RF: standardised features (scaler on the training pixels), 500 trees, "
              "max_features ∈ {sqrt, 0.3} tuned on the validation pixels. Train time includes per-epoch "
              "validation (deep) or the grid search (RF); predict time is the whole scene.", ""]
    if info:
        lidar = info.get("lidar", {})
        lines += [f"{info['shape'][0]} HSI bands + {lidar.get('bands', '?')} LiDAR bands ({lidar.get('path')}, "
                  f"{lidar.get('resampling')} onto the HSI grid), {info['shape'][1]} × {info['shape'][2]} px, "
                  f"{len(info['class_ids'])} classes, {info['labelled_pixels']:,} labelled px; LiDAR nodata "
                  f"pixels inside the HSI's valid area: {lidar.get('nodata_in_hsi_valid')}.", ""]
    groups = _groups(report)
    lines += ["| method | seeds | OA | AA | κ | train s | predict s | epochs (mean best) | run |",
              "|---|---|---|---|---|---|---|---|---|"]
    for method, group in groups.items():
        epochs = "–"
        if group[0].get("epochs"):
            epochs = f"{group[0]['epochs']} ({np.mean([r['best_epoch'] for r in group]):.0f})"
        lines.append(f"| {TITLES.get(method, method)} | {len(group)} | "
                     f"{_mean_std([r['overall_accuracy'] for r in group])} | "
                     f"{_mean_std([r['average_accuracy'] for r in group])} | "
                     f"{_mean_std([r['kappa'] for r in group])} | "
                     f"{_mean_std([r['train_seconds'] for r in group], 1.0, 1)} | "
                     f"{_mean_std([r['predict_seconds'] for r in group], 1.0, 2)} | {epochs} | "
                     f"{', '.join(sorted({str(r['run']) for r in group}))} |")
    for method, group in groups.items():
        imported = [r for r in group if r.get("imported_from")]
        if imported:
            src = imported[0]["imported_from"]
            lines += ["", f"{TITLES.get(method, method)}: seed(s) {', '.join(str(r['seed']) for r in imported)} "
                      f"imported from `{src['file']}` (its run {src['run']}: `{src['command']}`, {src['started']}, "
                      f"{src['epochs']} epochs); same split function, scene and valid mask (split sizes checked)."]
    lines += ["", *target_lines(groups), ""]
    if info:
        lines += ["Per-class accuracy (producer's, %, mean ± std):", "",
                  "| class | " + " | ".join(TITLES.get(m, m) for m in groups) + " |", "|---" * (len(groups) + 1) + "|"]
        for cid, cname in zip(info["class_ids"], info["class_names"]):
            cells = [_mean_std([r["per_class"].get(str(cid)) for r in g]) for g in groups.values()]
            lines.append(f"| {cid} {cname} | " + " | ".join(cells) + " |")
        lines.append("")
    m3 = groups.get("m3amba")
    if m3:
        lines += ["Per seed (OA %): " + "; ".join(
            f"{TITLES.get(m, m)} " + ", ".join(f"s{r['seed']} {100 * r['overall_accuracy']:.2f}" for r in g)
            for m, g in groups.items()), ""]
        lines += ["M3amba, test OA of each head of the kept model (%, mean ± std; the prediction is the fusion "
                  "head M_f):", "", "| M₁ (HSI stream) | M_f (fusion) | M₂ (LiDAR stream) |", "|---|---|---|",
                  "| " + " | ".join(_mean_std([r["head_test_oa"][h] for r in m3]) for h in HEADS) + " |", ""]
        last = max(r["epochs_run"] for r in m3)
        marks = [e for e in CURVE_EPOCHS if e <= last] + ([last] if last not in CURVE_EPOCHS else [])
        lines += ["M3amba convergence: validation OA (%, mean over the seeds, at each epoch of the run) and "
                  "training loss:", "", "| epoch | " + " | ".join(map(str, marks)) + " |",
                  "|---" * (len(marks) + 1) + "|"]
        for key, scale in (("val_oa", 100.0), ("loss", 1.0)):
            cells = []
            for e in marks:
                values = [h[key] for r in m3 for h in r["history"] if h["epoch"] == e]
                cells.append(f"{scale * np.mean(values):.2f}" if values else "–")
            lines.append(f"| {'val OA' if key == 'val_oa' else 'loss'} | " + " | ".join(cells) + " |")
        best = ", ".join(f"s{r['seed']} {r['best_epoch']}" for r in m3)
        lines += ["", f"Best epochs: {best}; seconds per epoch "
                  f"(incl. validation): {_mean_std([r['seconds_per_epoch'] for r in m3], 1.0, 1)}; trainable "
                  f"parameters {m3[0]['parameters']:,}.", ""]
    if report.get("notes"):
        lines += ["## Notes", "", report["notes"].rstrip(), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- driver

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/multimodal.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data"),
                        help="shared data folder (default ../shared/data)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma list of {', '.join(METHODS)} (default {','.join(DEFAULT_METHODS)})")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one (default 0)")
    parser.add_argument("--epochs", type=int, help="M3amba epochs (default: the engine's, 100)")
    parser.add_argument("--cssmamba-epochs", type=int, default=200,
                        help="CSSMamba epochs (default 200, as accuracy.py)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="deep-model device")
    parser.add_argument("--threads", type=int, default=2, help="torch threads and scikit-learn jobs (default 2)")
    parser.add_argument("--rf-trees", type=int, default=500, help="trees of the random forest (default 500)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="M3amba config override (repeatable)")
    parser.add_argument("--out", help="result JSON (.md beside it; default bench/results/multimodal_muufl.json)")
    parser.add_argument("--resume", action="store_true", help="keep the runs --out already holds, run the rest")
    parser.add_argument("--time-limit", type=float, help="start no new run after this many seconds")
    parser.add_argument("--import-cssmamba", metavar="JSON",
                        help="take the CSSMamba MUUFL records of a bench/accuracy.py result file (e.g. "
                             "bench/results/accuracy.json) for the seeds that have no cssmamba_hsi record yet, "
                             "instead of training them (their split is checked against this script's)")
    parser.add_argument("--notes-file", help="markdown put under 'Notes' in the report (kept in the JSON)")
    parser.add_argument("--render", action="store_true",
                        help="only re-render the markdown of --out (with --notes-file)")
    parser.add_argument("--progress", action="store_true", help="print deep-model training progress")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        return _main(args, argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace, argv: List[str]) -> int:
    out = Path(args.out) if args.out else RESULTS / "multimodal_muufl.json"
    notes = Path(args.notes_file).read_text(encoding="utf-8") if args.notes_file else None
    if args.render:
        report = json.loads(out.read_text(encoding="utf-8"))
        if notes is not None:
            report["notes"] = notes
        write_report(report, out, render_markdown)
        print(f"rendered {out.with_suffix('.md')}")
        return 0
    methods = _csv(args.methods, METHODS, "method")
    overrides = parse_overrides(args.set)
    from engine.models.registry import default_config
    from engine.multimodal import EPOCHS

    unknown = sorted(set(overrides) - set(default_config("m3amba")) | ({"use_clip", "clip"} & set(overrides)))
    if unknown:
        raise ValueError(f"--set {', '.join(unknown)}: not an M3amba option here (the CLIP branch is always off)")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        return _run(args, argv, methods, overrides, args.epochs or EPOCHS, out, notes)


def _run(args: argparse.Namespace, argv: List[str], methods: List[str], overrides: Dict[str, Any], epochs: int,
         out: Path, notes: Optional[str]) -> int:
    m3_settings = RunSettings(epochs=epochs, device=args.device, threads=args.threads, rf_trees=args.rf_trees,
                              overrides=overrides, progress=args.progress)
    css_settings = replace(m3_settings, epochs=args.cssmamba_epochs, overrides={})
    report: Dict[str, Any] = {"benchmark": "multimodal", "runs": [], "datasets": {}, "results": []}
    if args.resume and out.is_file():
        report = json.loads(out.read_text(encoding="utf-8"))
    if notes is not None:
        report["notes"] = notes
    run_index = len(report["runs"])
    run = environment(m3_settings, argv, f"GDAL {args.data}", script="bench/multimodal.py")
    run["cssmamba_epochs"] = args.cssmamba_epochs
    report["runs"].append(run)
    done = {_key(r) for r in report["results"]}
    data_dir = Path(args.data)
    scene = load_scene(DATASETS[DATASET], data_dir)
    lidar, lidar_valid, lidar_meta = load_lidar(scene, data_dir)
    class_ids, class_names = scene.usable_classes()
    report["datasets"][DATASET] = {"title": "MUUFL Gulfport crop, HSI + LiDAR", "shape": scene.meta["shape"],
                                   "class_ids": class_ids, "class_names": class_names,
                                   "labelled_pixels": int(np.isin(scene.labels, class_ids).sum()), "lidar": lidar_meta}
    stacked = replace(scene, data=np.concatenate([scene.data, lidar]))
    if args.import_cssmamba:
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        for record in import_cssmamba(Path(args.import_cssmamba), scene, class_ids, seeds, done, run_index):
            report["results"].append(record)
            done.add(_key(record))
            print(f"{TITLES['cssmamba_hsi']:<28} seed {record['seed']}: OA {100 * record['overall_accuracy']:6.2f}  "
                  f"imported from {args.import_cssmamba} (its run {record['imported_from']['run']})")
        write_report(report, out, render_markdown)
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        split = split_for(scene, class_ids, seed)
        digest = split_digest(split)
        for method in methods:
            if (DATASET, method, None, seed) in done:
                continue
            if args.time_limit and time.perf_counter() - started > args.time_limit:
                print(f"time limit of {args.time_limit:.0f} s reached; the remaining runs are left for --resume",
                      file=sys.stderr)
                write_report(report, out, render_markdown)
                return 0
            if method == "m3amba":
                record = run_m3amba(scene, lidar, lidar_valid, split, class_ids, seed, m3_settings, overrides)
            elif method == "cssmamba_hsi":
                record = run_deep("cssmamba", scene, split, class_ids, seed, css_settings, {})
            else:
                record = run_sklearn("rf", stacked if method == "rf_hsi_lidar" else scene, split, class_ids, seed,
                                     m3_settings)
                record["features"] = int((stacked if method == "rf_hsi_lidar" else scene).data.shape[0])
            record = dict(dataset=DATASET, method=method, variant=None, seed=seed, run=run_index,
                          split_sha256=digest, **record)
            report["results"].append(record)
            write_report(report, out, render_markdown)
            print(f"{TITLES[method]:<28} seed {seed}: OA {100 * record['overall_accuracy']:6.2f}  "
                  f"AA {100 * record['average_accuracy']:6.2f}  kappa {100 * record['kappa']:6.2f}  "
                  f"train {record['train_seconds']:7.1f} s  predict {record['predict_seconds']:6.2f} s", flush=True)
    write_report(report, out, render_markdown)
    print(render_markdown(report).split("\n## Notes")[0])
    print(f"results: {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
