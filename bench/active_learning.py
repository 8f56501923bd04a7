#!/usr/bin/env python3
"""Active-learning benchmark (issue 16): do the suggested locations help more than random ones?

A simulated analyst on each shared scene, per seed: the 30/10 split of bench/accuracy.py gives the
first ROIs; the test pixels are cut at random into a pool (where the analyst may label) and an
evaluation half (never labelled, the OA is measured there). Each of ``--rounds`` rounds adds 5 pixels
per class, labelled from the label raster: either the model's suggestions (engine/suggest.py, with
the pool as candidates) or pixels drawn at random from the pool; the model is trained again on all
labels so far (the validation pixels still tune it). The table gives the evaluation OA after every
round, mean ± std over the seeds, for both strategies, and whether suggestions beat random on average.

The model is the engine's random forest (``--trees``, 100 by default: the 30 fits per seed and scene
take seconds), so the benchmark measures the suggestion rule, not a deep model's training time; its
probabilities are those the toolbox's suggestions use.

    python bench/active_learning.py --seeds 10 --threads 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from bench.accuracy import DATASETS, DEFAULT_DATA, Scene, load_scene  # noqa: E402
from engine.data.normalize import apply_stretch, fit_stretch  # noqa: E402
from engine.data.splits import fixed_count_split  # noqa: E402
from engine.suggest import select_suggestions  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results"
STRATEGIES = ("suggested", "random")


def _fit_and_predict(image: np.ndarray, train: np.ndarray, validation: np.ndarray, n_classes: int, trees: int,
                     seed: int, threads: int) -> np.ndarray:
    """Random forest on the labelled pixels of (Nb, H, W); probabilities (K, H, W)."""
    import torch

    from engine.models.registry import build_model

    model = build_model("rf", image.shape[0], n_classes, trees=trees)
    x = image.reshape(image.shape[0], -1).T
    t, v = train.ravel(), validation.ravel()
    model.fit_pixels(x[t >= 0], t[t >= 0], x[v >= 0], v[v >= 0], seed=seed, threads=threads)
    with torch.no_grad():
        return model(torch.from_numpy(image)[None]).logits.softmax(1)[0].numpy()


def run_scene(scene: Scene, seed: int, rounds: int, per_class: int, trees: int, threads: int) -> Dict[str, Any]:
    class_ids, _ = scene.usable_classes()
    index = scene.class_index(class_ids)
    k = len(class_ids)
    image = apply_stretch(scene.data, scene.valid, fit_stretch(scene.data, scene.valid))
    split = fixed_count_split(index, seed, valid=scene.valid)
    rng = np.random.RandomState(seed + 1000)
    test = np.flatnonzero(split.test.ravel() >= 0)
    rng.shuffle(test)
    pool_mask = np.zeros(index.size, bool)
    pool_mask[test[: len(test) // 2]] = True
    evaluation = test[len(test) // 2:]
    truth = index.ravel()

    def oa(probabilities: np.ndarray) -> float:
        return float((probabilities.reshape(k, -1).argmax(0)[evaluation] == truth[evaluation]).mean())

    first = _fit_and_predict(image, split.train, split.validation, k, trees, seed, threads)
    record: Dict[str, Any] = {"seed": seed, "start": oa(first)}
    for strategy in STRATEGIES:
        train = split.train.copy().ravel()
        available = pool_mask.copy()
        probabilities = first
        scores = []
        for _ in range(rounds):
            n = per_class * k
            if strategy == "suggested":
                picks = select_suggestions(probabilities, scene.valid, n,
                                           candidates=available.reshape(index.shape))
                chosen = np.array([s.row * index.shape[1] + s.col for s in picks], np.int64)
            else:
                chosen = rng.choice(np.flatnonzero(available), min(n, int(available.sum())), replace=False)
            train[chosen] = truth[chosen]
            available[chosen] = False
            probabilities = _fit_and_predict(image, train.reshape(index.shape), split.validation, k, trees, seed,
                                             threads)
            scores.append(oa(probabilities))
        record[strategy] = scores
    return record


def render(report: Dict[str, Any]) -> str:
    run = report["run"]
    lines = ["# Active learning: suggested against random ROIs", "",
             f"`{run['command']}`  ", f"{run['started']}, {run['threads']} threads, numpy {run['numpy']}, "
             f"random forest of {run['trees']} trees, {run['per_class']} px per class per round, "
             f"{len(report['scenes'][next(iter(report['scenes']))])} seeds.", "",
             "Per seed: the 30/10 split gives the first labels; the test pixels are cut at random into a pool "
             "(where labels may be added) and an evaluation half (the OA below). Each round adds "
             f"{run['per_class']} px per class (the scene's class count times that), either at the model's "
             "suggestions (engine/suggest.py: smallest margin between the two likeliest classes, raised on class "
             "borders, spread in space and over the predicted classes; the pool as candidates) or at random "
             "pool pixels; the forest is trained again on all labels. OA in %, mean ± std over the seeds.", ""]
    for name, records in report["scenes"].items():
        rounds = len(records[0]["suggested"])
        lines += [f"## {name}", "", "| round | suggested | random | suggested − random | suggested ahead in |",
                  "|---|---|---|---|---|"]
        start = [r["start"] for r in records]
        lines.append(f"| 0 (30/10) | {100 * np.mean(start):.2f} ± {100 * np.std(start):.2f} | – | – | – |")
        for i in range(rounds):
            s = np.array([r["suggested"][i] for r in records])
            q = np.array([r["random"][i] for r in records])
            lines.append(f"| {i + 1} | {100 * s.mean():.2f} ± {100 * s.std():.2f} | {100 * q.mean():.2f} ± "
                         f"{100 * q.std():.2f} | {100 * (s - q).mean():+.2f} | {int((s > q).sum())} of {len(s)} "
                         "seeds |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=5)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "active_learning.json"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    report = {"run": {"command": "python bench/active_learning.py " + " ".join(argv if argv is not None
                                                                               else sys.argv[1:]),
                      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      "threads": args.threads, "numpy": np.__version__, "python": platform.python_version(),
                      "trees": args.trees, "per_class": args.per_class},
              "scenes": {}}
    for name in args.datasets.split(","):
        scene = load_scene(DATASETS[name], Path(args.data))
        report["scenes"][name] = []
        for seed in range(args.seeds):
            started = time.perf_counter()
            record = run_scene(scene, seed, args.rounds, args.per_class, args.trees, args.threads)
            report["scenes"][name].append(record)
            print(f"{name:<14} seed {seed}: start {100 * record['start']:.2f}  suggested "
                  f"{' '.join(f'{100 * v:.2f}' for v in record['suggested'])}  random "
                  f"{' '.join(f'{100 * v:.2f}' for v in record['random'])}  ({time.perf_counter() - started:.0f} s)",
                  flush=True)
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(render(report), encoding="utf-8")
    print(f"results: {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
