"""Mean ± sd over run seeds of mnist experiment folders (scenefit.experiments.seeds), on hand-written results.json."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

from scenefit.config import ConfigError
from scenefit.experiments.seeds import load_runs, seed_rows, seeds_markdown

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "seeds_table.py"


def _run(root: Path, name: str, seed: int, results: dict[str, dict[str, float]], scale: str = "quick",
         overrides: dict | None = None, experiment: str = "mnist") -> Path:
    """A run folder whose results.json holds ``results`` ({setting: {method: accuracy as a fraction}})."""
    folder = root / name
    folder.mkdir()
    rows = {s: {m: {"setting": s, "method": m, "accuracy": a, "metrics": None} for m, a in ms.items()}
            for s, ms in results.items()}
    (folder / "results.json").write_text(json.dumps({
        "experiment": experiment, "scale": scale, "seed": seed, "overrides": overrides or {}, "config": {},
        "results": rows, "breakdown": {}}))
    return folder


@pytest.fixture
def three(tmp_path: Path) -> list[Path]:
    """Seeds 0, 1, 2 on rot-g2 (paper missing at seed 2), rot-g1 at seed 0 only, listed after rottrans-g4."""
    return [
        _run(tmp_path, "s0", 0, {"rottrans-g4": {"ours": 0.5}, "rot-g2": {"paper": 0.70, "ours": 0.80, "oracle": 0.82},
                                 "rot-g1": {"initial": 0.4, "ours": 0.9}}),
        _run(tmp_path, "s1", 1, {"rottrans-g4": {"ours": 0.6}, "rot-g2": {"paper": 0.75, "ours": 0.84, "oracle": 0.84}}),
        _run(tmp_path, "s2", 2, {"rottrans-g4": {"ours": 0.7}, "rot-g2": {"ours": 0.88, "oracle": 0.83}}),
    ]


def test_means_sds_and_paired_differences_in_closed_form(three):
    rows = seed_rows(load_runs(three))
    assert [r["setting"] for r in rows] == ["rot-g1", "rot-g2", "rottrans-g4"]  # PAPER_SETTINGS order
    g1, g2, rt = rows
    assert [g1["n_seeds"], g2["n_seeds"], rt["n_seeds"]] == [1, 3, 3] and g2["seeds"] == [0, 1, 2]
    ours = g2["methods"]["ours"]
    assert ours["values"] == pytest.approx([80.0, 84.0, 88.0])
    assert ours["n"] == 3 and ours["mean"] == pytest.approx(84.0) and ours["sd"] == pytest.approx(4.0)
    paper = g2["methods"]["paper"]  # 70, 75: sd = 5 / sqrt(2)
    assert paper["values"][2] is None and paper["n"] == 2
    assert paper["mean"] == pytest.approx(72.5) and paper["sd"] == pytest.approx(5 / 2**0.5)
    assert rt["methods"]["ours"]["mean"] == pytest.approx(60.0) and rt["methods"]["ours"]["sd"] == pytest.approx(10.0)
    # ours - oracle: -2, 0, +5; ours - paper: +10, +9, none at seed 2
    oo, op = g2["paired"]["ours-oracle"], g2["paired"]["ours-paper"]
    assert oo["values"] == pytest.approx([-2.0, 0.0, 5.0]) and oo["mean"] == pytest.approx(1.0) and oo["n"] == 3
    assert op["values"][:2] == pytest.approx([10.0, 9.0]) and op["values"][2] is None
    assert op["n"] == 2 and op["mean"] == pytest.approx(9.5)
    # one seed: a mean, no sd; missing seeds are None; no oracle anywhere in rot-g1: no pair
    assert g1["methods"]["ours"] == {"values": [pytest.approx(90.0), None, None], "n": 1, "mean": pytest.approx(90.0),
                                     "sd": None}
    assert set(g1["methods"]) == {"initial", "ours"}
    assert g1["paired"]["ours-oracle"] == {"values": [None, None, None], "n": 0, "mean": None}


def test_markdown_cells_and_lines(three):
    text = seeds_markdown(load_runs(three))
    lines = text.splitlines()
    assert lines[0].startswith("Scale quick, run seeds 0 / 1 / 2 (values in this order); accuracy %, mean ± sample sd")
    assert lines[2] == ("| Setting | Initial scenes | Paper: Algorithm 1 | Ours | Oracle (labeled X_t) † "
                        "| ours − oracle (paired) | ours − paper (paired) |")
    assert lines[4] == "| Rot. G1 | 40.0 / – / – (40.0) | – | 90.0 / – / – (90.0) | – | – | – |"
    assert lines[5] == ("| Rot. G2 | – | 70.0 / 75.0 / – (72.5 ± 3.5) | 80.0 / 84.0 / 88.0 (84.0 ± 4.0) "
                        "| 82.0 / 84.0 / 83.0 (83.0 ± 1.0) | -2.0 / +0.0 / +5.0 (mean +1.0) | +10.0 / +9.0 / – (mean +9.5) |")
    assert lines[6] == "| R&T G4 | – | – | 50.0 / 60.0 / 70.0 (60.0 ± 10.0) | – | – | – |"
    assert lines[8].startswith("Fewer seeds than the other settings: Rot. G1 (seed 0).")


def test_every_setting_on_every_seed(tmp_path):
    runs = load_runs([_run(tmp_path, "a", 3, {"rot-g2": {"ours": 0.5}}), _run(tmp_path, "b", 7, {"rot-g2": {"ours": 0.6}})])
    assert seeds_markdown(runs).splitlines()[-1].startswith("Every setting has all 2 run seeds.")


def test_refusals_name_the_files_and_values(tmp_path):
    a = _run(tmp_path, "a", 0, {"rot-g2": {"ours": 0.5}})
    with pytest.raises(ConfigError) as e:
        load_runs([a, tmp_path / "nothing"])
    assert str(e.value) == (f"{tmp_path / 'nothing' / 'results.json'}: not found; expected the results.json of a "
                            "`scenefit experiment mnist` run folder")
    b = _run(tmp_path, "b", 1, {"rot-g2": {"ours": 0.5}}, scale="paper")
    with pytest.raises(ConfigError) as e:
        load_runs([a, b])
    assert str(e.value) == f"{a} and {b}: different scales ('quick' vs 'paper'); a seed table averages runs of one scale"
    c = _run(tmp_path, "c", 0, {"rot-g1": {"ours": 0.5}})
    with pytest.raises(ConfigError) as e:
        load_runs([a, c])
    assert str(e.value) == f"{a} and {c}: the same seed 0; each folder must be a run of its own seed"
    d = _run(tmp_path, "d", 2, {"rot-g2": {"ours": 0.5}}, overrides={"encoder": {"steps": 3000}})
    with pytest.raises(ConfigError) as e:
        load_runs([a, d])
    assert str(e.value) == (f"{a} and {d}: different --set overrides (encoder.steps: 'unset' vs 3000); a seed table "
                            "averages runs that differ only in their seed")
    f = _run(tmp_path, "f", 3, {"rot-g2": {"ours": 0.5}}, experiment="shift")
    with pytest.raises(ConfigError) as e:
        load_runs([f])
    assert str(e.value) == f"{f / 'results.json'}: not the results of `scenefit experiment mnist` (experiment: 'shift')"


def test_script_prints_and_writes_the_table(three, tmp_path, monkeypatch, capsys):
    out = tmp_path / "t" / "seeds.md"
    monkeypatch.setattr(sys, "argv", [str(BENCH), *map(str, three), "--out", str(out)])
    runpy.run_path(str(BENCH), run_name="__main__")
    assert capsys.readouterr().out == out.read_text() == seeds_markdown(load_runs(three))
    monkeypatch.setattr(sys, "argv", [str(BENCH), str(three[0]), str(three[0])])
    with pytest.raises(SystemExit, match="the same seed 0"):
        runpy.run_path(str(BENCH), run_name="__main__")
