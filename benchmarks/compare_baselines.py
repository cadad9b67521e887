"""What did each dataset-level baseline learn? Its rows against the targets' true attributes, per run folder.

    python benchmarks/compare_baselines.py runs/paper-single/trans-g1 runs/paper-single-fc2/trans-g1

Each argument is one setting's folder of ``scenefit experiment mnist`` (or a ``scenefit run`` folder) on the
built-in target domain. It is only read: ``config.yaml`` regenerates the targets (checked against
``stages/problem.json``), nothing is trained or written. For every baseline stage the folder holds (Meta-Sim,
Attribute Descent, SDR) it prints the set features it compared (``probe`` or F's layer), its score on T, the
circular mean and standard deviation of rotation and the mean and standard deviation of tx and ty of its learned
rows beside the targets' and the initial scenes', the mean within-class standard deviation of tx and ty (near 0
when every digit class sits at one position of its own), and the first and last tenth of its fit curve (Meta-Sim's
MMD², Attribute Descent's FID, SDR's reward), averaged, and how its (tx, ty) positions and the targets' cover each
other (median nearest-neighbour distances both ways; share of rows within 3 px of a target of the same class), and,
when the targets are a mixture of several modes, the share of targets and of rows each mode holds (a row belongs
to the mode of highest likelihood) and which (digit class, mode) pairs the targets fill and the rows leave empty.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

import torch

from scenefit.attributes import AttributeSpace, circular_mean_std, wrap_angle
from scenefit.configio import load_saved_config
from scenefit.io import load_tensors, read_json
from scenefit.methods import baseline_key
from scenefit.pipeline import Pipeline
from scenefit.scenarios import Mixture

METHODS = ("metasim", "attribute-descent", "sdr")


def summary(space: AttributeSpace, attrs: torch.Tensor) -> str:
    """``rotation m ± s°, tx m ± s px, ty ...`` of (N, D) rows (circular statistics for periodic attributes)."""
    parts = []
    for name in ("rotation", "tx", "ty"):
        if name not in space.names:
            continue
        v = attrs[:, space.index(name)].double()
        if space[name].periodic:
            mean, std = circular_mean_std(v, space[name].low, space[name].high)
            parts.append(f"{name} {mean:6.1f} ± {std:5.1f}°")
        else:
            parts.append(f"{name} {float(v.mean()):6.2f} ± {float(v.std()):5.2f} px")
    return ", ".join(parts)


def class_spread(space: AttributeSpace, attrs: torch.Tensor) -> str:
    """Mean within-class standard deviation of tx and ty (px) over the categorical ``digit`` classes: near 0 when a
    method puts every digit class at one position of its own (a shortcut a task network learns)."""
    if "digit" not in space.names or "tx" not in space.names:
        return ""
    cls = attrs[:, space.index("digit")].round().long()
    out = []
    for name in ("tx", "ty"):
        v = attrs[:, space.index(name)].double()
        per = [float(v[cls == c].std()) for c in cls.unique().tolist() if int((cls == c).sum()) > 1]
        out.append(f"{name} {sum(per) / max(len(per), 1):.2f}")
    return "; within-class std " + ", ".join(out) + " px"


def coverage(space: AttributeSpace, rows: torch.Tensor, targets: torch.Tensor) -> str:
    """How the set's (tx, ty) positions and the targets' cover each other: the median distance (px) from a row to
    its nearest target and from a target to its nearest row (a set bunched on part of the targets' support shows
    a large second figure), and the share of rows of each digit class within 3 px of a target of that class."""
    if "tx" not in space.names or "ty" not in space.names:
        return ""
    cols = [space.index("tx"), space.index("ty")]
    a, b = rows[:, cols].double(), targets[:, cols].double()
    d = torch.cdist(a, b)
    out = f"; position: row→target median {float(d.min(1).values.median()):.2f} px, target→row {float(d.min(0).values.median()):.2f} px"
    if "digit" in space.names:
        ca, cb = (x[:, space.index("digit")].round().long() for x in (rows, targets))
        same = ca[:, None] == cb[None, :]
        near = (d.masked_fill(~same, float("inf")).min(1).values <= 3.0).double().mean()
        out += f", {100 * float(near):.0f}% of rows within 3 px of a target of their class"
    return out


def assign_modes(space: AttributeSpace, mixture: Mixture, attrs: torch.Tensor) -> torch.Tensor:
    """(N,) index of the mixture component of highest likelihood for each of the (N, D) rows, over the continuous
    attributes any component names (periodic differences wrapped to the shortest arc; mixture weights included)."""
    logp = torch.log(mixture.weights.double())[None, :].repeat(len(attrs), 1)
    for a in space:
        if a.categorical or not any(a.name in c.attrs for c in mixture.components):
            continue
        v = attrs[:, space.index(a.name)].double()
        for k in range(len(mixture.components)):
            g = mixture.gaussian(k, a.name)
            d = v - g.mean
            if a.periodic:
                d = wrap_angle(d, -a.span / 2, a.span / 2)
            std = max(g.std, 1e-6)
            logp[:, k] += -0.5 * (d / std) ** 2 - math.log(std)
    return logp.argmax(1)


def modes(space: AttributeSpace, mixture: Mixture | None, rows: torch.Tensor, targets: torch.Tensor) -> str:
    """Share of targets and of rows in each mode of a multi-mode target mixture (``mode k targets% / rows%``), and the
    (digit class, mode) pairs that hold 5% or more of a class's targets but under 1% of its rows."""
    if mixture is None or len(mixture.components) < 2:
        return ""
    mr, mt = assign_modes(space, mixture, rows), assign_modes(space, mixture, targets)
    k = len(mixture.components)
    share = ", ".join(f"{j}: {100 * float((mt == j).double().mean()):.0f} / {100 * float((mr == j).double().mean()):.0f}"
                      for j in range(k))
    out = f"\n      mode: targets % / rows % {share}"
    if "digit" in space.names:
        ca, cb = (x[:, space.index("digit")].round().long() for x in (rows, targets))
        missed, filled = [], 0
        for c in cb.unique().tolist():
            for j in range(k):
                if float((mt[cb == c] == j).double().mean()) < 0.05:
                    continue
                filled += 1
                if (float((mr[ca == c] == j).double().mean()) if int((ca == c).sum()) else 0.0) < 0.01:
                    missed.append(f"{c}:{j}")
        out += f"; (class:mode) pairs the targets fill and the rows miss: {len(missed)} of {filled}"
        out += f" ({' '.join(missed)})" if missed else ""
    return out


