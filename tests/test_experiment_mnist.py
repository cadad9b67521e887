"""The MNIST experiment runner at the tiny scale: every method end to end, resume, reproducibility, filters."""

from __future__ import annotations

import argparse
import csv
import json
import re

import pytest
import torch

from scenefit.config import ConfigError
from scenefit.experiments import METHODS, SCALE_NAMES, SCALES, add_experiment_parser, run_mnist_experiment
from scenefit.experiments import mnist as mnist_mod
from scenefit.experiments.mnist import setting_config
from scenefit.scenarios import PAPER_SETTINGS

torch.set_num_threads(1)

SETTINGS = ["rot-g2", "trans-g1"]
FIGURES = [
    "fig3_engine_vs_surrogate_rot.png", "fig4_engine_vs_surrogate_trans.png", "fig5_samples_rot-g2.png",
    "fig6_samples_trans-g1.png", "fig7_rotation_hist.png", "fig8_positions.png", "fig9_sensitivity.png",
]
ALL_SETTINGS = ", ".join(PAPER_SETTINGS)
ALL_METHODS = ", ".join(METHODS)


def quiet(*args) -> None:
    pass


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist")
    summary = run_mnist_experiment(out, "tiny", SETTINGS, None, seed=0, device="cpu", progress=False, log=quiet)
    return out, summary


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_method_end_to_end(tiny_run):
    out, summary = tiny_run
    for name in ("table2.md", "table2.csv", "table3.md", "table3.csv", "results.json", "experiment.json"):
        assert (out / name).is_file(), name
    for name in FIGURES:
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert set(summary["results"]) == set(SETTINGS)
    for s in SETTINGS:
        assert list(summary["results"][s]) == list(METHODS)
        for m, r in summary["results"][s].items():
            assert 0.0 <= r["accuracy"] <= 1.0
            assert r["n_images"] == SCALES["tiny"].n_targets, (s, m)
            assert (out / s / m / "result.json").is_file()
            if m == "oracle":
                assert r["metrics"] is None
            else:
                assert r["metrics"]["layer"] == "fc2"
                assert all(torch.isfinite(torch.tensor(r["metrics"][k])) for k in ("mmd2", "fid", "kid_mean", "bandwidth"))
    assert summary["results"]["rot-g2"]["sdr"]["uses_target_labels"] is True
    assert summary["results"]["rot-g2"]["metasim"]["uses_target_labels"] is False
    assert "rotation_median_deg" in summary["results"]["rot-g2"]["ours"]["info"]["attribute_error"]
    # F and G are trained once per engine family, not once per setting
    assert sorted(p.name for p in (out / "models").iterdir()) == ["rot", "trans"]


def test_table2_rows_and_columns(tiny_run):
    out, summary = tiny_run
    rows = read_csv(out / "table2.csv")
    assert list(rows[0]) == ["block", "method", *PAPER_SETTINGS]
    measured = [r for r in rows if r["block"] == "measured"]
    paper = [r for r in rows if r["block"] == "paper"]
    assert [r["method"] for r in measured] == list(METHODS)
    assert [r["method"] for r in paper] == ["initial", "metasim", "attribute-descent", "sdr", "ours"]
    for r in measured:
        for s in PAPER_SETTINGS:
            if s in SETTINGS:
                assert float(r[s]) == pytest.approx(100 * summary["results"][s][r["method"]]["accuracy"], abs=0.05)
            else:
                assert r[s] == ""
    assert next(r for r in paper if r["method"] == "ours")["rot-g5"] == "99.8"
    md = (out / "table2.md").read_text()
    assert "## measured" in md and "## paper" in md and "validation split" in md
    rows3 = read_csv(out / "table3.csv")
    assert list(rows3[0])[2:] == [f"{s}_{c}" for s in ("rot-g5", "trans-g4") for c in ("mmd", "fid", "kid", "acc")]


def test_resume_skips_finished_jobs(tiny_run, monkeypatch):
    out, _ = tiny_run
    table = (out / "table2.csv").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*/result.json")}

    def boom(*args, **kwargs):
        raise AssertionError("a finished job was recomputed")

    monkeypatch.setattr(mnist_mod, "run_job", boom)
    run_mnist_experiment(out, "tiny", SETTINGS, None, seed=0, device="cpu", progress=False, log=quiet)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*/result.json")} == stamps
    assert (out / "table2.csv").read_text() == table


def test_rerun_with_same_seed_gives_same_tables(tiny_run):
    out, summary = tiny_run
    table = (out / "table2.csv").read_text()
    for m in ("metasim", "ours"):
        (out / "rot-g2" / m / "result.json").unlink()
    again = run_mnist_experiment(out, "tiny", ["rot-g2"], ["metasim", "ours"], seed=0, device="cpu", progress=False, log=quiet)
    assert (out / "table2.csv").read_text() == table
    for m in ("metasim", "ours"):
        assert again["results"]["rot-g2"][m]["metrics"] == summary["results"]["rot-g2"][m]["metrics"]


def test_other_scale_or_seed_in_same_folder_is_refused(tiny_run):
    out, _ = tiny_run
    with pytest.raises(ConfigError, match=r"holds an experiment with scale 'tiny' and seed 0 \(this call: scale 'tiny', seed 1\); use another --out"):
        run_mnist_experiment(out, "tiny", ["rot-g2"], ["initial"], seed=1, progress=False, log=quiet)


@pytest.mark.parametrize(
    "settings, methods, scale, message",
    [
        (["rot-g7"], None, "tiny", f"unknown setting 'rot-g7'; choose from: {ALL_SETTINGS}"),
        (None, ["ours", "metasim2"], "tiny", f"unknown method 'metasim2'; choose from: {ALL_METHODS}"),
        ([], None, "tiny", f"no setting selected; choose from: {ALL_SETTINGS}"),
        (None, None, "huge", "unknown scale 'huge'; choose from: tiny, quick, paper"),
    ],
)
def test_bad_filters_fail_before_any_output(tmp_path, settings, methods, scale, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        run_mnist_experiment(tmp_path / "x", scale, settings, methods, progress=False, log=quiet)
    assert not (tmp_path / "x").exists()


def test_cli_parser(tmp_path):
    p = argparse.ArgumentParser(prog="scenefit")
    add_experiment_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["experiment", "mnist", "--scale", "tiny", "--out", str(tmp_path / "o"),
                         "--settings", "rot-g2,rot-g9", "--methods", "initial,oracle", "--seed", "3"])
    assert (args.scale, args.seed, args.device, args.methods) == ("tiny", 3, "cpu", "initial,oracle")
    with pytest.raises(ValueError, match=re.escape(f"unknown setting 'rot-g9'; choose from: {ALL_SETTINGS}")):
        args.func(args)


def test_scales_follow_the_issue():
    paper = setting_config("trans-g4", SCALES["paper"], seed=0, device="cpu")
    assert (paper.setting.n_targets, paper.setting.n_test, paper.setting.canvas) == (4000, 2000, 64)
    quick = setting_config("rot-g2", SCALES["quick"], seed=5, device="cpu")
    assert (quick.setting.n_targets, quick.task.epochs, quick.seed) == (SCALES["quick"].n_targets, SCALES["quick"].task["epochs"], 5)
    assert json.loads(json.dumps(SCALES["quick"].baselines))  # plain data, recorded in experiment.json
    assert tuple(SCALES) == SCALE_NAMES
