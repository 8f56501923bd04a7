"""bench/tiling.py: tiled prediction compared with the whole-image pass on the real MUUFL crop (90 x 90 px).
Tiny settings (width 8, two epochs): a few seconds."""

import json

from bench import tiling as bench


def test_rows_compare_each_tiling_with_the_whole_image(tmp_path, shared_data):
    out = tmp_path / "tiling.json"
    args = ["--data", shared_data, "--dataset", "muufl", "--epochs", "2", "--threads", "1", "--set", "dim=8",
            "--tiles", "16,96", "--overlaps", "0,4,8", "--out", str(out)]
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    rows = {(r["tile"], r["overlap"]): r for r in report["rows"]}
    # overlap 8 leaves no centre in a 16 px tile, so that pair is skipped
    assert set(rows) == {(16, 0), (16, 4), (96, 0), (96, 4), (96, 8)}
    for key in ((96, 0), (96, 4), (96, 8)):                        # one tile covers the 90 x 90 scene
        assert rows[key]["agreement"] == 1.0 and rows[key]["test_oa"] == report["whole"]["test_oa"]
    assert rows[(16, 0)]["agreement"] < 1.0                         # 16 px tiles lose context at their edges
    assert all(0 <= r["test_oa"] <= 1 and r["seconds"] > 0 for r in rows.values())
    assert report["config"]["dim"] == 8 and report["shape"] == [64, 90, 90]
    assert "| 16 | 4 |" in out.with_suffix(".md").read_text()
