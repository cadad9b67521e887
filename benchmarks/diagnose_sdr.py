"""Diagnose the SDR baseline on an MNIST setting: how noisy its reward is, how its policy moves, what it scores.

    python benchmarks/diagnose_sdr.py reward-noise trans-g1 --scale quick --seed 0 --out runs/diagnose-sdr
    python benchmarks/diagnose_sdr.py run trans-g1 --scale quick --out runs/diagnose-sdr --set groups=tx+ty --set episode=sample
    python benchmarks/diagnose_sdr.py cells trans-g1 --scale quick --out runs/diagnose-sdr
    python benchmarks/diagnose_sdr.py plot runs/diagnose-sdr/run-*.json --out runs/diagnose-sdr/curves.png

The setting is a preset (``trans-g1``...) with the scale's overlay (``scenefit.experiments.mnist.setting_config``;
``--cfg KEY=VALUE`` overrides any run-config field, e.g. ``--cfg baselines.reward_epochs=10``). Targets, the labeled
validation split, the fitting-resolution engine and the reward (a task net trained ``baselines.reward_epochs`` epochs
with the ``task`` recipe and seed ``seed + 6``, scored on the validation split) are ``scenefit.methods.reward_inputs``, as
``scenefit.methods.baseline_rows`` builds them for SDR; the pipeline's scratch folder is ``OUT/scratch/``.

reward-noise  scores episodes of ``episode_size`` images (``SDRConfig.at_scale(scale)`` with ``--set``), each ``--reps``
              times with other render seeds (the same seeds for every action): the bins holding the targets' mode
              (the heaviest component's means), each single-attribute neighbour of it, the mode turned half a
              turn in each periodic attribute (a 180° flip of rotation), the initial scenes' centre
              bins and ``--random`` random actions; then episodes of other draws: the targets' true attributes (the
              upper bound of any episode), the initial scenes and a uniform per-image draw (``episode=sample`` at
              its start). Prints a table and the ratio of the mode-vs-best-neighbour gap to the reward noise;
              writes ``OUT/reward-noise-<setting>-<scale>-seed<k>.json``.
run           fits SDR (``SDRConfig.at_scale(scale)`` with ``--set``: e.g. ``groups=tx+ty`` (groups joined by ``,``),
              ``episode=sample``, ``init_uniform=0.5``, ``lr=0.3``, ``attributes=tx,ty``), samples
              ``n_targets × export.per_target`` rows (the size of the table's SDR set), renders them at full
              resolution, trains the task net with the ``task`` recipe and scores it on T; writes
              ``OUT/run-<setting>-<scale>-seed<k>-<overrides>.json`` (report: curve, entropy, top_prob, policy).
              With ``--from-experiment`` SDR starts from the run config's ``baselines.sdr`` (the scale overlay's, which
              the experiment table ran; at paper scale it equals ``SDRConfig.at_scale("paper")``); with no ``--set``
              and no ``--cfg`` the run then repeats the table's SDR row (same seeds, same set, same recipe).
cells         scores on T a task net trained (as ``run`` does) on each set SDR's bins can hold: the mode's cell alone,
              bins drawn per image from the targets' marginal and joint bin histograms, and the targets' true
              attributes; the ceiling of the search (``OUT/cells-<setting>-<scale>-seed<k>-<overrides>.json``).
plot          draws the reward (running mean over 10 updates) and the policy entropy per update of run JSONs into one
              PNG, one line per run named by its overrides and test accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from scenefit.attributes import AttributeSpace, circular_mean_std
from scenefit.baselines.base import ScoreFn, learned_columns
from scenefit.baselines.sdr import SDR, SDRConfig, bin_rows, bins_of
from scenefit.config import RunConfig
from scenefit.configio import overrides_from_strings
from scenefit.data import render_rows
from scenefit.experiments.mnist import setting_config
from scenefit.io import write_json
from scenefit.methods import at_resolution, reward_inputs, stable_seed
from scenefit.models import SEED
from scenefit.pipeline import Pipeline
from scenefit.scenarios import Mixture
from scenefit.seeding import draw_seeds


def parse_sdr_sets(items: list[str]) -> dict:
    """``["groups=tx+ty", "lr=0.3"]`` -> SDRConfig field overrides, typed by the field's default value.

    ``groups``: groups joined by ``,``, attributes of a group by ``+``; ``attributes``: names joined by ``,``.
    """
    fields = {f.name: f.default for f in dataclasses.fields(SDRConfig)}
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set expects FIELD=VALUE with FIELD one of {sorted(fields)}, got '{item}'")
        if key == "groups":
            out[key] = tuple(tuple(g.split("+")) for g in value.split(",") if g)
        elif key == "attributes":
            out[key] = tuple(n for n in value.split(",") if n)
        else:
            out[key] = type(fields[key])(value)
    return out


@dataclass
class Setup:
    """What every subcommand needs: the pipeline and SDR's inputs, as ``methods.baseline_rows`` builds them."""

    pipe: Pipeline
    cfg: RunConfig
    sdr: SDRConfig
    validation: tuple[torch.Tensor, torch.Tensor]
    score_fn: ScoreFn
    name: str

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """SDR's reward (``methods.reward_inputs``): a task net trained on (images, labels) for ``reward_epochs``,
        scored on the validation split."""
        return self.score_fn(images, labels, *self.validation)


