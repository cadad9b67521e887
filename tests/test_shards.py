"""Streaming ``scenefit fit`` in shards: local and Ray (1, 2, 4 workers on a two-node cluster) give the same dataset
to the byte; a killed worker's shard is retried; a killed driver's rerun resumes from the finished shards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scenefit.cli import main
from scenefit.configio import load_config, overrides_from_strings
from scenefit.datasets import read_metadata
from scenefit.shards import plan_shards
from scenefit.workflows import fit_folder

SETS = ["--set", "setting.n_targets=40", "--set", "setting.n_test=40", "--set", "encoder.steps=20", "--set", "task.epochs=1"]
N = 37  # targets: shards of 8 leave a short last one


def cfg():
    return load_config("rot-g2", overrides_from_strings([s for s in SETS if s != "--set"]))


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in ("manifest.json", ".scenefit")}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    assert main(["run", "rot-g2", "--out", str(root / "base"), *SETS, "--no-progress"]) == 0
    (root / "tg").mkdir()
    rng = np.random.default_rng(0)
    for i in range(N):
        Image.fromarray((rng.random((48, 48)) * 255).astype(np.uint8)).save(root / "tg" / f"t{i:03d}.png")
    fit_folder(cfg(), root / "tg", root / "local", root / "base", progress=False, log=lambda m: None, shard_size=8, threads=1)
    return root


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False, "object_store_memory": 80 * 2**20})
    c.add_node(num_cpus=1, object_store_memory=80 * 2**20)
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def test_plan_shards_covers_every_target_once():
    files = [Path(f"/x/{i}.png") for i in range(N)]
    shards = plan_shards(files, 8)
    assert [len(s.files) for s in shards] == [8, 8, 8, 8, 5] and [s.first for s in shards] == [0, 8, 16, 24, 32]
    assert sum((list(s.files) for s in shards), []) == [str(f) for f in files]
    with pytest.raises(ValueError, match="shard size must be >= 1, got 0"):
        plan_shards(files, 0)


def test_other_shard_sizes_fit_the_same_rows(setup):
    out = setup / "shards16"
    fit_folder(cfg(), setup / "tg", out, setup / "base", progress=False, log=lambda m: None, shard_size=16, threads=1)
    a, b = read_metadata(out), read_metadata(setup / "local")
    assert a["target"] == b["target"] and a["seed"] == b["seed"] and a["label"] == b["label"]
    assert np.allclose(a["rotation"], b["rotation"], atol=1e-4) and np.allclose(a["fit_loss"], b["fit_loss"], atol=1e-5)


def test_local_dataset_is_complete(setup):
    meta = read_metadata(setup / "local")
    assert len(meta["file_name"]) == N and len(set(meta["file_name"])) == N
    assert meta["target"] == [f"t{i:03d}.png" for i in range(N)]
    assert not (setup / ".local.shards").exists() and (setup / "local" / "fitted.parquet").is_file()


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_ray_gives_the_local_dataset_to_the_byte(setup, cluster, workers):
    out = setup / f"ray{workers}"
    res = fit_folder(cfg(), setup / "tg", out, setup / "base", progress=False, log=lambda m: None, backend="ray", workers=workers,
                     shard_size=8, threads=1)
    assert res["rows"] == N and res["shards"] == 5
    assert tree(out) == tree(setup / "local")


def test_a_killed_worker_shard_is_retried(setup, cluster):
    import ray

    killed = []

    def kill_one(record, actors):
        if not killed:  # after the first finished shard, SIGKILL a worker's process (it may be mid-shard)
            pid = ray.get(actors[0].pid.remote())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    out = setup / "killed-worker"
    res = fit_folder(cfg(), setup / "tg", out, setup / "base", progress=False, log=lambda m: None, backend="ray", workers=2,
                     shard_size=8, threads=1, on_done=kill_one)
    assert killed and res["rows"] == N
    meta = read_metadata(out)
    assert sorted(meta["target"]) == [f"t{i:03d}.png" for i in range(N)]  # every target exactly once
    local = read_metadata(setup / "local")
    assert meta == local


DRIVER = textwrap.dedent("""
    import os, signal, sys
    from scenefit.configio import load_config, overrides_from_strings
    from scenefit.workflows import fit_folder
    cfg = load_config("rot-g2", overrides_from_strings(sys.argv[4:]))
    done = []
    def die(record, actors):
        done.append(record)
        if len(done) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # the driver dies without any cleanup
    fit_folder(cfg, sys.argv[1], sys.argv[2], sys.argv[3], progress=False, log=lambda m: None, shard_size=8, threads=1, on_done=die)
""")


def test_a_killed_driver_resumes_from_the_finished_shards(setup, tmp_path):
    out = setup / "killed-driver"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    args = [s for s in SETS if s != "--set"]
    p = subprocess.run([sys.executable, str(script), str(setup / "tg"), str(out), str(setup / "base"), *args], capture_output=True)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()[-2000:]
    work = setup / ".killed-driver.shards"
    assert sorted(x.name for x in (work / "shards").glob("*.done.json")) == ["000000.done.json", "000001.done.json"]
    stamps = {x.name: x.stat().st_mtime_ns for x in (work / "shards").glob("*.done.json")}
    logs: list[str] = []
    res = fit_folder(cfg(), setup / "tg", out, setup / "base", progress=False, log=logs.append, shard_size=8, threads=1,
                     on_done=lambda r, a: stamps.pop(f"{r['shard']:06d}.done.json", None) and pytest.fail("a finished shard ran again"))
    assert res["ran"] == 3 and f"[scenefit] {out}: resuming, 2 of 5 shards are done" in logs
    assert tree(out) == tree(setup / "local")


def test_another_job_in_the_work_folder_is_started_afresh(setup):
    out = setup / "other-job"
    work = setup / ".other-job.shards"
    work.mkdir()
    (work / "stray.txt").write_text("x")
    with pytest.raises(ValueError, match=r"other-job.shards exists and is not scenefit's work folder; move it away"):
        fit_folder(cfg(), setup / "tg", out, setup / "base", progress=False, log=lambda m: None, shard_size=8)
    (work / "stray.txt").unlink()
    work.rmdir()

    def stop(record, actors):
        raise KeyboardInterrupt  # the user presses Ctrl-C after the first shard

    with pytest.raises(KeyboardInterrupt):
        fit_folder(cfg(), setup / "tg", out, setup / "base", progress=False, log=lambda m: None, shard_size=8, on_done=stop)
    assert (work / "shards" / "000000.done.json").is_file() and not out.exists()
    logs: list[str] = []
    fit_folder(cfg(), setup / "tg", out, setup / "base", progress=False, log=logs.append, shard_size=16)  # another job: afresh
    assert not any("resuming" in m for m in logs) and len(read_metadata(out)["file_name"]) == N and not work.exists()


def test_peak_rss_is_the_processs_own_not_its_parents():
    """ru_maxrss survives exec on Linux; the workers' and the benchmark's memory figures must not carry a parent's."""
    from scenefit.shards import peak_rss_kb

    big = bytearray(400 * 1024 * 1024)  # this process's peak grows by about 400 MiB
    big[:: 4096] = b"x" * len(big[:: 4096])
    parent = peak_rss_kb()
    assert parent > 400 * 1024
    code = "from scenefit.shards import peak_rss_kb; print(peak_rss_kb())"
    child = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 0 < child < parent - 300 * 1024  # the child imports scenefit (and torch) only; ru_maxrss would be >= parent
    del big
