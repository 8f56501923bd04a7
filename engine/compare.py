"""Compare models: train several on the same ROIs and split, classify the scene with each, one report.

What an analyst does before trusting a new classifier, in one run: the chosen models (default random
forest, SVM, MambaHSI and CSSMamba) each go through ``pipeline.train_from_files`` with the same seed and
split options, so every model sees the same training, validation and test pixels (the split depends
on the labels, the nodata mask and the seed only), then ``classify_file`` maps the whole raster. The
HTML report holds a table of OA / AA / κ with training and prediction times, per-class accuracy, each
model's test confusion matrix, and the class maps side by side as small PNG images embedded in the
page (GDAL's PNG driver keeps the colour table). Every model's file and class map stay in the output
folder. A cancel stops at the model in progress, which leaves no half-written file (its model file when
the cancel came while it classified), the models finished before it stay, and no report is written.
"""

from __future__ import annotations

import base64
import os
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from osgeo import gdal

from .models.registry import CLASSICAL_NAMES, MODEL_NAMES
from .paths import check_distinct, write_text_atomic
from .pipeline import SplitOptions, classify_file, phase_progress, train_from_files
from .report import comparison_report_html

__all__ = ["COMPARE_DEFAULT", "COMPARABLE", "compare_models"]

gdal.UseExceptions()

COMPARE_DEFAULT = ("rf", "svm", "mambahsi", "cssmamba")
COMPARABLE = CLASSICAL_NAMES + MODEL_NAMES
THUMBNAIL_PX = 256          # longest side of the class-map images in the report
Progress = Callable[..., None]


def compare_models(raster: str, out_dir: str, models: Sequence[str] = COMPARE_DEFAULT,
                   labels: Optional[str] = None, rois: Optional[str] = None, class_field: Optional[str] = None,
                   name_field: Optional[str] = None, split: Optional[SplitOptions] = None, seed: int = 0,
                   epochs: int = 200, device: str = "auto", threads: Optional[int] = None,
                   bands: Optional[List[int]] = None, class_style: Optional[Dict[int, Any]] = None,
                   progress: Optional[Progress] = None,
                   cancelled: Optional[Callable[[], bool]] = None) -> Dict[str, Any]:
    """Train and apply every model of ``models`` on the same split; returns {report, models: [...]} with
    each model's metrics, times and files, and writes ``out_dir``/compare.html. ValueError before any
    work for fewer than two models, an unknown or repeated one, or outputs that would overwrite inputs."""
    models = [m.strip().lower() for m in models]
    unknown = sorted(set(models) - set(COMPARABLE))
    if unknown:
        raise ValueError(f"cannot compare {', '.join(unknown)}: choose among {', '.join(COMPARABLE)} "
                         "(M3amba needs auxiliary rasters; train it with its own tool)")
    if len(models) < 2 or len(set(models)) != len(models):
        raise ValueError(f"a comparison needs at least two different models, got {', '.join(models) or 'none'}; "
                         f"e.g. {', '.join(COMPARE_DEFAULT)}")
    os.makedirs(out_dir, exist_ok=True)
    files = {m: (os.path.join(out_dir, f"{m}.pt"), os.path.join(out_dir, f"{m}_classes.tif")) for m in models}
    report_path = os.path.join(out_dir, "compare.html")
    check_distinct({"raster": raster, "label raster": labels, "ROI file": rois},
                   {**{f"{m} model file": f[0] for m, f in files.items()},
                    **{f"{m} class map": f[1] for m, f in files.items()}, "report": report_path})
    split = split or SplitOptions()
    rows = []
    for k, model in enumerate(models):
        step = phase_progress(progress, k / len(models), (k + 1) / len(models))
        train = phase_progress(step, 0.0, 0.8)
        model_file, class_map = files[model]
        started = time.perf_counter()
        metadata, result = train_from_files(
            raster, model_file, labels=labels, rois=rois, class_field=class_field, name_field=name_field,
            model=model, epochs=1 if model in CLASSICAL_NAMES else epochs, device=device, seed=seed, bands=bands,
            split=split, threads=threads, class_style=class_style,
            progress=lambda fraction, text="", m=model: train(fraction, f"{m}: {text}" if text else ""),
            cancelled=cancelled)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        classify_file(model_file, raster, class_map, device=device, threads=threads, bands=bands,
                      progress=phase_progress(step, 0.8, 1.0), cancelled=cancelled)
        predict_seconds = time.perf_counter() - started
        provenance = metadata["provenance"]
        rows.append({"model": model, "model_file": model_file, "class_map": class_map,
                     "metrics": provenance["metrics"], "evaluated_on": provenance["evaluated_on"],
                     "split": provenance["split"], "train_seconds": train_seconds,
                     "predict_seconds": predict_seconds, "best_epoch": result.best_epoch,
                     "config": metadata["model"]["config"], "classes": metadata["classes"]})
    comparison = {"raster": os.path.abspath(raster), "reference": os.path.abspath(labels or rois or ""),
                  "seed": seed, "models": rows}
    thumbnails = {r["model"]: _thumbnail(r["class_map"]) for r in rows}
    write_text_atomic(report_path, comparison_report_html(comparison, thumbnails), "comparison report")
    comparison["report"] = report_path
    return comparison


def _thumbnail(class_map: str) -> str:
    """The class map as a PNG data URI (its colour table kept), THUMBNAIL_PX on its longest side (pixels
    repeated or skipped, never blended)."""
    source = gdal.Open(class_map)
    scale = THUMBNAIL_PX / max(source.RasterXSize, source.RasterYSize)
    size = (max(1, round(source.RasterXSize * scale)), max(1, round(source.RasterYSize * scale)))
    handle, path = tempfile.mkstemp(suffix=".png")
    os.close(handle)
    try:
        gdal.Translate(path, source, format="PNG", width=size[0], height=size[1], resampleAlg="nearest")
        with open(path, "rb") as png:
            return "data:image/png;base64," + base64.b64encode(png.read()).decode("ascii")
    finally:
        for leftover in (path, path + ".aux.xml"):
            if os.path.exists(leftover):
                os.remove(leftover)