def build(args: argparse.Namespace) -> Setup:
    """The setting's config at ``args.scale`` with ``--cfg`` overrides, its pipeline, SDR's config and validation split."""
    cfg = setting_config(args.setting, args.scale, args.seed, args.device, overrides_from_strings(args.cfg) or None)
    name = f"{args.setting}-{args.scale}-seed{args.seed}"
    pipe = Pipeline(cfg, Path(args.out) / "scratch" / name, progress=args.progress)
    validation, score_fn = reward_inputs(pipe)
    sets = parse_sdr_sets(args.set)
    sdr = replace(cfg.baselines.sdr, **sets) if args.from_experiment else SDRConfig.at_scale(args.scale, **sets)
    return Setup(pipe, cfg, sdr, validation, score_fn, name)


def mode_row(mixture: Mixture, space: AttributeSpace) -> torch.Tensor:
    """(D,) the means of the mixture's heaviest component (natural units)."""
    k = int(torch.argmax(mixture.weights))
    return Mixture((mixture.components[k],), mixture.defaults).centre(space)


def actions_to_score(s: Setup, random_actions: int) -> list[tuple[str, torch.Tensor]]:
    """(name, bins (C,)) of the mode, its single-attribute neighbours, the initial centre and random actions (no repeats)."""
    space, n = s.pipe.res.fit_engine.space, s.sdr.bins
    cols = learned_columns(space, s.sdr.attributes, "sdr")
    mode = bins_of(space, mode_row(s.cfg.setting.target, space)[None], cols, n)[0]
    actions = [("mode", mode)]
    for j, col in enumerate(cols):
        for d in (-1, 1):
            b = mode.clone()
            b[j] += d
            if space.attributes[col].periodic:
                b[j] %= n
            if 0 <= b[j] < n:
                actions.append((f"mode {space.names[col]}{d:+d}", b))
        if space.attributes[col].periodic:
            b = mode.clone()
            b[j] = (b[j] + n // 2) % n
            actions.append((f"{space.names[col]} half a turn from the mode", b))
    actions.append(("initial centre", bins_of(space, s.pipe.res.initial_centre()[None], cols, n)[0]))
    g = torch.Generator().manual_seed(stable_seed(s.cfg.seed, "diagnose-sdr", "random actions"))
    actions += [(f"random {i}", torch.randint(n, (len(cols),), generator=g)) for i in range(random_actions)]
    seen, out = set(), []
    for name, b in actions:
        if tuple(b.tolist()) not in seen:
            seen.add(tuple(b.tolist()))
            out.append((name, b))
    return out


def describe_bins(s: Setup, bins: torch.Tensor) -> str:
    """``tx=9 [10, 13.3)`` per learned attribute."""
    space, n = s.pipe.res.fit_engine.space, s.sdr.bins
    cols = learned_columns(space, s.sdr.attributes, "sdr")
    parts = []
    for j, col in enumerate(cols):
        a, b = space.attributes[col], int(bins[j])
        parts.append(f"{a.name}={b} [{a.low + a.span * b / n:.3g}, {a.low + a.span * (b + 1) / n:.3g})")
    return " ".join(parts)


def reward_noise(args: argparse.Namespace) -> dict:
    """Score each action ``--reps`` times; print the table and the gap-to-noise ratio; write and return the JSON."""
    s = build(args)
    res, space, size = s.pipe.res, s.pipe.res.fit_engine.space, s.sdr.episode_size
    cols = learned_columns(space, s.sdr.attributes, "sdr")
    true = s.pipe.problem.targets.attrs
    true_bins = bins_of(space, true, cols, s.sdr.bins)

    def draw_true(n, g):
        return true[torch.randint(true.shape[0], (n,), generator=g)]

    def draw_uniform(n, g):
        return bin_rows(space, res.sample_initial, cols, torch.randint(s.sdr.bins, (n, len(cols)), generator=g), s.sdr.bins, g)

    draws = [(name, "bin", b, lambda n, g, b=b: bin_rows(space, res.sample_initial, cols, b.expand(n, len(cols)), s.sdr.bins, g))
             for name, b in actions_to_score(s, args.random)]
    draws += [("targets' true attributes", "draw", None, draw_true), ("initial scenes", "draw", None, res.sample_initial),
              ("uniform per image", "draw", None, draw_uniform)]
    rows, t0 = [], time.time()
    for name, kind, bins, draw in draws:
        rewards = []
        for r in range(args.reps):
            g = torch.Generator().manual_seed(stable_seed(s.cfg.seed, "diagnose-sdr", "rep", str(r)))
            out = res.fit_engine.render(draw(size, g), g)
            rewards.append(s.score(out["image"], out["label"]))
        t = torch.tensor(rewards, dtype=torch.float64)
        rows.append({"action": name, "kind": kind, "bins": bins.tolist() if bins is not None else None,
                     "cell": describe_bins(s, bins) if bins is not None else "-",
                     "target_mass": float((true_bins == bins).all(1).double().mean()) if bins is not None else None,
                     "mean": float(t.mean()), "std": float(t.std()) if len(t) > 1 else 0.0, "rewards": rewards})
        print(f"  {name}: {float(t.mean()):.3f} ± {rows[-1]['std']:.3f} ({time.time() - t0:.0f}s)", flush=True)
    bin_rows_ = [r for r in rows if r["kind"] == "bin"]
    noise = float(torch.tensor([r["std"] ** 2 for r in bin_rows_]).mean().sqrt())
    neighbours = [r for r in bin_rows_ if r["action"].startswith("mode ")]
    best_nb = max(neighbours, key=lambda r: r["mean"]) if neighbours else None
    gap = rows[0]["mean"] - best_nb["mean"] if best_nb else float("nan")
    best = max(bin_rows_, key=lambda r: r["mean"])
    summary = {"noise_std": noise, "mode_mean": rows[0]["mean"], "best_neighbour": best_nb["action"] if best_nb else None,
               "gap_mode_minus_best_neighbour": gap, "gap_over_noise": gap / noise if noise > 0 else None,
               "best_action": best["action"], "best_mean": best["mean"],
               "true_attributes_mean": next(r["mean"] for r in rows if r["action"] == "targets' true attributes")}
    print(f"\n{s.name}: episode_size {size}, {args.reps} reps, reward_epochs {s.cfg.baselines.reward_epochs}, "
          f"validation {len(s.validation[1])}, bins {s.sdr.bins}, fit engine {res.fit_engine.height}px")
    print("| action | cell | target mass | mean reward | std | min | max |\n| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        mass = f"{r['target_mass']:.3f}" if r["target_mass"] is not None else "-"
        print(f"| {r['action']} | {r['cell']} | {mass} | {r['mean']:.3f} | {r['std']:.3f} | {min(r['rewards']):.3f} | "
              f"{max(r['rewards']):.3f} |")
    ratio = f"{summary['gap_over_noise']:+.2f}" if summary["gap_over_noise"] is not None else "n/a (no noise)"
    print(f"\nnoise std (pooled over bin actions) {noise:.4f}; mode {summary['mode_mean']:.3f} vs best neighbour "
          f"'{summary['best_neighbour']}' → gap {gap:+.4f} = {ratio} noise std; best bin action "
          f"'{best['action']}' {best['mean']:.3f}; targets' true attributes {summary['true_attributes_mean']:.3f}")
    record = {"setting": args.setting, "scale": args.scale, "seed": args.seed, "overrides": args.set, "cfg_overrides": args.cfg,
              "sdr_config": dataclasses.asdict(s.sdr), "reward_epochs": s.cfg.baselines.reward_epochs,
              "validation": len(s.validation[1]), "reps": args.reps, "rows": rows, "summary": summary, "seconds": time.time() - t0}
    write_json(Path(args.out) / f"reward-noise-{s.name}.json", record)
    return record


def slug(items: list[str]) -> str:
    """A file-name part naming ``--set`` overrides (``default`` when none)."""
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", "_".join(items)) or "default"


def set_stats(space: AttributeSpace, c: int, attrs: torch.Tensor, target_attrs: torch.Tensor) -> dict:
    """Mean and std of column ``c`` of the SDR set (N, D) and of the targets (T, D): linear, and for a periodic
    attribute also circular (under ``"circular"``; the linear ones are wrong for a mode near the seam)."""
    a, t = attrs[:, c].double(), target_attrs[:, c].double()
    out = {"sdr_mean": float(a.mean()), "sdr_std": float(a.std()), "target_mean": float(t.mean()), "target_std": float(t.std())}
    attr = space.attributes[c]
    if attr.periodic:
        (sm, ss), (tm, ts) = (circular_mean_std(v, attr.low, attr.high) for v in (a, t))
        out["circular"] = {"sdr_mean": sm, "sdr_std": ss, "target_mean": tm, "target_std": ts}
    return out


def no_features(images: torch.Tensor) -> torch.Tensor:
    """SDR reads no features; a stand-in for ``feature_fn`` that refuses to be called."""
    raise RuntimeError("SDR should not read features")


def score_set(s: Setup, attrs: torch.Tensor, progress: bool, name: str) -> dict:
    """Render (N, D) ``attrs`` at full resolution (the SDR row's render seeds), train the task net on them with the
    ``task`` recipe and seed, and return its score on T (``{"metric", "score"}``)."""
    res, cfg, n = s.pipe.res, s.cfg, attrs.shape[0]
    out = render_rows(res.engine, attrs, draw_seeds(n, torch.Generator().manual_seed(stable_seed(cfg.seed, "sdr") + 1)))
    net = res.task_cls.train_net(out["image"], out["label"], res.engine.labels, cfg.task, cfg.seed + SEED["task"], cfg.device,
                                 progress, f"task net ({name})")
    return net.score(s.pipe.problem.test.image, s.pipe.problem.test.label)


def run(args: argparse.Namespace) -> dict:
    """Fit SDR, score a task net trained on its sampled set on T; write and return the JSON record."""
    s = build(args)
    res, cfg, t0 = s.pipe.res, s.cfg, time.time()
    fe, targets, test = res.fit_engine, s.pipe.problem.targets, s.pipe.problem.test
    method = SDR(s.sdr)
    g = torch.Generator().manual_seed(stable_seed(cfg.seed, "sdr"))
    report = method.fit(fe, res.sample_initial, at_resolution(targets.image, (fe.height, fe.width))[0], no_features, g, args.progress,
                        s.validation, lambda x, y, vx, vy: s.score(x, y))
    attrs = method.sample(s.pipe.models.n_initial, g)
    test_score = score_set(s, attrs, args.progress, "sdr")
    n = attrs.shape[0]
    space = res.engine.space
    stats = {space.names[c]: set_stats(space, c, attrs, targets.attrs) for c in [space.index(a) for a in report["attributes"]]}
    record = {"setting": args.setting, "scale": args.scale, "seed": args.seed, "overrides": args.set, "cfg_overrides": args.cfg,
              "from_experiment": args.from_experiment, "images": n, "test": test_score, "final_attrs": stats, "report": report, "seconds": time.time() - t0}
    path = Path(args.out) / f"run-{s.name}-{'experiment-' if args.from_experiment else ''}{slug(args.set)}.json"
    write_json(path, record)
    print(f"{s.name} {' '.join(args.set) or 'default'}: test {test_score['metric']} {test_score['score']:.3f} on {len(test)} "
          f"images; final entropy {report['entropy'][-1]:.3f} nats; reward {report['curve'][0]:.3f} -> {report['curve'][-1]:.3f}; "
          f"{time.time() - t0:.0f}s -> {path}")
    for name, st in stats.items():
        st = st.get("circular", st)
        print(f"  {name}: SDR set {st['sdr_mean']:.2f} ± {st['sdr_std']:.2f}, targets {st['target_mean']:.2f} ± {st['target_std']:.2f}; "
              f"top bin p {report['top_prob'][name][-1]:.3f}")
    return record


def cells(args: argparse.Namespace) -> dict:
    """Score on T a task net trained on each set SDR's bins can hold: the ceiling of its search space.

    Sets of ``n_targets × export.per_target`` rows, rendered at full resolution and trained with the ``task`` recipe
    as ``run`` does: the mode's cell alone (a policy that settled on one cell), each image's bins drawn from the
    targets' marginal bin histograms (the best policy of independent factors), from their joint bin histogram
    (the best joint policy), and the targets' true attributes (no bins). Bins hold values uniformly, as in SDR."""
    s = build(args)
    res, cfg, t0 = s.pipe.res, s.cfg, time.time()
    space, nb, targets = res.fit_engine.space, s.sdr.bins, s.pipe.problem.targets
    cols = learned_columns(space, s.sdr.attributes, "sdr")
    true_bins = bins_of(space, targets.attrs, cols, nb)
    mode = actions_to_score(s, 0)[0][1]
    n = s.pipe.models.n_initial

    def pick(g: torch.Generator) -> torch.Tensor:
        return torch.randint(true_bins.shape[0], (n,), generator=g)

    draws = {
        "mode cell": lambda g: mode.expand(n, len(cols)),
        "targets' marginal bin histograms": lambda g: torch.stack([true_bins[pick(g), j] for j in range(len(cols))], 1),
        "targets' joint bin histogram": lambda g: true_bins[pick(g)],
    }
    rows = []
    for name, draw in [*draws.items(), ("targets' true attributes", None)]:
        g = torch.Generator().manual_seed(stable_seed(cfg.seed, "diagnose-sdr", "cells"))
        attrs = targets.attrs[pick(g)] if draw is None else bin_rows(space, res.sample_initial, cols, draw(g), nb, g)
        score = score_set(s, attrs, args.progress, name)
        rows.append({"set": name, "test": score, "attrs": {space.names[c]: [float(attrs[:, c].mean()), float(attrs[:, c].std())]
                                                           for c in cols}})
        print(f"  {name}: test {score['metric']} {score['score']:.3f} ({time.time() - t0:.0f}s)", flush=True)
    record = {"setting": args.setting, "scale": args.scale, "seed": args.seed, "overrides": args.set, "cfg_overrides": args.cfg,
              "bins": nb, "mode_cell": describe_bins(s, mode), "images": n, "rows": rows, "seconds": time.time() - t0}
    write_json(Path(args.out) / f"cells-{s.name}-{slug(args.set)}.json", record)
    print(f"\n{s.name}: {n} images per set, bins {nb}, mode cell {record['mode_cell']}")
    print("| set | test accuracy |\n| --- | --- |")
    for r in rows:
        print(f"| {r['set']} | {r['test']['score']:.3f} |")
    return record


def running_mean(values: list[float], window: int = 10) -> list[float]:
    """Trailing mean over ``window`` values (shorter at the start)."""
    return [sum(values[max(0, i - window + 1): i + 1]) / (i + 1 - max(0, i - window + 1)) for i in range(len(values))]


def plot(args: argparse.Namespace) -> Path:
    """Reward (running mean over 10 updates) and entropy per update of each run JSON, into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_r, ax_e) = plt.subplots(1, 2, figsize=(12, 4.5 + 0.22 * len(args.runs)))
    for path in args.runs:
        d = json.loads(Path(path).read_text())
        rep = d["report"]
        named = [*d["overrides"], *d.get("cfg_overrides", [])]
        label = f"{d['setting']} {d['scale']} s{d['seed']}: {' '.join(named) or 'default'} (T {d['test']['score']:.2f})"
        ax_r.plot(running_mean(rep["curve"]), label=label)
        ax_e.plot(rep["entropy"], label=label)
    ax_r.set(xlabel="update", ylabel="mean reward (running mean of 10)", title="SDR reward")
    ax_e.set(xlabel="update", ylabel="mean policy entropy (nats)", title="SDR policy entropy")
    fig.tight_layout(rect=(0, 0.04 + 0.05 * len(args.runs), 1, 1))
    fig.legend(*ax_r.get_legend_handles_labels(), loc="lower center", fontsize=8, frameon=False)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
    return out


def main() -> None:
    """Parse the command line and run one subcommand."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, fn in (("reward-noise", reward_noise), ("run", run), ("cells", cells)):
        q = sub.add_parser(name, help=fn.__doc__)
        q.add_argument("setting", help="an MNIST setting preset, e.g. trans-g1")
        q.add_argument("--scale", default="quick", choices=("tiny", "quick", "paper"))
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--out", default="runs/diagnose-sdr", help="output folder (scratch pipeline under OUT/scratch)")
        q.add_argument("--device", default="cpu")
        q.add_argument("--threads", type=int, default=1, help="torch threads")
        q.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="SDRConfig override (repeatable)")
        q.add_argument("--cfg", action="append", default=[], metavar="KEY=VALUE", help="run-config override (repeatable)")
        q.add_argument("--from-experiment", action="store_true",
                       help="start from the run config's baselines.sdr (what the experiment ran) instead of SDRConfig.at_scale(scale)")
        q.add_argument("--progress", action="store_true", help="progress bars")
        q.set_defaults(fn=fn)
    reward = sub.choices["reward-noise"]
    reward.add_argument("--reps", type=int, default=8, help="episodes scored per action")
    reward.add_argument("--random", type=int, default=6, help="random actions")
    q = sub.add_parser("plot", help=plot.__doc__)
    q.add_argument("runs", nargs="+", help="run JSON files")
    q.add_argument("--out", default="runs/diagnose-sdr/curves.png", help="PNG path")
    q.set_defaults(fn=plot)
    args = p.parse_args()
    if hasattr(args, "threads"):
        torch.set_num_threads(args.threads)
    args.fn(args)


if __name__ == "__main__":
    main()
