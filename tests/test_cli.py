"""The main commands end to end at a tiny scale: run, resume, config-keyed reuse, fit on a folder, check, evaluate."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from scenefit.cli import main

TINY = ["--set", "setting.n_targets=40", "--set", "setting.n_test=40", "--set", "surrogate.max_steps=20",
        "--set", "surrogate.holdout=64", "--set", "encoder.steps=5", "--set", "task.epochs=1", "--set", "fit.steps=2",
        "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "rot-g2"
    assert main(["run", "rot-g2", "--out", str(out), *TINY]) == 0
    return out


def stamps(folder):
    return {p.relative_to(folder): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_run_writes_results_dataset_and_summary(tiny_run, capsys):
    res = json.loads((tiny_run / "results.json").read_text())
    assert res["metric"] == "accuracy" and set(res["scores"]) == {"initial", "ours", "oracle"}
    for k in ("initial", "ours", "oracle"):
        assert 0.0 <= res["scores"][k] <= 1.0 and res["accuracy"][k] == res["scores"][k]
    assert 0.0 <= res["attribute_error"]["rotation_median_abs"] <= 180.0
    assert "position_median_px" not in res["attribute_error"]  # rot settings have no tx/ty
    assert (tiny_run / "summary.md").read_text().startswith("# scenefit run: rot-g2")
    assert (tiny_run / "samples.png").stat().st_size > 1000
    assert len(list((tiny_run / "dataset" / "train").glob("*.png"))) == 40
    assert sorted(p.name.split("-")[0] for p in (tiny_run / "models").iterdir()) == ["encoder", "surrogate", "task"]
    assert json.loads((tiny_run / ".scenefit").read_text())["kind"] == "run"


def test_rerun_resumes_without_retraining(tiny_run, capsys):
    before = stamps(tiny_run / "models")
    marker = (tiny_run / "stages" / "fit.json").stat().st_mtime_ns
    assert main(["run", "rot-g2", "--out", str(tiny_run), *TINY]) == 0
    assert stamps(tiny_run / "models") == before and (tiny_run / "stages" / "fit.json").stat().st_mtime_ns == marker
    assert "surrogate: reusing the trained model" in capsys.readouterr().out


def test_rerun_with_more_task_seeds_keeps_seed_0_and_pairs_the_others(tiny_run, tmp_path, capsys):
    run = tmp_path / "seeds"
    shutil.copytree(tiny_run, run)
    before = json.loads((run / "results.json").read_text())
    assert before["task_seeds"] == 1 and before["scores_seeds"] == {m: [before["scores"][m]] for m in before["scores"]}
    assert main(["run", "rot-g2", "--out", str(run), *TINY, "--set", "evaluate.task_seeds=2"]) == 0
    res = json.loads((run / "results.json").read_text())
    assert res["task_seeds"] == 2 and res["scores"] == before["scores"]
    for m in ("initial", "ours", "oracle"):
        assert len(res["scores_seeds"][m]) == 2 and res["scores_seeds"][m][0] == before["scores"][m]
        assert (run / "stages" / f"score-{m}-seed1.json").is_file()
    summary = (run / "summary.md").read_text()
    assert "| training set | accuracy on T (task seed 0) | mean ± sd over 2 task seeds |" in summary


def test_rerun_with_other_problem_is_refused(tiny_run, capsys):
    assert main(["run", "rot-g2", "--out", str(tiny_run), *TINY, "--seed", "9"]) == 2
    err = capsys.readouterr().err
    assert f"{tiny_run} holds a run of another problem ({tiny_run / 'config.yaml'}: seed differ); use another --out" in err
    assert main(["run", "rot-g1", "--out", str(tiny_run), *TINY]) == 2
    assert f"({tiny_run / 'config.yaml'}: setting differ)" in capsys.readouterr().err


def test_rerun_with_other_fit_settings_reuses_f_g_e(tiny_run, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    models = stamps(run / "models")
    fit = (run / "stages" / "fit.json").stat().st_mtime_ns
    assert main(["run", "rot-g2", "--out", str(run), *TINY[:-1], "--set", "fit.amortized.top_angles=2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "task: reusing" in out and "surrogate: reusing" in out and "encoder: reusing" in out
    assert stamps(run / "models") == models
    assert (run / "stages" / "fit.json").stat().st_mtime_ns != fit
    assert json.loads((run / "stages" / "fit.json").read_text())["candidates_per_target"] == 2


def test_evaluate_recreates_a_deleted_dataset(tiny_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "dataset")
    assert main(["evaluate", str(run), "--no-progress"]) == 0
    assert len(list((run / "dataset" / "train").glob("*.png"))) == 40


def write_scans(folder, n=3, size=60):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8)).save(folder / f"scan{i}.png")


def test_fit_on_an_image_folder_reads_models_and_never_changes_them(tiny_run, tmp_path):
    write_scans(tmp_path / "scans")
    before = stamps(tiny_run)
    out = tmp_path / "synthetic"
    with pytest.warns(UserWarning, match="resized 3 of 3 images to 48x48"):
        assert main(["fit", "rot-g2", "--targets", str(tmp_path / "scans"), "--out", str(out), "--models", str(tiny_run), *TINY]) == 0
    assert stamps(tiny_run) == before  # --models is read, never written
    from scenefit.datasets import read_metadata

    meta = read_metadata(out)
    assert list(meta)[:4] == ["file_name", "label", "rotation", "digit"] and meta["target"] == ["scan0.png", "scan1.png", "scan2.png"]
    assert (out / "fitted.parquet").is_file() and json.loads((out / "manifest.json").read_text())["fit"]["method"] == "amortized"
    md = (out / "fit_report.md").read_text()  # the report lies beside the dataset and is not a row of it
    assert md.startswith("# Fit report\n\n3 targets fitted.") and (out / "fit_report_worst.png").is_file()
    assert "| rotation | " in md and "| digit | " in md
    import datasets

    assert len(datasets.load_dataset("imagefolder", data_dir=str(out), split="train", cache_dir=str(tmp_path / "hf"))) == 3


def test_fit_adds_rows_sampled_from_the_density_of_the_fitted_rows(tiny_run, tmp_path, capsys):
    write_scans(tmp_path / "scans")
    out = tmp_path / "more"
    with pytest.warns(UserWarning):
        assert main(["fit", "rot-g2", "--targets", str(tmp_path / "scans"), "--out", str(out), "--models", str(tiny_run),
                     "--sample", "7", *TINY]) == 0
    assert "sampled 7 rows from the density of 3 fitted rows (held-out log-likelihood" in capsys.readouterr().out
    from scenefit.datasets import read_metadata

    meta = read_metadata(out)
    assert meta["file_name"] == [f"{i:06d}.png" for i in range(10)]
    assert meta["target"] == ["scan0.png", "scan1.png", "scan2.png"] + [""] * 7
    assert all(v != v for v in meta["fit_loss"][3:]) and all(v == v for v in meta["fit_loss"][:3])  # NaN: not fitted
    assert all(-180 < r <= 180 for r in meta["rotation"]) and len(set(meta["seed"])) == 10
    sample = json.loads((out / "manifest.json").read_text())["sample"]
    assert sample["rows"] == 7 and sample["fitted_rows"] == 3 and isinstance(sample["held_out_log_likelihood"], float)
    assert main(["fit", "rot-g2", "--targets", str(tmp_path / "scans"), "--out", str(tmp_path / "bad"), "--sample", "-1", *TINY]) == 2
    assert "export.sample must be >= 0, got -1" in capsys.readouterr().err


def test_fit_shorthands_set_the_export_section():
    from scenefit.cli import _config, build_parser

    args = build_parser().parse_args(["fit", "rot-g2", "--targets", "t", "--out", "o", "--per-target", "4", "--sample", "9"])
    cfg = _config(args)
    assert (cfg.export.per_target, cfg.export.sample) == (4, 9)


def test_fit_without_models_trains_into_the_store_then_reuses_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCENEFIT_CACHE", str(tmp_path / "cache"))
    write_scans(tmp_path / "scans", n=2)
    args = ["fit", "rot-g2", "--targets", str(tmp_path / "scans"), *TINY]
    with pytest.warns(UserWarning):
        assert main([*args, "--out", str(tmp_path / "a")]) == 0
    store = tmp_path / "cache" / "models"
    assert sorted(p.name.split("-")[0] for p in store.iterdir() if not p.name.startswith(".")) == ["encoder", "surrogate", "task"]
    capsys.readouterr()
    with pytest.warns(UserWarning):
        assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.count("reusing the trained model") == 3
    before = stamps(store)
    with pytest.warns(UserWarning):
        assert main([*args, "--out", str(tmp_path / "c"), "--retrain"]) == 0
    out = capsys.readouterr().out
    assert "reusing" not in out and set(stamps(store)) == set(before) and stamps(store) != before  # trained again, same keys
    assert main([*args, "--out", str(tmp_path / "d"), "--retrain", "--models", str(store)]) == 2
    assert "--retrain trains into the user's model store; --models folders are read as they are" in capsys.readouterr().err


def test_check_validates_without_training(tiny_run, tmp_path, capsys):
    write_scans(tmp_path / "scans", n=2)
    with pytest.warns(UserWarning):
        assert main(["check", "rot-g2", "--targets", str(tmp_path / "scans"), "--models", str(tiny_run), *TINY]) == 0
    out = capsys.readouterr().out
    assert "config: engine 'digits' (1x48x48, class labels, 2 attributes: rotation, digit); task 'classifier'" in out
    assert "targets: 2 images in" in out and out.count("model ") == 3
    assert main(["check", "rot-g2", "--models", str(tmp_path / "scans"), *TINY]) == 2
    assert "holds no 'task' model for this config" in capsys.readouterr().err


def test_presets_lists_digits_and_street(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "rot-g2" in out and "street-quick" in out and "_digits" not in out
    assert "street        street    200 targets, 2 target modes, fit codebook-verify  Street scenes at the quick scale" in out
