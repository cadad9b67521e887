"""Accuracy against the size of the synthetic set: ours at k renders per fitted target (k×) beside the oracle trained
on the labeled targets tiled k times (the same number of steps), for digit settings.

    python benchmarks/bench_amplify.py --settings rot-g2,trans-g4 --scale quick --sizes 1,2,4,8 --out runs/amplify

Each (setting, k) is the one pipeline on the preset with the scale's overlay (as ``scenefit experiment mnist``) and
``export.per_target = k``, in ``OUT/<setting>/x<k>``: ours renders every fitted row k times (k seeds: other
handwriting textures and backgrounds, the same attributes), the oracle tiles X_t k times, the initial row draws
k × n_targets initial scenes; every row trains the same recipe, so at each k only the data differs. The fit does not
depend on k. F, G and E live in one model store, ``OUT/models`` (F is retrained per k, its set's size being part of
its key). Also prints the held-out log-likelihood of the density ``scenefit fit --sample`` would draw from
(:mod:`scenefit.amplify`; nats per row over uniform, 20% of the fitted rows held out). Writes ``OUT/amplify.json``,
``OUT/amplify.md`` and ``OUT/amplify.png``; reruns resume finished stages. ``--set KEY=VALUE`` (repeatable) overrides
the config of every setting, as ``scenefit experiment mnist --set`` does (e.g. ``fit.amortized.prior_iters=20``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from scenefit.amplify import held_out_log_likelihood  # noqa: E402
from scenefit.configio import merge, overrides_from_strings  # noqa: E402
from scenefit.evaluate import save_figure  # noqa: E402
from scenefit.experiments.mnist import setting_config  # noqa: E402
from scenefit.io import atomic_write_text, write_json  # noqa: E402
from scenefit.pipeline import Pipeline  # noqa: E402
from scenefit.resolve import resolve  # noqa: E402
from scenefit.runs import ModelStore, claim  # noqa: E402

ROWS = ("initial", "ours", "oracle")


def run_size(setting: str, scale: str, k: int, seed: int, out: Path, store: ModelStore, progress: bool,
             overrides: dict | None = None) -> dict:
    """Initial, ours and oracle accuracy (%) of ``setting`` at ``k`` renders per target; resumes ``out``."""
    cfg = merge(setting_config(setting, scale, seed, overrides=overrides), {"export": {"per_target": k}})
    res = resolve(cfg)
    try:
        claim(out, "run")
        pipe = Pipeline(res, out, store=store, progress=progress, log=lambda s: None)
        pipe.start()
        row = {m: 100 * pipe.score(m)["score"] for m in ROWS}
        row["images"] = len(pipe.problem.targets) * k
        if k == 1:
            attrs, _ = pipe.fit()
            row["density_held_out_ll"] = held_out_log_likelihood(res.engine.space, attrs, torch.Generator().manual_seed(seed))
        return row
    finally:
        res.close()


def figure(results: dict, path: Path) -> None:
    """Accuracy against k per setting: ours and initial as lines with markers, the oracle as a dashed line."""
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.2), squeeze=False)
    for ax, (setting, rows) in zip(axes[0], results.items()):
        ks = sorted(rows, key=int)
        for m, style in (("ours", "o-"), ("oracle", "s--"), ("initial", "^:")):
            ax.plot([int(k) for k in ks], [rows[k][m] for k in ks], style, label=m)
        ax.set_xscale("log", base=2)
        ax.set_xticks([int(k) for k in ks], [f"{k}×" for k in ks])
        ax.set_xlabel("synthetic images / targets")
        ax.set_ylabel("accuracy on T (%)")
        ax.set_title(setting, fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, path, dpi=110, bbox_inches="tight")


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default="rot-g2,trans-g4")
    p.add_argument("--scale", default="quick", choices=["tiny", "quick", "paper"])
    p.add_argument("--sizes", default="1,2,4,8")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every setting (repeatable)")
    args = p.parse_args()
    overrides = overrides_from_strings(args.set) if args.set else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = ModelStore(out / "models")
    sizes = [int(k) for k in args.sizes.split(",")]
    print(f"torch threads {torch.get_num_threads()}, scale {args.scale}, seed {args.seed}, overrides {args.set}", flush=True)
    results: dict[str, dict[str, dict]] = {}
    for setting in args.settings.split(","):
        for k in sizes:
            t0 = time.time()
            row = run_size(setting, args.scale, k, args.seed, out / setting / f"x{k}", store, args.progress, overrides)
            results.setdefault(setting, {})[str(k)] = row
            ll = f"; density held-out LL {row['density_held_out_ll']:.2f} nats/row" if "density_held_out_ll" in row else ""
            print(f"{setting} {k}x ({row['images']} images): initial {row['initial']:.1f}  ours {row['ours']:.1f}  "
                  f"oracle {row['oracle']:.1f}  ({time.time() - t0:.0f} s){ll}", flush=True)
    write_json(out / "amplify.json", {"scale": args.scale, "seed": args.seed, "overrides": args.set, "results": results})
    lines = ["| setting | size | images | initial | ours | oracle | ours − oracle |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for setting, rows in results.items():
        for k, r in rows.items():
            lines.append(f"| {setting} | {k}× | {r['images']} | {r['initial']:.1f} | {r['ours']:.1f} | {r['oracle']:.1f} | "
                         f"{r['ours'] - r['oracle']:+.1f} |")
    atomic_write_text(out / "amplify.md", "\n".join(lines) + "\n")
    figure(results, out / "amplify.png")
    print("\n".join(lines))
    print(f"wrote {out / 'amplify.json'}, {out / 'amplify.md'}, {out / 'amplify.png'}")


if __name__ == "__main__":
    main()
