"""benchmarks/sdr_marginals.py on a hand-written SDR run JSON: per-bin means, standard errors, the away filter."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "sdr_marginals.py"
M = runpy.run_path(str(BENCH))


def run_json(tmp_path: Path, actions: list, rewards: list, joint: dict | None = None) -> Path:
    """A run JSON with 4 rotation bins over a full turn and 4 tx bins over [-20, 20] px; targets at 45°, 12 px."""
    d = {"setting": "toy", "scale": "tiny", "seed": 0, "overrides": [], "cfg_overrides": [],
         "final_attrs": {"rotation": {"target_mean": 45.0}, "tx": {"target_mean": 12.0}},
         "report": {"attributes": ["rotation", "tx"], "actions": actions, "rewards": rewards, "joint_policy": joint or {},
                    "bin_edges": {"rotation": [-180.0, -90.0, 0.0, 90.0, 180.0], "tx": [-20.0, -10.0, 0.0, 10.0, 20.0]}}}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(d))
    return path


def test_marginals_means_errors_and_away(tmp_path: Path) -> None:
    # two updates of two episodes: (rotation bin, tx bin)
    actions = [[[2, 3], [2, 0]], [[0, 3], [2, 1]]]
    rewards = [[0.5, 0.1], [0.2, 0.3]]
    d = M["load_run"](run_json(tmp_path, actions, rewards))
    assert M["target_bins"](d) == [2, 3]
    m = M["marginals"](d, (0, 2), None)
    n, mean, se = m["rotation"][2]
    assert (n, round(mean, 6), round(se, 6)) == (3, 0.3, round(0.2 / 3 ** 0.5, 6))  # 0.5, 0.1, 0.3: sd 0.2
    assert m["rotation"][1][0] == 0 and m["tx"][3][:2] == (2, pytest.approx(0.35))
    # no other factor within 0 bins: rotation's episodes need tx != 3; tx's need rotation != 2 (bin 0 is 2 from 2)
    a = M["marginals"](d, (0, 2), others=0, within=0)
    assert [r[0] for r in a["rotation"]] == [0, 0, 2, 0] and a["rotation"][2][1] == pytest.approx(0.2)
    assert [r[0] for r in a["tx"]] == [0, 0, 0, 1] and a["tx"][3][1] == pytest.approx(0.2)

    b = M["marginals"](d, (0, 2), others=1, within=0)
    assert [r[0] for r in b["rotation"]] == [1, 0, 1, 0] and b["rotation"][2][1] == pytest.approx(0.5)
    # within 1 bin, circularly: rotation bin 0 is 2 bins from 2, bin 3 is 1
    assert [r[0] for r in M["marginals"](d, (0, 2), others=1)["tx"]] == [1, 1, 0, 1]
    assert M["bin_distance"](__import__("numpy").array([0, 3]), 3, [-180.0, -90.0, 0.0, 90.0, 180.0]).tolist() == [1, 0]
    assert "[0, 90)* 0.300 ± 0.115 (3)" in M["table"](d, m)
    only_first = M["marginals"](d, (0, 1), None)
    assert only_first["rotation"][2][0] == 2


def test_target_bin_from_the_circular_mean(tmp_path: Path) -> None:
    # targets at 170 and -170 deg: the linear mean (0) lies in bin 2, the circular one (180) in the last bin
    path = run_json(tmp_path, [[[3, 3]]], [[0.5]])
    d = json.loads(path.read_text())
    d["final_attrs"]["rotation"] = {"target_mean": 0.0, "circular": {"target_mean": 180.0}}
    path.write_text(json.dumps(d))
    assert M["target_bins"](M["load_run"](path)) == [3, 3]


def test_refuses_files_it_cannot_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = run_json(tmp_path, [], [])
    with pytest.raises(SystemExit, match=r"run.json: no 'actions' and 'rewards' in its report"):
        M["load_run"](path)
    path = run_json(tmp_path, [[[0, 0]]], [[0.1]], joint={"tx+ty": []})
    with pytest.raises(SystemExit, match=r"the run has joint groups \['tx\+ty'\]"):
        M["load_run"](path)
    path = run_json(tmp_path, [[[0, 0]]], [[0.1]])
    monkeypatch.setattr(sys, "argv", [str(BENCH), str(path), "--updates", "0:5"])
    with pytest.raises(SystemExit, match=r"--updates 0:5: the run has updates 0:1"):
        runpy.run_path(str(BENCH), run_name="__main__")
    monkeypatch.setattr(sys, "argv", [str(BENCH), str(path), "--others", "0,one"])
    with pytest.raises(SystemExit, match=r"--others 0,one: give whole numbers joined by ','"):
        runpy.run_path(str(BENCH), run_name="__main__")


def test_draws_one_row_per_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = run_json(tmp_path, [[[2, 3], [2, 0]], [[0, 3], [2, 1]]], [[0.5, 0.1], [0.2, 0.3]])
    out = tmp_path / "bars.png"
    monkeypatch.setattr(sys, "argv", [str(BENCH), str(path), "--others", "0,1", "--within", "0", "--out", str(out)])
    runpy.run_path(str(BENCH), run_name="__main__")
    from PIL import Image

    assert Image.open(out).size[1] > Image.open(out).size[0] / 2  # two rows of two panels
