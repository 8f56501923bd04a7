"""Self-contained reports of a training run and of an accuracy assessment: HTML, CSV and JSON.

Pure Python (no QGIS, no matplotlib, no torch) so that the toolbox, the CLI and CI can all write
them: one HTML file with its CSS in a ``<style>`` block and its charts as inline SVG opens in any
browser and can be mailed or archived alone. Everything that comes from the user or the data (class
names, paths, parameter values) is HTML-escaped.

Inputs are the engine's own formats: ``metrics.Accuracy.as_dict`` (plus "prediction"/"reference"
from ``evaluation.evaluate_files``), the model metadata of ``pipeline.train_from_files`` and
``TrainResult.history``. Confusion matrices have the reference (truth) in rows and the prediction
in columns; class id -1 is "unclassified" (reference pixels the class map left empty).

CSV layout of ``write_accuracy_tables`` (one rectangular table, readable by ``csv.DictReader`` and
spreadsheets): one row per class of the matrix, in matrix order, with the columns

    class_id, class_name, reference_pixels, predicted_pixels, producers_accuracy, users_accuracy, f1,
    predicted_<id> ... (one per matrix column: that reference class's row of the confusion matrix)

then a last row with class_name "total" holding the column sums (the matrix's column totals and
the number of assessed pixels). Accuracies are fractions 0-1; an empty cell means undefined (a
class without reference pixels has no producer's accuracy, a class never predicted no user's
accuracy). OA, AA and kappa are in the JSON and the HTML report.
"""

import csv
import html as _html
import io
import json
import math
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .paths import write_text_atomic

Point = Tuple[float, float]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.8em;
     border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td.text, th.text { text-align: left; }
