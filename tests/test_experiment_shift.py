"""The look-shift experiment end to end at the tiny MNIST scale, through the command line: one shift, shared models."""

import json
import re

import pytest

from scenefit.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")
NUMBER = re.compile(r"^-?\d+\.\d+$")


def test_shift_experiment_writes_its_table_with_shared_models(tmp_path, capsys):
    out = tmp_path / "shift"
    assert main(["experiment", "shift", "--setting", "rot-g2", "--shifts", "blur", "--levels", "strong", "--scale", "tiny",
                 "--out", str(out), "--no-progress"]) == 0
    lines = [ln for ln in (out / "shift.md").read_text().splitlines() if ln.startswith("| ")]
    assert lines[0] == ("| shift | initial (%) | ours (%) | ceiling (%) | oracle (%) | gap closed | rotation error (deg) "
                        "| class right |")
    rows = {ln.split(" | ")[0][2:]: [c.strip(" |") for c in ln.split(" | ")[1:]] for ln in lines[1:]}
    assert list(rows) == ["clean", "blur:strong"]
    for cells in rows.values():
        assert len(cells) == 7
        assert all(NUMBER.match(c) for i, c in enumerate(cells) if i != 4)
        assert NUMBER.match(cells[4]) or cells[4] == "n/a (ceiling within 3 pts)"
    res = json.loads((out / "results.json").read_text())
    assert [r["row"] for r in res["rows"]] == ["clean", "blur:strong"] and res["rows"][1]["shift"] == "blur:strong"
    assert all(0 <= v <= 1 for r in res["rows"] for v in r["accuracy"].values())
    # F, G and E do not depend on the shift: one of each, shared by both rows; the rows' problems differ
    assert sorted(p.name.split("-")[0] for p in (out / "models").iterdir()) == ["encoder", "surrogate", "task"]
    keys = [json.loads((out / f / "stages" / "problem.json").read_text())["key"] for f in ("clean", "blur-strong")]
    assert keys[0] != keys[1]
    assert {p.name for p in (out / "figures").iterdir()} == {"shift_examples.png", "shift_accuracy.png"}
    assert "| blur:strong |" in capsys.readouterr().out
    assert main(["experiment", "shift", "--shifts", "fog", "--scale", "tiny", "--out", str(out), "--no-progress"]) == 2
    assert "unknown shift 'fog'; choose from: thick, thin, blur," in capsys.readouterr().err
    assert main(["experiment", "shift", "--levels", "hard", "--scale", "tiny", "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert capsys.readouterr().err == "scenefit: error: unknown level 'hard'; choose from: mild, strong\n"
    assert not (tmp_path / "bad").exists()  # bad input leaves no folder behind
    assert main(["experiment", "shift", "--scale", "tiny", "--out", str(out), "--set", "setting.shift=blur:mild", "--no-progress"]) == 2
    assert "the shift experiment sets setting.shift per row; choose rows with --shifts and --levels" in capsys.readouterr().err


def test_a_bad_setting_shift_is_refused_by_check(tmp_path, capsys):
    assert main(["check", "rot-g2", "--set", "setting.shift=blur:hard"]) == 2
    assert capsys.readouterr().err == ("scenefit: error: --set: setting.shift: unknown shift level 'hard' (shift 'blur'); "
                                       "known levels: mild, strong\n")
    cfg = tmp_path / "shifted.yaml"
    cfg.write_text("preset: rot-g2\nsetting: {shift: 'fog:mild'}\n")
    assert main(["check", str(cfg)]) == 2
    assert capsys.readouterr().err == (f"scenefit: error: {cfg}: setting.shift: unknown shift 'fog'; known shifts: thick, thin, "
                                       "blur, lowres, gamma, contrast, noise, box_small, box_large, jpeg\n")
    cfg.write_text("preset: rot-g2\nsetting: {shift: 'jpeg:strong', n_targets: 8, n_test: 8}\n")
    assert main(["check", str(cfg)]) == 0
