"""bench/multimodal.py: every method runs on the real MUUFL crop with one split per seed (that of
bench/accuracy.py), and the JSON / markdown reports hold what the issue asks for. Tiny settings (width 4,
one epoch, 20 trees): about 10 s."""

import json
from pathlib import Path

import numpy as np

from bench import accuracy
from bench import multimodal as bench


def test_all_methods_share_the_split_and_the_reports_are_complete(tmp_path, shared_data, capsys):
    out = tmp_path / "mm.json"
    args = ["--data", shared_data, "--methods", "m3amba,cssmamba_hsi,rf_hsi_lidar,rf_hsi", "--seeds", "1",
            "--first-seed", "3", "--epochs", "1", "--cssmamba-epochs", "1", "--rf-trees", "20", "--threads", "1",
            "--set", "dim=4", "--set", "depth=1", "--set", "d_state=4", "--out", str(out)]
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    records = {r["method"]: r for r in report["results"]}
    assert list(records) == ["m3amba", "cssmamba_hsi", "rf_hsi_lidar", "rf_hsi"]

    # one split for all methods, and it is bench/accuracy.py's split of the same seed
    scene = accuracy.load_scene(accuracy.DATASETS["muufl"], Path(shared_data))
    class_ids, _ = scene.usable_classes()
    expected = accuracy.fixed_count_split(scene.class_index(class_ids), 3, valid=scene.valid)
    assert {r["split_sha256"] for r in records.values()} == {bench.split_digest(expected)}
    for record in records.values():
        assert record["seed"] == 3 and record["dataset"] == "muufl"
        assert (record["train_pixels"], record["validation_pixels"]) == (240, 80)  # 8 classes, all > 30 px
        assert record["test_pixels"] == 6970 - 320
        assert set(record["per_class"]) == {str(c) for c in class_ids}
        for key in ("overall_accuracy", "average_accuracy", "kappa"):
            assert 0 <= record[key] <= 1 or key == "kappa"
        assert record["train_seconds"] > 0 and record["predict_seconds"] > 0

    m3 = records["m3amba"]
    assert m3["config"]["use_clip"] is False and m3["config"]["dim"] == 4 and m3["config"]["aux_bands"] == 2
    assert [h["epoch"] for h in m3["history"]] == [1] and m3["best_epoch"] == 1
    assert set(m3["head_test_oa"]) == {"hsi", "fusion", "aux"}
    assert m3["head_test_oa"]["fusion"] == m3["overall_accuracy"]
    assert records["rf_hsi_lidar"]["features"] == 66 and records["rf_hsi"]["features"] == 64
    assert records["cssmamba_hsi"]["config"]["dim"] == 32, "CSSMamba keeps its defaults; --set is M3amba's"
    lidar = report["datasets"]["muufl"]["lidar"]
    assert lidar["bands"] == 2 and lidar["nodata_in_hsi_valid"] == 0
    run = report["runs"][0]
    assert run["command"].startswith("python bench/multimodal.py") and run["epochs"] == 1
    assert run["cssmamba_epochs"] == 1 and run["overrides"] == {"dim": 4, "depth": 1, "d_state": 4}

    table = out.with_suffix(".md").read_text()
    for text in ("| M3amba (HSI+LiDAR, no CLIP) | 1 |", "| CSSMamba (HSI only) | 1 |", "| RF (HSI+LiDAR) | 1 |",
                 "| RF (HSI only) | 1 |", "Target check (mean OA): M3amba", "| 10 yellow curb |", "CLIP branch",
                 "| val OA |", run["command"]):
        assert text in table, text
    assert "RF (HSI+LiDAR)" in capsys.readouterr().out

    # --resume runs nothing new; --render puts notes into the markdown
    assert bench.main(args + ["--resume"]) == 0
    assert len(json.loads(out.read_text())["results"]) == 4
    notes = tmp_path / "notes.md"
    notes.write_text("Why the target was missed: tiny test.\n")
    assert bench.main(["--render", "--out", str(out), "--notes-file", str(notes)]) == 0
    assert "## Notes\n\nWhy the target was missed: tiny test." in out.with_suffix(".md").read_text()

    # CSSMamba records of a bench/accuracy.py file stand in for seeds not trained here, split checked
    css = dict(records["cssmamba_hsi"], method="cssmamba", seed=4, run=0, overall_accuracy=0.5)
    source = tmp_path / "accuracy.json"
    source.write_text(json.dumps({"runs": [run], "datasets": {"muufl": {"class_ids": class_ids}}, "results": [css]}))
    imported = ["--data", shared_data, "--methods", "cssmamba_hsi", "--seeds", "2", "--first-seed", "3",
                "--threads", "1", "--out", str(out), "--resume", "--import-cssmamba", str(source)]
    assert bench.main(imported) == 0
    report = json.loads(out.read_text())
    new = [r for r in report["results"] if r["method"] == "cssmamba_hsi"]
    assert [(r["seed"], r["overall_accuracy"]) for r in new][1] == (4, 0.5) and len(new) == 2
    assert new[1]["imported_from"]["file"] == str(source) and new[1]["run"] == "2 (imported)"
    seed4 = accuracy.fixed_count_split(scene.class_index(class_ids), 4, valid=scene.valid)
    assert new[1]["split_sha256"] == bench.split_digest(seed4)
    assert "seed(s) 4 imported from" in out.with_suffix(".md").read_text()
    source.write_text(json.dumps({"runs": [run], "datasets": {"muufl": {"class_ids": class_ids}},
                                  "results": [dict(css, seed=2, test_pixels=1)]}))
    assert bench.main(imported[:7] + ["2"] + imported[8:]) == 2
    assert "differ from this script's" in capsys.readouterr().err


def test_the_split_digest_tells_splits_apart():
    labels = np.repeat(np.arange(4), 50).reshape(10, 20)
    a, b = (accuracy.fixed_count_split(labels, seed) for seed in (0, 1))
    assert bench.split_digest(a) == bench.split_digest(accuracy.fixed_count_split(labels, 0))
    assert bench.split_digest(a) != bench.split_digest(b)


def test_unknown_or_clip_options_are_refused(tmp_path, shared_data, capsys):
    for option in ("width=3", "use_clip=true"):
        assert bench.main(["--data", shared_data, "--set", option, "--out", str(tmp_path / "x.json")]) == 2
        assert "not an M3amba option" in capsys.readouterr().err