def report(folder: Path) -> None:
    """Print the comparison for one setting folder."""
    cfg = replace(load_saved_config(folder / "config.yaml"), device="cpu")
    pipe = Pipeline(cfg, folder, progress=False, log=lambda m: None, allowed=set())
    if pipe.run.info("problem").get("key") != pipe.problem_key() or pipe.problem.targets.attrs is None:
        raise SystemExit(f"{folder} does not hold the targets its config synthesises")
    space = pipe.res.engine.space
    print(f"# {folder}  (baselines.features: {cfg.baselines.features})")
    print(f"  targets          {summary(space, pipe.problem.targets.attrs)}{class_spread(space, pipe.problem.targets.attrs)}")
    print(f"  initial scenes   {summary(space, pipe.models.initial_set().attrs)}")
    mixture, targets = cfg.setting.target, pipe.problem.targets.attrs
    if mixture is not None and len(mixture.components) > 1:
        means = "; ".join(f"{j}: " + ", ".join(f"{n} {g.mean:.1f}" for n, g in c.attrs.items() if hasattr(g, "mean"))
                          for j, c in enumerate(mixture.components))
        print(f"  target modes     {means}")
    for m in METHODS:
        stage = folder / "stages" / f"baseline-{m}.json"
        if not stage.is_file():
            continue
        info = read_json(stage)
        stale = "" if info.get("key") == baseline_key(pipe, m) else " (STALE: made under another config than config.yaml's)"
        rows = load_tensors(folder / "methods" / f"{m}.safetensors")["attrs"]
        score = folder / "stages" / f"score-{m}.json"
        acc = f"{100 * read_json(score)['score']:5.1f}%" if score.is_file() else "  n/a "
        curve = info["report"].get("curve") or []
        tenth = max(1, len(curve) // 10)
        ends = (f"{info['report']['curve_metric']} first tenth {sum(curve[:tenth]) / tenth:.4g}, last tenth "
                f"{sum(curve[-tenth:]) / tenth:.4g} ({len(curve)} points)" if curve else "no curve")
        print(f"  {m:17s}{acc} on {info.get('feature_layer', '?'):6s} {summary(space, rows)}{class_spread(space, rows)}"
              f"{coverage(space, rows, targets)}; {ends}; {info['seconds']:.0f} s{stale}{modes(space, mixture, rows, targets)}")
    pipe.res.close()


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="setting folders of scenefit experiment mnist")
    args = ap.parse_args()
    for folder in args.folders:
        report(folder)


if __name__ == "__main__":
    main()
