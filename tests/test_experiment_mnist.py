"""The MNIST experiment at the tiny scale: every method end to end on the one pipeline, shared models, resume,
reproducibility, filters."""

from __future__ import annotations

import argparse
import csv
import json
import re

import pytest
import torch

import scenefit.experiments.mnist as mnist_mod
from scenefit.config import ConfigError
from scenefit.experiments import MNIST_METHODS
from scenefit.experiments.cli import add_experiment_parser
from scenefit.experiments.mnist import run_mnist_experiment, setting_config
from scenefit.scenarios import PAPER_SETTINGS

SETTINGS = ["rot-g2", "trans-g1"]
FIGURES = [
    "fig3_engine_vs_surrogate_rot.png", "fig4_engine_vs_surrogate_trans.png", "fig5_samples_rot-g2.png",
    "fig6_samples_trans-g1.png", "fig7_rotation_hist.png", "fig8_positions.png", "fig9_sensitivity.png",
    "fig_set_features_rot-g2.png", "fig_set_features_trans-g1.png",
]
ALL_SETTINGS = ", ".join(PAPER_SETTINGS)
ALL_METHODS = ", ".join(MNIST_METHODS)


def quiet(*args) -> None:
    pass


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield out, run_mnist_experiment(out, "tiny", SETTINGS, None, seed=0, device="cpu", progress=False, log=quiet)
    finally:
        torch.set_num_threads(threads)


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
        assert list(summary["results"][s]) == list(MNIST_METHODS)
        for m, r in summary["results"][s].items():
            assert 0.0 <= r["accuracy"] <= 1.0
            assert r["n_images"] == 48, (s, m)
            if m == "oracle":
                assert r["metrics"] is None
            else:
                assert r["metrics"]["layer"] == "probe"
                assert all(torch.isfinite(torch.tensor(r["metrics"][k])) for k in ("mmd2", "fid", "kid_mean", "bandwidth"))
    assert summary["results"]["rot-g2"]["sdr"]["uses_target_labels"] is True
    assert summary["results"]["rot-g2"]["metasim"]["uses_target_labels"] is False
    # Meta-Sim and Attribute Descent compare sets on the probe P; SDR reads no features at all
    assert [summary["results"]["rot-g2"][m]["info"]["feature_layer"] for m in ("metasim", "attribute-descent", "sdr")] == ["probe", "probe", "none"]
    assert "rotation_median_abs" in summary["results"]["rot-g2"]["ours"]["info"]["attribute_error"]
    assert "position_median_px" in summary["results"]["trans-g1"]["ours"]["info"]["attribute_error"]
    # the paper's Algorithm 1: its own run folder, plain fit from initial draws, lr and steps chosen on the grid
    for s in SETTINGS:
        sel = summary["results"][s]["paper"]["info"]["plain_select"]
        assert sel["targets"] == 16 and [g[:2] for g in sel["grid"]] == [[lr, k] for lr in mnist_mod.PAPER_LRS for k in (1, 2)]
        best = min(sel["grid"], key=lambda g: g[2])
        assert [sel["lr"], sel["steps"]] == best[:2]
        fit = json.loads((out / s / "paper-alg1" / "stages" / "fit.json").read_text())
        assert fit["method"] == "plain" and fit["features"] == "task" and fit["plain_select"] == sel
    assert f"lr {summary['results']['rot-g2']['paper']['info']['plain_select']['lr']:g}" in (out / "table2.md").read_text()
    # the error breakdown: ours and the oracle as in Table 2, each swap's gain its score minus ours
    assert set(summary["breakdown"]) == set(SETTINGS) and (out / "breakdown.md").is_file()
    for s, groups in (("rot-g2", ["rotation", "rotation flips", "digit"]), ("trans-g1", ["rotation", "rotation flips", "position", "digit"])):
        b, rows = summary["breakdown"][s], summary["results"][s]
        assert list(b["swaps"]) == groups
        assert b["ours"] == rows["ours"]["accuracy"] and b["oracle"] == rows["oracle"]["accuracy"] and b["task_seeds"] == 1
        assert b["attributes"] == pytest.approx(b["ceiling"] - b["ours"]) and b["not_attribute"] == pytest.approx(b["oracle"] - b["ceiling"])
        for g, w in b["swaps"].items():
            score = json.loads((out / s / "stages" / f"score-swap-{g}.json").read_text())["score"]
            assert w["gain"] == pytest.approx(score - b["ours"]) and 0.0 <= w["rows_changed"] <= 1.0
        assert b["attribute_error"]["rotation_flip_fraction"] == rows["ours"]["info"]["attribute_error"]["rotation_flip_fraction"]
    # each setting is a pipeline run folder; F, G and E are shared by the settings of one engine family
    assert (out / "rot-g2" / "config.yaml").is_file() and (out / "rot-g2" / "stages" / "score-ours.json").is_file()
    kinds = sorted(p.name.split("-")[0] for p in (out / "models").iterdir())
    # two families, not two settings each; P only where a baseline or set metric read it
    assert kinds == ["encoder", "encoder", "probe", "probe", "surrogate", "surrogate", "task", "task"]


