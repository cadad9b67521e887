"""The driving experiment (Table 4) end to end at tiny scale: outputs, resume, bad target folders."""

from __future__ import annotations

import argparse
import csv
import json

import pytest
import torch

import scenefit.experiments.driving as driving
from scenefit.config import ConfigError
from scenefit.experiments.driving import METHODS, run_driving_experiment
from scenefit.experiments.driving_cli import add_driving_parser, cmd_experiment_driving
from scenefit.experiments.driving_figures import label_overlay

STAGES = ("targets", "task", "surrogate", "features", "fit", "calibrate", "ours", "ours_per_target", "metasim", "oracle")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("driving") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only waits on a busy CPU (measured 13 s with 1 thread vs 70 s with 2)
    try:
        yield out, run_driving_experiment(out, "tiny", seed=0, progress=False, log=lambda s: None)
    finally:
        torch.set_num_threads(threads)


def test_tiny_end_to_end(tiny_run):
    out, res = tiny_run
    rows = list(csv.DictReader((out / "table4.csv").open()))
    assert [r["method"] for r in rows] == ["oracle", "initial", "metasim", "ours", "ours_per_target"]
    assert [r["paper_miou_percent"] for r in rows] == ["46.9", "33.9", "35.3", "39.1", ""]
    for m in METHODS:
        assert 0.0 <= res["miou"][m] <= 1.0
        assert all(v is None or 0.0 <= v <= 1.0 for v in res["per_class"][m].values())
    assert {float(r["miou_percent"]) for r in rows} == {round(100 * res["miou"][m], 2) for m in METHODS}
    # every training set has the same size: n_targets x renders_per_target
    assert {int(r["images"]) for r in rows} == {driving.SCALES["tiny"].n_synthetic}
    assert "| Learnt scenes by Ours |" in (out / "table4.md").read_text()
    saved = json.loads((out / "results.json").read_text())
    assert saved["miou"] == pytest.approx(res["miou"]) and set(saved["seconds"]) == set(STAGES)
    assert saved["surrogate"]["resolution"] == [32, 80]  # fit_factor 2 of the tiny 64 x 160 engine
    for name in ("fig10_samples.png", "fig11_surrogate.png", "per_class_iou.png", "attributes.png", "metasim_curve.png"):
        assert (out / "figures" / name).stat().st_size > 1000
    # ours' dataset: one labeled PNG pair per fitted target
    n = driving.SCALES["tiny"].n_targets
    assert len(list((out / "dataset" / "train").glob("*.png"))) == n
    assert len(list((out / "dataset" / "train" / "labels").glob("*.png"))) == n
    # the chosen candidate's content loss under R is never worse than the best code's
    ms = saved["stages"]["metasim"]  # Meta-Sim's spread: the collapse check, and its box pull-back
    assert ms["budget"]["box_weight"] == 1.0 and len(ms["mmd2_curve"]) == len(ms["outside_box_curve"]) == 2
    assert 0.0 <= ms["at_bound_fraction"] <= 1.0 and ms["unit_std_mean"] > 0.0 and ms["outside_box_curve"][0] == 0.0
    fit = saved["fit"]
    # the fit compared FN's features (stage features), trained at the fitting resolution
    assert fit["features"] == "fit_net" and saved["fit_features"]["resolution"] == [32, 80]
    assert saved["fit_features"]["fit_net"]["images"] == 16 and 0.0 <= saved["fit_features"]["miou_fit_resolution"] <= 1.0
    assert json.loads((out / "fit_net.json").read_text())["recipe"]["epochs"] == 1
    assert fit["chosen_codebook"] + fit["chosen_refined"] == n
    assert fit["mean_loss_r"] <= fit["mean_loss_r_best_code"] + 1e-7
    # the set-level shift: the tiny grid is {-1, 0, 1}^2, delta 0 is a candidate, so the chosen MMD² is never worse
    cal = saved["calibrate"]
    assert cal["attributes"] == ["sun_brightness", "sky_color"] and set(cal["delta"].values()) <= {-1.0, 0.0, 1.0}
    assert cal["mmd2_best"] <= cal["mmd2_start"] and len(json.loads((out / "stages" / "calibrate.json").read_text())["evaluated"]) == 9
    # ours' dataset is rendered from the calibrated rows; the ablation row from the rows before the shift
    meta = list(csv.DictReader((out / "dataset" / "train" / "metadata.csv").open()))
    with driving.StreetEngine(height=64, width=160) as eng:
        final = driving.ours_attributes(out, eng.space)
        before = driving.load_fit(out / "fitted.parquet", eng.space)[0]
    for name in cal["attributes"]:
        j = eng.space.index(name)
        assert [float(r[name]) for r in meta] == pytest.approx(final[:, j].tolist(), abs=1e-5)
        u = eng.space.normalize(before)[:, j] + cal["delta"][name]
        assert eng.space.normalize(final)[:, j].tolist() == pytest.approx(u.clamp(0, 1).tolist(), abs=1e-5)