table.kv td:first-child { text-align: left; font-weight: 600; background: #fafafa; }
table.kv td { text-align: left; }
td.diag { font-weight: 700; } td.total, th.total { background: #f2f2f2; font-weight: 600; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #666;
          vertical-align: middle; margin-right: 0.4em; }
.metrics { display: flex; gap: 1em; flex-wrap: wrap; margin: 0.8em 0; }
.metric { border: 1px solid #d0d0d0; border-radius: 6px; padding: 0.5em 1em; min-width: 9em; }
.metric .value { font-size: 1.6em; font-weight: 700; } .metric .label { color: #555; font-size: 0.85em; }
.note { color: #555; font-size: 0.9em; } code { background: #f4f4f4; padding: 0 0.2em; word-break: break-all; }
svg text { font-family: inherit; }
"""


# ------------------------------------------------------------------------------------------------
# Formatting


def _esc(value: Any) -> str:
    return _html.escape(str(value), quote=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pct(value: Any) -> str:
    """A fraction 0-1 as a percentage; "–" where it is undefined (None or NaN)."""
    return f"{100.0 * value:.2f} %" if _is_number(value) else "–"


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if _is_number(value) else "–"


def _value_text(value: Any) -> str:
    """Parameter values for a key/value table: lists and dicts as compact JSON, the rest as text."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return "–" if value is None else str(value)


def _kv_table(rows: Iterable[Tuple[str, Any]]) -> str:
    body = "".join(f"<tr><td>{_esc(key)}</td><td>{_esc(_value_text(value))}</td></tr>" for key, value in rows)
    return f'<table class="kv">{body}</table>'


def _page(title: str, sections: Sequence[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{_esc(title)}</h1>\n" + "\n".join(sections) + "\n</body></html>\n")


def _metric_boxes(result: Dict[str, Any]) -> str:
    boxes = [("Overall accuracy (OA)", _pct(result.get("overall_accuracy"))),
             ("Average accuracy (AA)", _pct(result.get("average_accuracy"))),
             ("Cohen's kappa (κ)", _num(result.get("kappa"))),
             ("Assessed pixels", f"{int(result.get('pixels', 0)):,}")]
    return '<div class="metrics">' + "".join(
        f'<div class="metric"><div class="value">{_esc(value)}</div><div class="label">{_esc(label)}</div></div>'
        for label, value in boxes) + "</div>"


def _swatch(color: Optional[Sequence[int]]) -> str:
    if not color:
        return ""
    r, g, b = (int(c) for c in color[:3])
    return f'<span class="swatch" style="background: rgb({r},{g},{b})"></span>'


def _class_label(entry: Dict[str, Any]) -> str:
    return f"{entry['id']} {entry['name']}"


# ------------------------------------------------------------------------------------------------
# Tables shared by both reports


def _confusion_table(result: Dict[str, Any]) -> str:
    """The matrix with class names, row (reference) and column (prediction) totals, diagonal in bold."""
    classes, matrix = result["classes"], result["confusion_matrix"]
    column_totals = [sum(row[j] for row in matrix) for j in range(len(classes))]
    head = "".join(f"<th>{_esc(_class_label(c))}</th>" for c in classes)
    rows = []
    for i, (entry, row) in enumerate(zip(classes, matrix)):
        total = sum(row)
        cells = []
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            shade = f' style="background: rgba(40,110,200,{0.08 + 0.5 * share:.3f})"' if count else ""
            cells.append(f'<td class="{"diag" if i == j else ""}"{shade}>{count:,}</td>')
        rows.append(f'<tr><th class="text">{_esc(_class_label(entry))}</th>{"".join(cells)}'
                    f'<td class="total">{total:,}</td></tr>')
    totals = "".join(f'<td class="total">{n:,}</td>' for n in column_totals)
    return ('<table class="confusion"><tr><th class="text">reference ↓ / prediction →</th>'
            f'{head}<th class="total">total</th></tr>{"".join(rows)}'
            f'<tr><th class="text total">total</th>{totals}<td class="total">{sum(column_totals):,}</td></tr>'
            "</table>")


def _per_class_table(result: Dict[str, Any], colors: Optional[Dict[int, Sequence[int]]] = None,
                     split_counts: Optional[Dict[int, Tuple[int, int, int]]] = None) -> str:
    """PA / UA / F1 per class; with ``split_counts`` also the pixels used for train / validation / test."""
    extra_head = "<th>train px</th><th>validation px</th><th>test px</th>" if split_counts else ""
    rows = []
    for entry in result["classes"]:
        extra = ""
        if split_counts:
            counts = split_counts.get(int(entry["id"]))
            extra = "".join(f"<td>{n:,}</td>" for n in counts) if counts else "<td>–</td>" * 3
        rows.append(
            f'<tr><td>{_esc(entry["id"])}</td><td class="text">{_swatch((colors or {}).get(int(entry["id"])))}'
            f'{_esc(entry["name"])}</td>{extra}<td>{int(entry["reference_pixels"]):,}</td>'
            f'<td>{_pct(entry["producers_accuracy"])}</td><td>{_pct(entry["users_accuracy"])}</td>'
            f'<td>{_pct(entry["f1"])}</td></tr>')
    return ('<table class="perclass"><tr><th>id</th><th class="text">class</th>'
            f'{extra_head}<th>reference px</th><th>producer\'s acc. (PA)</th><th>user\'s acc. (UA)</th>'
            f'<th>F1</th></tr>{"".join(rows)}</table>'
            '<p class="note">PA (recall): share of a class\'s reference pixels classified as that class. '
            "UA (precision): share of the pixels classified as a class that are that class. "
            "– : undefined (no reference pixel, or never predicted).</p>")


def _accuracy_sections(result: Dict[str, Any], colors: Optional[Dict[int, Sequence[int]]] = None,
                       split_counts: Optional[Dict[int, Tuple[int, int, int]]] = None) -> List[str]:
    unclassified = any(int(c["id"]) == -1 for c in result["classes"])
    note = ('<p class="note">Class -1 “unclassified”: reference pixels the class map left empty (0); '
            "they count as errors.</p>") if unclassified else ""
    return [_metric_boxes(result),
            "<h3>Confusion matrix</h3>" + _confusion_table(result) + note,
            "<h3>Per class</h3>" + _per_class_table(result, colors, split_counts)]


# ------------------------------------------------------------------------------------------------
# SVG line charts


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10.0 * magnitude


def _ticks(low: float, high: float, count: int = 5) -> List[float]:
    step = _nice_step(high - low, count)
    first = math.ceil(low / step - 1e-9) * step
    return [first + k * step for k in range(int((high - first) / step + 1e-9) + 1)]


def _segments(points: Sequence[Tuple[float, Any]]) -> List[List[Point]]:
    """Runs of consecutive finite points: an undefined value (no validation pixels) breaks the line."""
    runs: List[List[Point]] = [[]]
    for x, y in points:
        if _is_number(y):
            runs[-1].append((float(x), float(y)))
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def line_chart_svg(title: str, series: Sequence[Tuple[str, str, Sequence[Tuple[float, Any]]]],
                   y_label: str, marker: Optional[Tuple[float, str]] = None,
                   y_range: Optional[Tuple[float, float]] = None, percent: bool = False) -> str:
    """An inline SVG line chart of ``series`` = [(label, colour, [(x, y), ...])] with a legend.

    ``marker`` = (x, text) draws a dashed vertical line (the best epoch); ``y_range`` fixes the y
    axis (validation OA: 0-1), otherwise it spans the data; ``percent`` labels y ticks as %.
    """
    width, height, left, right, top, bottom = 680, 300, 62, 20, 34, 46
    runs = [(label, color, _segments(points)) for label, color, points in series]
    xs = [p[0] for _, _, segs in runs for seg in segs for p in seg] + ([marker[0]] if marker else [])
    ys = [p[1] for _, _, segs in runs for seg in segs for p in seg]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">',
             f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="600">'
             f'{_esc(title)}</text>']
    if not ys:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#777">no values</text>')
        return "".join(parts) + "</svg>"
    x_low, x_high = min(xs), max(xs)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    y_low, y_high = y_range or (min(ys), max(ys))
    if y_high == y_low:
        y_low, y_high = y_low - 0.5 * (abs(y_low) or 1), y_high + 0.5 * (abs(y_high) or 1)
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * plot_w

    def sy(y: float) -> float:
        return top + (1 - (y - y_low) / (y_high - y_low)) * plot_h

    for y in _ticks(y_low, y_high):
        text = f"{100 * y:g} %" if percent else f"{y:.4g}"
        parts.append(f'<line x1="{left}" y1="{sy(y):.1f}" x2="{left + plot_w}" y2="{sy(y):.1f}" stroke="#e3e3e3"/>'
                     f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" font-size="11">{text}</text>')
    for x in _ticks(x_low, x_high, 8):
        if abs(x - round(x)) < 1e-9:  # epochs are whole numbers
            parts.append(f'<line x1="{sx(x):.1f}" y1="{top + plot_h}" x2="{sx(x):.1f}" y2="{top + plot_h + 4}" '
                         f'stroke="#444"/><text x="{sx(x):.1f}" y="{top + plot_h + 17}" text-anchor="middle" '
                         f'font-size="11">{int(round(x))}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>'
                 f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle" font-size="12">epoch</text>'
                 f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" font-size="12" '
                 f'transform="rotate(-90 14 {top + plot_h / 2})">{_esc(y_label)}</text>')
    if marker:
        mx = sx(marker[0])
        right_half = mx > left + plot_w / 2  # label on the side with room
        parts.append(f'<line class="best" x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + plot_h}" '
                     f'stroke="#d62728" stroke-dasharray="5,4"/><text x="{mx - 4 if right_half else mx + 4:.1f}" '
                     f'y="{top + plot_h - 8}" text-anchor="{"end" if right_half else "start"}" font-size="11" '
                     f'fill="#d62728">{_esc(marker[1])}</text>')
    for index, (label, color, segs) in enumerate(runs):
        for seg in segs:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in seg)
            parts.append(f'<polyline class="series" points="{path}" fill="none" stroke="{_esc(color)}" '
                         'stroke-width="2"/>')
            if len(seg) <= 60:
                parts.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{_esc(color)}"/>'
                             for x, y in seg)
        ly = top + 14 + 16 * index
        parts.append(f'<line x1="{left + plot_w - 150}" y1="{ly - 4}" x2="{left + plot_w - 128}" y2="{ly - 4}" '
                     f'stroke="{_esc(color)}" stroke-width="2"/><text x="{left + plot_w - 122}" y="{ly}" '
                     f'font-size="11">{_esc(label)}</text>')
    return "".join(parts) + "</svg>"


# ------------------------------------------------------------------------------------------------
# Reports


def training_report_html(metadata: Dict[str, Any], history: List[Dict[str, Any]],
                         parameters: Dict[str, Any]) -> str:
    """The HTML report of a training run: what was trained on what, how training went, how good it is.

    ``metadata``: the model metadata of ``train_from_files`` (a multi-modal model's auxiliary rasters
    and CLIP file join the summary); ``history``: ``TrainResult.history``;
    ``parameters``: the run's parameters as the user gave them (shown as given, escaped).
    """
    provenance = metadata.get("provenance", {})
    classes = metadata.get("classes", {})
    model = metadata.get("model", {})
    ids = [int(i) for i in classes.get("ids", [])]
    colors = dict(zip(ids, classes.get("colors", [])))
    split = provenance.get("split", {})
    counts = split.get("counts", {})
    split_counts = {cid: tuple(int(counts.get(part, [0] * len(ids))[k]) for part in ("train", "validation", "test"))
                    for k, cid in enumerate(ids)} if counts else None
    best_epoch = provenance.get("best_epoch")
    best_oa = provenance.get("best_validation_oa")
    marker = (float(best_epoch), f"best epoch {best_epoch}") if _is_number(best_epoch) else None

    summary = _kv_table([
        ("model", model.get("name")), ("raster", provenance.get("raster")), *_modality_rows(metadata),
        ("reference", provenance.get("labels") or provenance.get("rois")),
        ("class field", provenance.get("class_field")),
        ("bands used", len(metadata.get("bands", {}).get("indices", [])) or None),
        ("classes", len(ids)), ("epochs run / requested", f"{provenance.get('epochs_run')} / {provenance.get('epochs')}"),
        ("best epoch (kept model)", best_epoch), ("best validation OA", _pct(best_oa)),
        ("device", provenance.get("device")), ("backend", provenance.get("backend")),
        ("threads", provenance.get("threads")),
    ])
    losses = [("training loss", "#1f77b4", [(h["epoch"], h.get("loss")) for h in history])]
    if any(_is_number(h.get("aux_loss")) and h.get("aux_loss") for h in history):
        losses.append(("clustering loss", "#ff7f0e", [(h["epoch"], h.get("aux_loss")) for h in history]))
    highest = max([y for _, _, points in losses for _, y in points if _is_number(y)], default=1.0)
    curves = (line_chart_svg("Training loss per epoch", losses, "loss", marker, y_range=(0.0, highest)) + "<br>"
              + line_chart_svg("Validation overall accuracy per epoch",
                               [("validation OA", "#2ca02c", [(h["epoch"], h.get("val_oa")) for h in history])],
                               "validation OA", marker, y_range=(0.0, 1.0), percent=True))
    metrics = provenance.get("metrics")
    evaluated_on = provenance.get("evaluated_on", "test")
    if metrics:
        assessment = (f'<p class="note">Accuracy of the kept model on the {_esc(evaluated_on)} pixels '
                      "(never used for training or for choosing the epoch"
                      + (")." if evaluated_on == "test" else "; there were no test pixels, so these are the "
                         "validation pixels that chose the epoch and the figures are optimistic).") + "</p>"
                      + "".join(_accuracy_sections(metrics, colors, split_counts)))
    else:
        assessment = '<p class="note">No accuracy assessment was recorded for this model.</p>'
    seconds = [h["seconds"] for h in history if _is_number(h.get("seconds"))]
    timings = _kv_table([
        ("started", provenance.get("started")), ("model written", provenance.get("created")),
        ("training time", f"{provenance['train_seconds']:.1f} s" if _is_number(provenance.get("train_seconds"))
         else None),
        ("mean time per epoch", f"{sum(seconds) / len(seconds):.2f} s" if seconds else None),
    ])
    split_rows = [(key, value) for key, value in split.items() if key != "counts"]
    return _page(f"Training report: {model.get('name', 'model')}", [
        "<h2>Summary</h2>" + summary,
        "<h2>Training curves</h2>" + curves,
        f"<h2>Accuracy ({_esc(evaluated_on)} pixels)</h2>" + assessment,
        "<h2>Parameters of the run</h2>" + _kv_table(sorted(parameters.items())),
        "<h2>Sample split</h2>" + _kv_table(split_rows),
        "<h2>Model configuration</h2>" + _kv_table(sorted(model.get("config", {}).items())),
        "<h2>Timings</h2>" + timings,
        "<h2>Software</h2>" + _kv_table(sorted(provenance.get("software", {}).items())),
    ])


def _modality_rows(metadata: Dict[str, Any]) -> List[Tuple[str, Any]]:
    """Summary rows of a multi-modal model (modelfile.py 'modalities', 'clip'); none for the others."""
    modalities = metadata.get("modalities")
    if not modalities:
        return []
    aux = "; ".join(f"{m['path']} ({m['bands']} band(s), {m['resampling']})" for m in modalities[1:])
    clip = metadata.get("clip")
    encoder = (f"{clip['known_as'] or clip['path']} (sha256 {clip['sha256']})" if clip
               else "not used (the ablation without the CLIP branch)")
    return [("auxiliary rasters, in order", aux), ("CLIP image encoder", encoder)]


def accuracy_report_html(result: Dict[str, Any], title: str = "Accuracy assessment") -> str:
    """The HTML report of ``evaluate_files``' result: OA, AA, κ, the confusion matrix, PA/UA/F1 per class,
    and the area-adjusted estimates (engine/area.py) when the result has them."""
    sources = _kv_table([("classification", result.get("prediction")), ("reference", result.get("reference"))])
    sections = ["<h2>Inputs</h2>" + sources, "<h2>Accuracy</h2>" + "".join(_accuracy_sections(result))]
    if result.get("area_adjusted"):
        sections.append(_area_section(result["area_adjusted"]))
    return _page(title, sections)


def _with_ci(value: Any, half_width: Any, percent: bool = True, digits: int = 0) -> str:
    """'93.10 ± 2.40 %' or '21,158 ± 6,158'; '–' where undefined, no '±' where the interval is."""
    if not _is_number(value):
        return "–"
    text = (lambda v: f"{100 * v:.2f}") if percent else (lambda v: f"{v:,.{digits}f}")
    tail = f" ± {text(half_width)}" if _is_number(half_width) else ""
    return f"{text(value)}{tail}{' %' if percent else ''}"


def _area_section(area: Dict[str, Any]) -> str:
    """Olofsson et al. (2014): accuracies and class areas weighted by the map's class areas, 95 % intervals."""
    hectares = area.get("pixel_area_m2") is not None
    unit = "ha" if hectares else "px"
    rows = []
    for entry in area["classes"]:
        mapped = entry["mapped_area_ha"] if hectares else entry["mapped_pixels"]
        estimate, ci = (entry["area_ha"], entry["area_ha_ci95"]) if hectares else (entry["area_pixels"],
                                                                                    entry["area_pixels_ci95"])
        rows.append(f'<tr><td>{_esc(entry["id"])}</td><td class="text">{_esc(entry["name"])}</td>'
                    f'<td>{entry["sampled_in_stratum"]:,}</td><td>{_with_ci(mapped, None, False, 1)}</td>'
                    f'<td>{_with_ci(estimate, ci, False, 1)}</td>'
                    f'<td>{_with_ci(entry["users_accuracy"], entry["users_accuracy_ci95"])}</td>'
                    f'<td>{_with_ci(entry["producers_accuracy"], entry["producers_accuracy_ci95"])}</td></tr>')
    notes = "".join(f'<p class="note">{_esc(note)}.</p>' for note in area["notes"])
    return ("<h2>Area-adjusted accuracy and class areas</h2>"
            f'<p>Overall accuracy weighted by the mapped area: '
            f'<b>{_esc(_with_ci(area["overall_accuracy"], area["overall_accuracy_ci95"]))}</b> '
            "(95 % confidence interval).</p>"
            '<table class="perclass"><tr><th>id</th><th class="text">class</th><th>reference px in stratum</th>'
            f"<th>mapped area ({unit})</th><th>estimated area ({unit}) ± 95 %</th><th>user's acc. ± 95 %</th>"
            f"<th>producer's acc. ± 95 %</th></tr>{''.join(rows)}</table>"
            '<p class="note">Stratified estimators of Olofsson et al. (2014, Remote Sensing of Environment 148, '
            "42–57) with the map classes as strata: each reference pixel weighs by its class's share of the map, "
            "so the estimated areas correct the mapped ones for the errors the reference shows.</p>" + notes)


# ------------------------------------------------------------------------------------------------
# Files


def write_report(path: str, html: str) -> None:
    """Write an HTML report atomically (temporary file in the same folder, then rename)."""
    write_text_atomic(path, html, "report")


def accuracy_csv(result: Dict[str, Any]) -> str:
    """The per-class table and the confusion matrix as one CSV table (layout in the module docstring)."""
    classes, matrix = result["classes"], result["confusion_matrix"]
    column_totals = [sum(row[j] for row in matrix) for j in range(len(classes))]

    def fraction(value: Any) -> str:
        return repr(float(value)) if _is_number(value) else ""

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["class_id", "class_name", "reference_pixels", "predicted_pixels", "producers_accuracy",
                     "users_accuracy", "f1"] + [f"predicted_{c['id']}" for c in classes])
    for j, (entry, row) in enumerate(zip(classes, matrix)):
        writer.writerow([entry["id"], entry["name"], sum(row), column_totals[j], fraction(entry["producers_accuracy"]),
                         fraction(entry["users_accuracy"]), fraction(entry["f1"])] + list(row))
    writer.writerow(["", "total", sum(column_totals), sum(column_totals), "", "", ""] + column_totals)
    return out.getvalue()


def write_accuracy_tables(result: Dict[str, Any], csv_path: Optional[str] = None,
                          json_path: Optional[str] = None) -> None:
    """Write the per-class/confusion CSV and/or the whole result as JSON, each atomically; None skips one."""
    if csv_path:
        write_text_atomic(csv_path, accuracy_csv(result), "CSV table")
    if json_path:
        write_text_atomic(json_path, json.dumps(result, indent=2) + "\n", "JSON table")


# ------------------------------------------------------------------------------------------------
# ROI statistics (engine/roistats.py)


def spectra_svg(stats: Dict[str, Any]) -> str:
    """Mean spectrum of every class as a line, ± one standard deviation as a shaded band, over the
    wavelengths (nm) when the raster has them, else over the band numbers."""
    width, height, left, right, top, bottom = 760, 360, 70, 170, 30, 46
    wavelengths = stats.get("wavelengths")
    xs = list(wavelengths) if wavelengths else list(range(1, len(stats["band_names"]) + 1))
    classes = [c for c in stats["classes"] if c["pixels"] and None not in c["mean"] and None not in c["std"]]
    lows = [m - s for c in classes for m, s in zip(c["mean"], c["std"])]
    highs = [m + s for c in classes for m, s in zip(c["mean"], c["std"])]
    if not classes or not xs:
        return ""
    x_low, x_high = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_low, y_high = min(lows), max(highs) if max(highs) > min(lows) else min(lows) + 1
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * plot_w

    def sy(y: float) -> float:
        return top + (1 - (y - y_low) / (y_high - y_low)) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="class spectra">']
    for y in _ticks(y_low, y_high):
        parts.append(f'<line x1="{left}" y1="{sy(y):.1f}" x2="{left + plot_w}" y2="{sy(y):.1f}" stroke="#e3e3e3"/>'
                     f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" font-size="11">{y:.4g}</text>')
    for x in _ticks(x_low, x_high, 8):
        parts.append(f'<line x1="{sx(x):.1f}" y1="{top + plot_h}" x2="{sx(x):.1f}" y2="{top + plot_h + 4}" '
                     f'stroke="#444"/><text x="{sx(x):.1f}" y="{top + plot_h + 17}" text-anchor="middle" '
                     f'font-size="11">{x:g}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>'
                 f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle" font-size="12">'
                 f'{"wavelength (nm)" if wavelengths else "band"}</text>')
    for index, entry in enumerate(classes):
        r, g, b = (int(v) for v in entry["color"][:3])
        color = f"rgb({r},{g},{b})"
        upper = [f"{sx(x):.1f},{sy(m + s):.1f}" for x, m, s in zip(xs, entry["mean"], entry["std"])]
        lower = [f"{sx(x):.1f},{sy(m - s):.1f}" for x, m, s in zip(xs, entry["mean"], entry["std"])]
        line = " ".join(f"{sx(x):.1f},{sy(m):.1f}" for x, m in zip(xs, entry["mean"]))
        parts.append(f'<polygon points="{" ".join(upper + lower[::-1])}" fill="{color}" fill-opacity="0.15" '
                     f'stroke="none"/><polyline class="series" points="{line}" fill="none" stroke="{color}" '
                     f'stroke-width="2"/>')
        ly = top + 12 + 16 * index
        parts.append(f'<line x1="{left + plot_w + 10}" y1="{ly - 4}" x2="{left + plot_w + 30}" y2="{ly - 4}" '
                     f'stroke="{color}" stroke-width="3"/><text x="{left + plot_w + 36}" y="{ly}" font-size="11">'
                     f'{_esc(entry["id"])} {_esc(entry["name"])}</text>')
    return "".join(parts) + "</svg>"


def roi_statistics_html(stats: Dict[str, Any], title: str = "ROI statistics") -> str:
    """The report of ``roistats.RoiStatistics.as_dict()``: warnings, counts, spectra, JM matrix."""
    from .roistats import FEW_PIXELS, JM_WARNING

    warnings = "".join(f"<li>{_esc(w)}</li>" for w in stats["warnings"])
    summary = (f'<ul class="warnings">{warnings}</ul>' if warnings
               else f"<p>Every class has at least {FEW_PIXELS} pixels and every pair a JM distance of at least "
                    f"{JM_WARNING}.</p>")
    rows = "".join(
        f'<tr><td>{_esc(c["id"])}</td><td class="text">{_swatch(c["color"])}{_esc(c["name"])}</td>'
        f'<td>{c["pixels"]:,}</td><td>{c["rois"]:,}</td></tr>' for c in stats["classes"])
    counts = ('<table class="perclass"><tr><th>id</th><th class="text">class</th><th>pixels</th>'
              f"<th>separate ROIs</th></tr>{rows}</table>")
    head = "".join(f"<th>{_esc(c['id'])}</th>" for c in stats["classes"])
    body = []
    for entry, row in zip(stats["classes"], stats["jeffries_matusita"]):
        cells = []
        for value in row:
            if value is None:
                cells.append("<td>–</td>")
                continue
            low = value < JM_WARNING and value > 0
            shade = f' style="background: rgba(214,39,40,{0.15 + 0.5 * (JM_WARNING - value) / JM_WARNING:.2f})"' \
                if low else ""
            cells.append(f"<td{shade}>{value:.3f}</td>")
        body.append(f'<tr><th class="text">{_esc(entry["id"])} {_esc(entry["name"])}</th>{"".join(cells)}</tr>')
    jm = (f'<table class="confusion"><tr><th class="text">class</th>{head}</tr>{"".join(body)}</table>'
          f'<p class="note">Jeffries–Matusita distance of two Gaussian classes, 0 (identical) to 2 (separable), on '
          f'the first {stats["jm_components"]} principal components of the standardised ROI spectra; red: below '
          f"{JM_WARNING}, commonly read as poorly separable.</p>")
    sources = _kv_table([("raster", stats["raster"]), ("ROIs or labels", stats["reference"])])
    return _page(title, ["<h2>Inputs</h2>" + sources, "<h2>Check before training</h2>" + summary,
                         "<h2>Classes</h2>" + counts, "<h2>Mean spectra ± one standard deviation</h2>"
                         + spectra_svg(stats), "<h2>Separability</h2>" + jm])


# ------------------------------------------------------------------------------------------------
# Model comparison (engine/compare.py)


def comparison_report_html(comparison: Dict[str, Any], thumbnails: Dict[str, str]) -> str:
    """The page of ``compare.compare_models``: inputs, the table of models, per-class accuracy, the class
    maps side by side (``thumbnails``: {model: image data URI}), the confusion matrices."""
    rows = comparison["models"]
    first = rows[0]
    split = first["split"]
    counts = split.get("counts", {})
    best = max(rows, key=lambda r: r["metrics"]["overall_accuracy"])
    table = "".join(
        f'<tr><td class="text">{"<b>" if r is best else ""}{_esc(r["model"])}{"</b>" if r is best else ""}</td>'
        f'<td>{_pct(r["metrics"]["overall_accuracy"])}</td><td>{_pct(r["metrics"]["average_accuracy"])}</td>'
        f'<td>{r["metrics"]["kappa"]:.4f}</td><td>{r["train_seconds"]:.1f}</td><td>{r["predict_seconds"]:.1f}</td>'
        f'<td class="text"><code>{_esc(os.path.basename(r["model_file"]))}</code></td></tr>' for r in rows)
    summary = ('<table class="perclass"><tr><th class="text">model</th><th>OA</th><th>AA</th><th>κ</th>'
               f"<th>train s</th><th>classify s</th><th class=\"text\">model file</th></tr>{table}</table>"
               f'<p class="note">Measured on the {_esc(first["evaluated_on"])} pixels of one split ('
               f'{_esc(split.get("mode"))}, seed {comparison["seed"]}: {sum(counts.get("train", []))} training, '
               f'{sum(counts.get("validation", []))} validation, {sum(counts.get("test", []))} test pixels), the same '
               "for every model. Train time includes the validation and the assessment; classify time maps the "
               "whole raster.</p>")
    classes = first["metrics"]["classes"]
    colors = dict(zip(first["classes"]["ids"], first["classes"]["colors"]))
    head = "".join(f"<th>{_esc(r['model'])}</th>" for r in rows)
    body = []
    for k, entry in enumerate(classes):
        cells = "".join(f"<td>{_pct(r['metrics']['classes'][k]['producers_accuracy'])}</td>" for r in rows)
        body.append(f'<tr><td class="text">{_swatch(colors.get(int(entry["id"])))}{_esc(entry["id"])} '
                    f'{_esc(entry["name"])}</td>{cells}</tr>')
    per_class = (f'<table class="perclass"><tr><th class="text">class (producer\'s accuracy)</th>{head}</tr>'
                 f'{"".join(body)}</table>')
    maps = "".join(f'<figure style="display:inline-block;margin:0.4em"><img alt="{_esc(r["model"])} class map" '
                   f'src="{thumbnails[r["model"]]}" style="image-rendering:pixelated;border:1px solid #ccc"/>'
                   f'<figcaption>{_esc(r["model"])}: OA {_pct(r["metrics"]["overall_accuracy"])}</figcaption>'
                   "</figure>" for r in rows)
    matrices = "".join(f"<h3>{_esc(r['model'])}</h3>" + _confusion_table(r["metrics"]) for r in rows)
    sources = _kv_table([("raster", comparison["raster"]), ("ROIs or labels", comparison["reference"])])
    return _page("Model comparison", ["<h2>Inputs</h2>" + sources, "<h2>Models</h2>" + summary,
                                      "<h2>Per class</h2>" + per_class, "<h2>Class maps</h2>" + maps,
                                      "<h2>Confusion matrices</h2>" + matrices])