def test_table2_rows_and_columns(tiny_run):
    out, summary = tiny_run
    rows = read_csv(out / "table2.csv")
    assert list(rows[0]) == ["block", "method", *PAPER_SETTINGS]
    measured = [r for r in rows if r["block"] == "measured"]
    paper = [r for r in rows if r["block"] == "paper"]
    assert [r["method"] for r in measured] == list(MNIST_METHODS)
    assert [r["method"] for r in paper] == ["initial", "metasim", "attribute-descent", "sdr", "ours"]
    for r in measured:
        for s in PAPER_SETTINGS:
            if s in SETTINGS:
                assert float(r[s]) == pytest.approx(100 * summary["results"][s][r["method"]]["accuracy"], abs=0.05)
            else:
                assert r[s] == ""
    md = (out / "table2.md").read_text()
    assert "## measured" in md and "validation split" in md
    assert "ours is the amortized encoder E (trained on engine renders) read on each target, its attributes rendered by R" in md
    rows3 = read_csv(out / "table3.csv")
    assert list(rows3[0])[2:] == [f"{s}_{c}" for s in ("rot-g5", "trans-g4") for c in ("mmd", "fid", "kid", "acc")]


def test_resume_recomputes_nothing(tiny_run, monkeypatch):
    out, summary = tiny_run
    table = (out / "table2.csv").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/stages/*.json")}

    def boom(*args, **kwargs):
        raise AssertionError("a finished stage was recomputed")

    import scenefit.fitjob as pipeline

    monkeypatch.setattr(pipeline, "fit_targets", boom)  # the fit itself
    for cls in ("Classifier",):
        monkeypatch.setattr(getattr(__import__("scenefit.tasks", fromlist=[cls]), cls), "train_net", boom)
    again = run_mnist_experiment(out, "tiny", SETTINGS, None, seed=0, device="cpu", progress=False, log=quiet)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/stages/*.json")} == stamps
    assert (out / "table2.csv").read_text() == table and again["results"] == summary["results"]


def test_a_recomputed_job_gives_the_same_numbers(tiny_run):
    out, summary = tiny_run
    for m in ("metasim", "ours"):
        for stage in (f"score-{m}", f"metrics-{m}", "fit" if m == "ours" else f"baseline-{m}"):
            (out / "rot-g2" / "stages" / f"{stage}.json").unlink()
    again = run_mnist_experiment(out, "tiny", ["rot-g2"], ["metasim", "ours"], seed=0, device="cpu", progress=False, log=quiet)
    for m in ("metasim", "ours"):
        assert again["results"]["rot-g2"][m]["accuracy"] == summary["results"]["rot-g2"][m]["accuracy"]
        assert again["results"]["rot-g2"][m]["metrics"]["mmd2"] == summary["results"]["rot-g2"][m]["metrics"]["mmd2"]


def test_other_seed_in_same_folder_is_refused(tiny_run):
    out, _ = tiny_run
    with pytest.raises(ConfigError, match=r"holds an experiment with scale 'tiny', seed 0 and --set \{\} \(this call: scale 'tiny', "
                                          r"seed 1, --set \{\}\); use another --out"):
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


def test_cli_parser_and_set(tmp_path):
    p = argparse.ArgumentParser(prog="scenefit")
    add_experiment_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["experiment", "mnist", "--scale", "tiny", "--out", str(tmp_path / "o"), "--settings", "rot-g2,rot-g9",
                         "--methods", "initial,oracle", "--seed", "3", "--set", "task.epochs=2"])
    assert (args.scale, args.seed, args.device, args.methods, args.set) == ("tiny", 3, "cpu", "initial,oracle", ["task.epochs=2"])
    with pytest.raises(ValueError, match=re.escape(f"unknown setting 'rot-g9'; choose from: {ALL_SETTINGS}")):
        args.func(args)


def test_scales_are_preset_overlays():
    paper = setting_config("trans-g4", "paper")
    assert (paper.setting.n_targets, paper.setting.n_test, paper.engine.args["canvas"], paper.baselines.validation) == (4000, 2000, 64, 500)
    quick = setting_config("rot-g2", "quick", seed=5, overrides={"baselines": {"sdr": {"iterations": 7}}})
    assert (quick.setting.n_targets, quick.task.epochs, quick.seed, quick.encoder.steps) == (400, 12, 5, 600)
    assert (quick.baselines.sdr.iterations, quick.baselines.sdr.episode_size, quick.baselines.metasim.iterations) == (7, 150, 70)
    assert json.loads(json.dumps(quick.to_dict()))["fit"]["codebook"]["grid_periodic"] == 24
    with pytest.raises(ConfigError, match="unknown scale 'huge'"):
        setting_config("rot-g2", "huge")
    assert mnist_mod.PREFERRED["rot"][0] == "rot-g5"


def test_a_setting_whose_fit_is_stale_is_left_out_of_the_figures_not_fatal(tiny_run, tmp_path):
    # a setting fitted by other code or presets (here: its fit stage gone) must not stop another setting's rerun
    # at the figures, after the work is done
    import shutil

    src, summary = tiny_run
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    (out / "trans-g1" / "stages" / "fit.json").unlink()
    logs: list[str] = []
    again = run_mnist_experiment(out, "tiny", ["rot-g2"], ["ours"], seed=0, device="cpu", progress=False, log=logs.append)
    assert again["results"]["rot-g2"]["ours"]["accuracy"] == summary["results"]["rot-g2"]["ours"]["accuracy"]
    left = [m for m in logs if m.startswith("[mnist] figures: trans-g1 ours left out (stage 'fit' has not finished in")]
    assert len(left) == 1, logs
    assert (out / "figures" / "fig5_samples_rot-g2.png").is_file()