def test_resume_skips_finished_stages(tiny_run, monkeypatch):
    out, res = tiny_run
    before = {s: (out / "stages" / f"{s}.json").stat().st_mtime_ns for s in STAGES}

    def boom(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    for name in ("train_segmenter", "train_fit_net", "train_surrogate", "fit_targets", "make_baseline", "load_targets", "set_level_shift"):
        monkeypatch.setattr(driving, name, boom)
    again = run_driving_experiment(out, "tiny", seed=0, progress=False, log=lambda s: None)
    assert again["miou"] == res["miou"]
    assert {s: (out / "stages" / f"{s}.json").stat().st_mtime_ns for s in STAGES} == before


def test_resume_refuses_another_config(tiny_run):
    out, _ = tiny_run
    with pytest.raises(ConfigError, match=r"config\.json holds a driving run that differs in \['seed'\]"):
        run_driving_experiment(out, "tiny", seed=1, progress=False, log=lambda s: None)


def test_bad_kitti_folder_gives_loader_error_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match=r"^KITTI image folder not found: .*nowhere/image_2$"):
        run_driving_experiment(out, "tiny", progress=False, kitti=tmp_path / "nowhere", log=lambda s: None)
    assert not out.exists()
    (tmp_path / "empty" / "image_2").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"KITTI image folder .*image_2 holds no files matching '\*\.png'"):
        run_driving_experiment(out, "tiny", progress=False, kitti=tmp_path / "empty", log=lambda s: None)
    assert not out.exists()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown scale 'huge'; choose from: tiny, quick, paper"):
        run_driving_experiment("unused", "huge")
    with pytest.raises(ValueError, match="pass either kitti or cityscapes targets, not both"):
        run_driving_experiment("unused", "tiny", kitti="a", cityscapes="b")


def test_parser():
    p = argparse.ArgumentParser(prog="scenefit experiment")
    add_driving_parser(p.add_subparsers(dest="experiment", required=True))
    args = p.parse_args(["driving", "--scale", "tiny", "--out", "x", "--kitti", "k", "--seed", "3"])
    assert (args.scale, args.out, str(args.kitti), args.cityscapes, args.seed, args.device) == ("tiny", "x", "k", None, 3, "cpu")
    assert args.func is cmd_experiment_driving
    assert (args.stages, args.set_level, args.merge_from, args.fit_features) == (None, None, [], None)
    args = p.parse_args(["driving", "--out", "x", "--stages", "fit,ours", "--set-level", "none", "--merge-from", "a", "--merge-from", "b",
                         "--fit-features", "task"])
    assert (args.stages, args.set_level, [str(m) for m in args.merge_from], args.fit_features) == ("fit,ours", "none", ["a", "b"], "task")
    with pytest.raises(SystemExit):
        p.parse_args(["driving", "--out", "x", "--kitti", "k", "--cityscapes", "c"])


def test_label_overlay_blends_and_keeps_ignored_pixels():
    img = torch.zeros(1, 3, 2, 2)
    lab = torch.tensor([[[0, 255], [10, 13]]])  # road, ignore, sky, car
    out = label_overlay(img, lab, alpha=0.5)
    assert torch.allclose(out[0, :, 0, 0] * 255, torch.tensor([64.0, 32.0, 64.0]))  # half of road's (128, 64, 128)
    assert (out[0, :, 0, 1] == 0).all()


def test_stages_run_apart_and_merge(tiny_run, tmp_path):
    """--stages in two copies of a folder, joined by merge_stages, give the same rows as one run; calibration off."""
    import shutil

    full, res = tiny_run
    a, b = tmp_path / "a", tmp_path / "b"
    quiet = dict(progress=False, log=lambda s: None, set_level=())
    with pytest.raises(ConfigError, match=r"^.*/a has no targets yet; run stage 'targets' first or leave out --stages$"):
        run_driving_experiment(a, "tiny", stages=["fit"], **quiet)
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['fitting'\]; choose from: targets, task, surrogate"):
        run_driving_experiment(a, "tiny", stages=["fitting"], **quiet)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        part = run_driving_experiment(a, "tiny", stages=["targets", "task"], **quiet)
        assert part["done"] == ["targets", "task"] and "ours_per_target" not in part["missing"]  # no ablation row when off
        with pytest.raises(ConfigError, match=r"stage 'ours' needs stage 'calibrate', which .*/a has not finished"):
            run_driving_experiment(a, "tiny", stages=["ours"], **quiet)
        shutil.copytree(a, b)
        run_driving_experiment(b, "tiny", stages=["oracle"], **quiet)
        assert driving.merge_stages(b, a, log=lambda s: None) == ["oracle"]
        assert driving.merge_stages(b, a, log=lambda s: None) == []  # nothing new the second time
        out = run_driving_experiment(a, "tiny", **quiet)
    finally:
        torch.set_num_threads(threads)
    # stages that do not read set_level match the one-folder run with calibration on, to the bit
    for m in ("initial", "oracle"):
        assert out["miou"][m] == res["miou"][m]
    assert json.loads((a / "stages" / "fit.json").read_text())["mean_loss_r"] == json.loads((full / "stages" / "fit.json").read_text())["mean_loss_r"]
    assert set(out["miou"]) == {"initial", "metasim", "ours", "oracle"}
    assert [r["method"] for r in csv.DictReader((a / "table4.csv").open())] == ["oracle", "initial", "metasim", "ours"]
    assert out["calibrate"]["delta"] == {} and out["calibrate"]["attributes"] == []
    with driving.StreetEngine(height=64, width=160) as eng:  # off: ours trains on the fitted rows as they are
        assert torch.equal(driving.ours_attributes(a, eng.space), driving.load_fit(a / "fitted.parquet", eng.space)[0])
    # folders of other targets do not merge
    other = tmp_path / "other"
    shutil.copytree(a, other)
    rec = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**rec, "seed": 5}))
    with pytest.raises(ConfigError, match=r"have different targets \(seed, source or sizes\); only folders of one target set merge"):
        driving.merge_stages(other, a)
    cfg = json.loads((b / "config.json").read_text())
    raw = bytearray((b / "targets.safetensors").read_bytes())
    raw[-1] ^= 1
    (b / "targets.safetensors").write_bytes(bytes(raw))
    assert cfg == json.loads((a / "config.json").read_text())
    with pytest.raises(ConfigError, match=r"b/targets\.safetensors differs from .*a/targets\.safetensors; stages computed from other inputs"):
        driving.merge_stages(b, a)


