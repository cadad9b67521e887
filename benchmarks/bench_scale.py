"""Time to a dataset at scale: ``scenefit fit`` on N target PNGs, local and on Ray, per stage, with peak memory.

For each N it first renders N targets of the preset's target distribution (held-out textures for digits, the
look for streets) and writes them to disk as PNGs, so that reading is measured too. Then, for each backend, it
runs the whole ``scenefit fit`` (models read from ``--models``, never trained here) in a fresh process and prints
one row: wall seconds, targets/s, dataset images/s, the workers' summed seconds per stage (read, fit, render,
write), the driver's peak RSS and the largest worker's peak RSS::

    python benchmarks/bench_scale.py rot-g2 --models runs/rot-g2 --n 1000 10000 100000 --backends local ray1 ray2
    python benchmarks/bench_scale.py street --models runs/street --n 1000 10000 --backends local ray1 ray2

``rayK`` is Ray with K workers of one torch thread each; ``local`` uses one process (``--local-threads``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from scenefit.configio import load_config, overrides_from_strings
from scenefit.data import render_rows, sample_rows
from scenefit.datasets import save_png, to_uint8
from scenefit.resolve import resolve
from scenefit.seeding import index_seeds

RUN = """
import json, sys, time
from scenefit.shards import peak_rss_kb
from scenefit.configio import load_config, overrides_from_strings
from scenefit.workflows import fit_folder
a = json.loads(sys.argv[1])
cfg = load_config(a["config"], overrides_from_strings(a["set"]))
if a["timeline"]:
    import ray
    ray.init(num_cpus=a["workers"], include_dashboard=False, log_to_driver=False)
t0 = time.time()
res = fit_folder(cfg, a["targets"], a["out"], a["models"], progress=False, log=lambda m: None, backend=a["backend"],
                 workers=a["workers"], shard_size=a["shard_size"], threads=a["threads"])
res["wall"] = time.time() - t0
if a["timeline"]:
    ray.timeline(filename=a["timeline"])
    ray.shutdown()
res["driver_max_rss_kb"] = peak_rss_kb()  # VmHWM: ru_maxrss would carry this benchmark's own peak across exec
print("RESULT " + json.dumps(res))
"""


def write_targets(config: str, sets: list[str], n: int, folder: Path, chunk: int = 2000) -> float:
    """Render ``n`` targets of the config's target distribution, with its look and ``setting.shift``, to ``folder`` as
    PNGs (skipped if complete); seconds."""
    if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
        return 0.0
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    res = resolve(load_config(config, overrides_from_strings(sets)))
    s = res.cfg.setting
    engine = res.target_engine
    g = torch.Generator().manual_seed(res.cfg.seed + 101)
    for lo in range(0, n, chunk):
        k = min(chunk, n - lo)
        attrs = sample_rows(engine.space, s.target, engine, k, g)
        seeds = index_seeds(res.cfg.seed + 101, torch.arange(lo, lo + k))
        img = render_rows(engine, attrs, seeds, res.look, shift=res.shift)["image"]
        for i, arr in enumerate(to_uint8(img)):
            save_png(arr, folder / f"t{lo + i:07d}.png")
    res.close()
    return time.time() - t0


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="preset or YAML config (the one the models were trained with)")
    p.add_argument("--models", required=True, help="run folder or model store holding the trained networks")
    p.add_argument("--n", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--backends", nargs="+", default=["local", "ray1", "ray2"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--shard-size", type=int, default=2048)
    p.add_argument("--local-threads", type=int, default=1, help="torch threads of the local backend (default 1)")
    p.add_argument("--work", type=Path, default=Path("/tmp/scenefit-scale"), help="folder for the targets and datasets")
    p.add_argument("--timeline", type=Path, default=None,
                   help="folder for Ray's chrome-trace timeline of every Ray run (ray.timeline), summarised per worker")
    args = p.parse_args()
    if args.timeline:
        args.timeline.mkdir(parents=True, exist_ok=True)
    print("| N | backend | wall s | targets/s | images/s | read s | fit s | render s | write s | driver RSS MiB | worker RSS MiB |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in args.n:
        tg = args.work / f"targets-{args.config}-{n}"
        secs = write_targets(args.config, args.set, n, tg)
        if secs:
            print(f"(wrote {n} target PNGs in {secs:.0f} s)", file=sys.stderr)
        for b in args.backends:
            workers = int(b[3:]) if b.startswith("ray") else 1
            out = args.work / f"ds-{args.config}-{n}-{b}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            spec = {"config": args.config, "set": args.set, "targets": str(tg), "out": str(out), "models": str(args.models),
                    "backend": "ray" if b.startswith("ray") else "local", "workers": workers, "shard_size": args.shard_size,
                    "threads": 1 if b.startswith("ray") else args.local_threads,
                    "timeline": str(args.timeline / f"timeline-{n}-{b}.json") if args.timeline and b.startswith("ray") else None}
            proc = subprocess.run([sys.executable, "-c", RUN, json.dumps(spec)], capture_output=True, text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"| {n} | {b} | failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode} |")
                continue
            r = json.loads(line[7:])
            w = r["worker_seconds"]
            print(f"| {n} | {b} | {r['wall']:.1f} | {n / r['wall']:.0f} | {r['rows'] / r['wall']:.0f} | {w['read']:.1f} | {w['fit']:.1f} | "
                  f"{w['render']:.1f} | {w['write']:.1f} | {r['driver_max_rss_kb'] / 1024:.0f} | {r['worker_max_rss_kb'] / 1024:.0f} |", flush=True)
            subprocess.run(["rm", "-rf", str(out)], check=True)
            if spec["timeline"]:
                print(f"  timeline {spec['timeline']}: {summarise_timeline(Path(spec['timeline']), r['wall'])}", flush=True)


def summarise_timeline(path: Path, wall: float) -> str:
    """Busy seconds of every worker's ``ShardWorker.run`` tasks, and the time two ran at once (chrome trace of Ray)."""
    events = [e for e in json.loads(path.read_text()) if e.get("ph") == "X" and e.get("cat") == "task::ShardWorker.run"]
    spans: dict[str, list[tuple[float, float]]] = {}
    for e in events:  # Ray's chrome trace: "pid" is the node, "tid" the worker process
        spans.setdefault(str(e.get("tid")), []).append((e["ts"] / 1e6, (e["ts"] + e["dur"]) / 1e6))
    busy = {w: sum(b - a for a, b in v) for w, v in spans.items()}
    marks = sorted([(a, 1) for v in spans.values() for a, _ in v] + [(b, -1) for v in spans.values() for _, b in v])
    both, level, last = 0.0, 0, None
    for t, d in marks:
        if level >= 2 and last is not None:
            both += t - last
        level, last = level + d, t
    return (f"{len(spans)} workers busy {', '.join(f'{v:.1f}' for v in busy.values())} s of {wall:.1f} s wall; "
            f"two or more running at once for {both:.1f} s")


if __name__ == "__main__":
    main()
