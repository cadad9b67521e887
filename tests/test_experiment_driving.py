"""The driving experiment (Table 4) end to end at the tiny scale, on the one pipeline: outputs, resume, stages run
apart and merged, bad target folders."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics

import pytest
import torch

import scenefit.experiments.driving as driving
from scenefit.config import ConfigError
from scenefit.engines.base import LabelTable
from scenefit.experiments.cli import add_experiment_parser, cmd_experiment_driving
from scenefit.experiments.driving import METHODS, run_driving_experiment, seed_statistics
from scenefit.experiments.driving_figures import label_overlay, table4_csv, table4_markdown
from scenefit.runs import FolderError

QUIET = dict(progress=False, log=lambda s: None)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("driving") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only waits on a busy CPU
    try:
        yield out, run_driving_experiment(out, "tiny", seed=0, **QUIET)
    finally:
        torch.set_num_threads(threads)


def test_tiny_end_to_end(tiny_run):
    out, res = tiny_run
    rows = list(csv.DictReader((out / "table4.csv").open()))
    assert [r["method"] for r in rows] == ["oracle", "initial", "metasim", "ours"]
    assert [r["paper_miou_percent"] for r in rows] == ["46.9", "33.9", "35.3", "39.1"]
    for m in METHODS:
        assert 0.0 <= res["miou"][m] <= 1.0
        assert all(v is None or 0.0 <= v <= 1.0 for v in res["per_class"][m].values())
    assert {int(r["images"]) for r in rows} == {12}  # every training set: n_targets x per_target
    assert "| Learnt scenes by Ours |" in (out / "table4.md").read_text()
    saved = json.loads((out / "results.json").read_text())
    assert saved["miou"] == pytest.approx(res["miou"]) and saved["surrogate"]["resolution"] == [32, 80]  # fit_divisor 2 of 64x160
    for name in ("fig10_samples.png", "fig11_surrogate.png", "per_class_iou.png", "attributes.png", "metasim_curve.png"):
        assert (out / "figures" / name).stat().st_size > 1000
    assert len(list((out / "dataset" / "train").glob("*.png"))) == 12
    assert len(list((out / "dataset" / "train" / "masks").glob("*.png"))) == 12
    ms = saved["metasim"]
    assert ms["report"]["config"]["box_weight"] == 1.0 and len(ms["report"]["curve"]) == len(ms["report"]["outside_box"]) == 2
    assert 0.0 <= ms["at_bound_fraction"] <= 1.0 and ms["unit_std_mean"] > 0.0 and ms["feature_layer"] == "aspp"
    fit = saved["fit"]
    assert fit["method"] == "codebook-verify" and fit["features"] == "fit_net" and fit["layer"] == "probs"
    assert fit["chosen_codebook"] + fit["chosen_refined"] == 12 and saved["fit_features"]["resolution"] == [32, 80]
    # the choice is verified with R: the chosen candidate's loss is never worse than the best code's
    assert fit["mean_loss"] <= fit["mean_loss_best_code"] + 1e-6
    cal = fit["calibrate"]  # the tiny preset keeps the set-level shift on: a 3x3 grid, delta 0 among the candidates
    assert set(cal["delta"]) == {"sun_brightness", "sky_color"} and set(cal["delta"].values()) <= {-1.0, 0.0, 1.0}
    assert cal["mmd2_best"] <= cal["mmd2_start"] and len(cal["evaluated"]) == 9
    assert saved["fit"]["attribute_error"]["unit_mae"] >= 0.0  # built-in targets have true attributes


def test_resume_redoes_nothing(tiny_run, monkeypatch):
    out, res = tiny_run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")}

    def boom(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    import scenefit.methods as methods
    import scenefit.models as models
    import scenefit.fitjob as pipeline

    monkeypatch.setattr(pipeline, "fit_targets", boom)  # the fit itself
    monkeypatch.setattr(models, "train_surrogate", boom)
    monkeypatch.setattr(methods.BASELINES["metasim"][0], "fit", boom)
    again = run_driving_experiment(out, "tiny", seed=0, **QUIET)
    assert again["miou"] == res["miou"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")} == before


def test_another_seed_in_the_same_folder_is_refused(tiny_run):
    out, _ = tiny_run
    with pytest.raises(FolderError, match=r"holds a run of another problem \(.*config\.yaml: seed differ\); use another --out"):
        run_driving_experiment(out, "tiny", seed=1, **QUIET)


def test_bad_kitti_folder_gives_loader_error_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match=r"^KITTI image folder not found: .*nowhere/image_2$"):
        run_driving_experiment(out, "tiny", kitti=tmp_path / "nowhere", **QUIET)
    assert not out.exists()
    (tmp_path / "empty" / "image_2").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"KITTI image folder .*image_2 holds no files matching '\*\.png'"):
        run_driving_experiment(out, "tiny", kitti=tmp_path / "empty", **QUIET)
    assert not out.exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="unknown scale 'huge'; choose from: tiny, quick, paper"):
        run_driving_experiment(tmp_path / "x", "huge")
    with pytest.raises(ValueError, match="pass either kitti or cityscapes targets, not both"):
        run_driving_experiment(tmp_path / "x", "tiny", kitti="a", cityscapes="b")
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['fitting'\]; choose from: task, surrogate, features, fit"):
        run_driving_experiment(tmp_path / "x", "tiny", stages=["fitting"])
    with pytest.raises(ConfigError, match=r"fit.calibrate.attributes: 'lane_count' is categorical"):
        run_driving_experiment(tmp_path / "x", "tiny", overrides={"fit": {"calibrate": {"attributes": ["lane_count"]}}})
    assert not (tmp_path / "x").exists()


def test_parser_reaches_every_field(tmp_path):
    p = argparse.ArgumentParser(prog="scenefit")
    add_experiment_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["experiment", "driving", "--scale", "tiny", "--out", "x", "--kitti", "k", "--seed", "3",
                         "--set", "fit.verify.seeds=3", "--stages", "fit,ours", "--merge-from", "a", "--merge-from", "b"])
    assert (args.scale, args.out, str(args.kitti), args.cityscapes, args.seed, args.device) == ("tiny", "x", "k", None, 3, "cpu")
    assert args.func is cmd_experiment_driving and args.set == ["fit.verify.seeds=3"]
    assert (args.stages, [str(m) for m in args.merge_from]) == ("fit,ours", ["a", "b"])
    with pytest.raises(SystemExit):
        p.parse_args(["experiment", "driving", "--out", "x", "--kitti", "k", "--cityscapes", "c"])
    cfg = driving.driving_config("quick", overrides={"fit": {"verify": {"seeds": 3}}, "export": {"per_target": 4}})
    assert (cfg.fit.verify.seeds, cfg.export.per_target, cfg.fit.codebook.max_codes, cfg.fit_divisor) == (3, 4, 3000, 2)


def test_label_overlay_blends_and_keeps_ignored_pixels():
    table = LabelTable(("road", "sky"), ((128, 64, 128), (70, 130, 180)), 255)
    out = label_overlay(torch.zeros(1, 3, 2, 2), torch.tensor([[[0, 255], [1, 0]]]), table, alpha=0.5)
    assert torch.allclose(out[0, :, 0, 0] * 255, torch.tensor([64.0, 32.0, 64.0]))  # half of road's colour
    assert (out[0, :, 0, 1] == 0).all()


def test_stages_run_apart_and_merge(tiny_run, tmp_path):
    """--stages in two copies of a folder, joined by --merge-from, give the same rows as one run."""
    full, res = tiny_run
    a, b = tmp_path / "a", tmp_path / "b"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        part = run_driving_experiment(a, "tiny", stages=["task", "initial"], **QUIET)
        assert part["missing"] == ["metasim", "ours", "oracle"]
        with pytest.raises(FolderError, match=r"model 'features' .* is not in .*a/models and this call may not train it; run stage 'features' first"):
            run_driving_experiment(a, "tiny", stages=["fit"], **QUIET)
        shutil.copytree(a, b)
        run_driving_experiment(b, "tiny", stages=["oracle"], **QUIET)
        out = run_driving_experiment(a, "tiny", merge_from=[b], **QUIET)
    finally:
        torch.set_num_threads(threads)
    for m in METHODS:  # seeded per row and keyed: a folder built in pieces gives the one-folder run's rows, to the bit
        assert out["miou"][m] == res["miou"][m], m
    other = tmp_path / "other"
    run_driving_experiment(other, "tiny", stages=["task"], seed=5, **QUIET)
    with pytest.raises(FolderError, match=r"hold different targets; only folders of one target set merge"):
        run_driving_experiment(a, "tiny", merge_from=[other], **QUIET)


def test_task_seeds_pair_every_row_on_one_set(tiny_run, tmp_path):
    """evaluate.task_seeds=2 on a copy of the one-seed folder: seed 0 is that run's stages (nothing retrained), seed 1
    adds one stage per row, and the paired keys follow from the per-seed scores exactly."""
    full, res = tiny_run
    out = tmp_path / "seeds"
    shutil.copytree(full, out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        two = run_driving_experiment(out, "tiny", overrides={"evaluate": {"task_seeds": 2}}, **QUIET)
        more = run_driving_experiment(out, "tiny", stages=["initial"], overrides={"evaluate": {"task_seeds": 3}}, **QUIET)
    finally:
        torch.set_num_threads(threads)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")}
    assert {k: after[k] for k in before} == before  # seed 0 of every row is the one-seed run's stage
    assert set(after) - set(before) == {f"score-{m}-seed1.json" for m in METHODS} | {"score-initial-seed2.json"}
    assert more["missing"] == ["metasim", "ours", "oracle"]  # --stages initial ran the initial row's third seed only
    assert (two["task_seeds"], two["task_net_seeds"], two["miou"]) == (2, [5, 6], res["miou"])
    seeds = two["miou_seeds"]
    init, orc = seeds["initial"], seeds["oracle"]
    for m in METHODS:
        assert len(seeds[m]) == 2 and seeds[m][0] == res["miou"][m]  # seed 0 is today's score, to the bit
        assert two["miou_mean"][m] == pytest.approx(statistics.mean(seeds[m]), abs=1e-15)
        assert two["miou_std"][m] == pytest.approx(statistics.stdev(seeds[m]), abs=1e-15)  # sample std (n - 1)
    for m in ("metasim", "ours", "oracle"):
        d = [seeds[m][k] - init[k] for k in range(2)]
        assert two["paired_vs_initial"][m]["per_seed"] == d
        assert two["paired_vs_initial"][m]["mean"] == pytest.approx(statistics.mean(d), abs=1e-15)
    for m in ("metasim", "ours"):
        g = two["gap_closed"][m]
        assert g["per_seed"] == [(seeds[m][k] - init[k]) / (orc[k] - init[k]) if orc[k] != init[k] else None for k in range(2)]
        top = statistics.mean(orc) - statistics.mean(init)
        assert top != 0 and g["ratio_of_means"] == pytest.approx((statistics.mean(seeds[m]) - statistics.mean(init)) / top)
    assert json.loads((out / "results.json").read_text())["miou_seeds"] == seeds
    md = (out / "table4.md").read_text()
    ours = f"| Learnt scenes by Ours | {100 * two['miou_mean']['ours']:.1f} ± {100 * two['miou_std']['ours']:.1f} | "
    assert "mIoU (%), mean ± std over 2 task seeds" in md and ours in md and "with seeds 5, 6 (the same for every row)" in md


def test_seed_statistics_by_hand():
    s = seed_statistics({"initial": [0.4, 0.5], "metasim": [0.4, 0.4], "ours": [0.5, 0.6], "oracle": [0.6, 0.9]})
    assert s["miou_mean"]["oracle"] == pytest.approx(0.75) and s["miou_std"]["oracle"] == pytest.approx(0.3 / 2**0.5)
    assert s["paired_vs_initial"]["oracle"]["per_seed"] == pytest.approx([0.2, 0.4])
    assert s["gap_closed"]["ours"]["per_seed"] == pytest.approx([0.5, 0.25]) and s["gap_closed"]["ours"]["mean"] == pytest.approx(0.375)
    assert s["gap_closed"]["ours"]["ratio_of_means"] == pytest.approx(0.1 / 0.3)
    assert s["gap_closed"]["metasim"]["per_seed"] == pytest.approx([0.0, -0.25])
    one = seed_statistics({m: [0.5] for m in METHODS})
    assert one["miou_std"]["ours"] is None and one["gap_closed"]["ours"] == {"per_seed": [None], "mean": None, "ratio_of_means": None}
    with pytest.raises(ValueError, match=r"^every row needs the same, non-zero number of task seeds; got \{'initial': 2, 'metasim': 1"):
        seed_statistics({"initial": [0.4, 0.5], "metasim": [0.4], "ours": [0.5, 0.6], "oracle": [0.6, 0.9]})


def test_task_seeds_below_one_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"^evaluate\.task_seeds must be >= 1 \(task networks trained per training set\), got 0$"):
        run_driving_experiment(tmp_path / "x", "tiny", overrides={"evaluate": {"task_seeds": 0}}, **QUIET)
    assert not (tmp_path / "x").exists()


def test_table4_markdown_rounds_once():
    res = {"miou": {"initial": 0.4959499, "metasim": 0.1195819, "ours": 0.4425881, "oracle": 0.6585254},
           "images": {m: 2000 for m in METHODS}, "fit_features": {"images": 2000}, "feature_layer": "probs", "metasim_layer": "aspp",
           "surrogate": {"resolution": [48, 160], "heldout_l1": 0.101, "mean_image_l1": 0.148, "noise_floor": 0.131, "steps": 6000},
           "targets": {"kind": "builtin"}, "scale": "paper", "seed": 0, "classes": ["road"], "seconds": {"fit": 1.0}}
    md = table4_markdown(res)
    assert "| Oracle: labeled target images | 65.9 | 2000 | VKITTI | 46.9 |" in md  # 65.85254 rounded once, not 65.85 -> 65.8
    assert "| Learnt scenes by Ours | 44.3 | 2000 | Learnt scenes by Ours | 39.1 |" in md
    assert "ours fits on the fit-feature network FN (layer `probs`); Meta-Sim's MMD compares F's layer `aspp`" in md
    assert "oracle,Oracle: labeled target images,65.85,2000" in table4_csv(res)


def test_tiny_with_the_street_camera_compares_it_with_the_targets_look(tmp_path):
    """The camera engine through the whole experiment: its look attributes are fitted with the look term, the attribute
    errors leave them out (the targets' look came from street-grade), and the camera comparison is written."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_driving_experiment(tmp_path / "cam", "tiny", seed=0, overrides={"engine": {"args": {"camera": True}}}, **QUIET)
    finally:
        torch.set_num_threads(threads)
    assert len(res["look_attributes"]) == 10 and res["look_attributes"][0] == "exposure"
    assert res["fit"]["attribute_error_skipped"]["attributes"] == res["look_attributes"]
    assert not any(k.startswith("exposure") for k in res["fit"]["attribute_error"])
    cam = res["camera"]
    assert list(cam["sets"]) == ["targets' look", "ours", "Meta-Sim", "initial (neutral camera)"]
    neutral = cam["sets"]["initial (neutral camera)"]
    assert neutral["level"] == pytest.approx(0.5, abs=1 / 255) and neutral["noise"] == 0.0 and neutral["corner"] == 1.0
    assert cam["sets"]["targets' look"]["noise"]["mean"] > 0.01  # street-grade adds sensor noise
    md = (tmp_path / "cam" / "table4.md").read_text()
    assert "plus the look term on its 10 look attributes" in md and "| red_blue |" in md
    assert (tmp_path / "cam" / "figures" / "camera_vs_look.png").stat().st_size > 1000