def test_merge_from_another_config_copies_only_untouched_stages(tiny_run, tmp_path):
    """A run fitting on F (``fit_features='task'``, calibration off) reuses the FN run's targets, F, G, Meta-Sim and
    oracle, and computes its own fit: the CLI regenerates the targets, which must match the source to the byte."""
    full, res = tiny_run
    c = tmp_path / "c"
    logs: list[str] = []
    p = argparse.ArgumentParser()
    add_driving_parser(p.add_subparsers(dest="experiment"))
    args = p.parse_args(["driving", "--scale", "tiny", "--out", str(c), "--fit-features", "task", "--set-level", "none",
                         "--merge-from", str(full), "--stages", "targets", "--no-progress"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cmd_experiment_driving(args) == 0
        assert sorted(p.name for p in (c / "stages").glob("*.json")) == ["metasim.json", "oracle.json", "surrogate.json", "targets.json", "task.json"]
        assert driving.merge_stages(full, c, log=logs.append) == []  # nothing new; the fit-dependent stages are named
        assert logs[0].endswith("not copied, the configs differ: features (fit_net differ); fit (fit_net differ); "
                                "calibrate (fit_net, set_level differ); ours (fit_net, set_level differ); "
                                "ours_per_target (fit_net differ)")
        out = run_driving_experiment(c, "tiny", progress=False, log=lambda s: None, set_level=(), fit_features="task")
    finally:
        torch.set_num_threads(threads)
    assert json.loads((c / "stages" / "fit.json").read_text())["features"] == "task" and not (c / "fit_net.safetensors").exists()
    assert out["fit_features"] is None and "features" not in out["stages"]
    for m in ("initial", "metasim", "oracle"):  # copied, not recomputed
        assert out["miou"][m] == res["miou"][m]
    with pytest.raises(ValueError, match=r"^fit_features must be 'fn' or 'task', got 'F'$"):
        run_driving_experiment(c, "tiny", fit_features="F")


def test_set_level_names_are_checked_before_any_stage(tmp_path):
    with pytest.raises(ConfigError, match=r"^set-level attribute 'lane_count' is not a continuous attribute of the street engine; "
                                          r"choose from: camera_height, camera_pitch, "):
        run_driving_experiment(tmp_path / "run", "tiny", progress=False, log=lambda s: None, set_level=("lane_count",))
    assert not (tmp_path / "run").exists()


def test_table4_markdown_rounds_once():
    from scenefit.experiments.driving_figures import table4_csv, table4_markdown

    methods = ("initial", "metasim", "ours", "oracle")
    res = {"miou": {"initial": 0.4959499, "metasim": 0.1195819, "ours": 0.4425881, "oracle": 0.6585254},
           "stages": {("task" if m == "initial" else m): {"images": 2000} for m in methods},
           "surrogate": {"resolution": [48, 160], "heldout_l1": 0.101, "mean_image_l1": 0.148, "noise_floor": 0.131, "steps": 6000},
           "targets": {"kind": "builtin"}, "scale": "paper", "seed": 0, "classes": ["road"], "seconds": {"task": 1.0}}
    md = table4_markdown(res)
    assert "| Oracle: labeled target images | 65.9 | 2000 | VKITTI | 46.9 |" in md  # 65.85254 rounded once, not 65.85 -> 65.8
    assert "| Learnt scenes by Ours | 44.3 | 2000 | Learnt scenes by Ours | 39.1 |" in md
    assert "ours_per_target" not in table4_csv(res) and "oracle,Oracle: labeled target images,65.85,2000" in table4_csv(res)
