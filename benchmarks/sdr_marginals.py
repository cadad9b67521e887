"""What each SDR policy factor was rewarded for: mean reward per bin, from the episodes of a diagnose run.

    python benchmarks/sdr_marginals.py runs/diagnose-sdr/run-rottrans-g1-paper-seed0-experiment-lr=0.03.json \
        --updates 0:200 --within 1 --others 0,1,2 --out runs/diagnose-sdr/marginals.png

SDR keeps one categorical per attribute (per ``groups`` entry), and REINFORCE moves each one along its *marginal*
reward: the mean reward of the episodes that drew a bin, over whatever the other factors drew. This reads the
``actions`` (bin per factor per episode) and ``rewards`` of a ``benchmarks/diagnose_sdr.py run`` JSON and prints,
per factor and bin, the number of episodes and their mean reward ± its standard error, with the bin that holds
the targets' mean marked ``*`` (from the run's ``final_attrs``, circular for a periodic factor where the run
recorded it; for a target of several modes that bin may hold
none of them, so the split below is meant for single-mode settings). ``--updates A:B`` keeps updates A to B-1 (early
updates, while the policy is still near uniform, show the landscape it started from). ``--others N`` keeps, for
each factor, only the episodes in which exactly N of the *other* factors drew a bin within ``--within K`` bins of
the targets' (default 1; circular distance for a factor whose edges span a full turn of degrees): ``--others 0``
is the reward a factor sees while the rest of the scene is wrong, ``--others`` = factors − 1 while the rest is
right; a list (``0,1,2``) prints a table and draws a figure row for each. Only independent factors are read (a
run with ``groups`` is refused). ``--out`` draws the same as bars with the standard errors, and a dotted line at
the mean reward of the episodes each panel counts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np


def load_run(path: Path) -> dict:
    """The run JSON of ``diagnose_sdr.py run``; raises ``SystemExit`` naming the file if it has no episodes."""
    d = json.loads(path.read_text())
    rep = d.get("report", {})
    if not rep.get("actions") or not rep.get("rewards"):
        raise SystemExit(f"{path}: no 'actions' and 'rewards' in its report; is it a diagnose_sdr.py run JSON?")
    if rep.get("joint_policy"):
        raise SystemExit(f"{path}: the run has joint groups {list(rep['joint_policy'])}; only independent factors are read")
    return d


def target_bins(d: dict) -> list[int]:
    """(F,) bin index holding the targets' mean of each factor (from ``final_attrs`` and ``bin_edges``)."""
    rep = d["report"]
    out = []
    for name in rep["attributes"]:
        edges = rep["bin_edges"][name]
        st = d["final_attrs"][name]
        mean = st.get("circular", st)["target_mean"]  # circular mean where the run recorded one (periodic factors)
        out.append(int(min(max(np.searchsorted(edges, mean, side="right") - 1, 0), len(edges) - 2)))
    return out


def bin_distance(a: np.ndarray, b: int, edges: list[float]) -> np.ndarray:
    """(N,) distance in bins from bins ``a`` (N,) to bin ``b``; circular when the edges span 360 (degrees)."""
    n = len(edges) - 1
    d = np.abs(a - b)
    return np.minimum(d, n - d) if math.isclose(edges[-1] - edges[0], 360.0) else d


def marginals(d: dict, updates: tuple[int, int], others: int | None = None,
              within: int = 1) -> dict[str, list[tuple[int, float, float]]]:
    """Per factor name, per bin: (episodes, mean reward, standard error of the mean; nan with fewer than 2), over the
    updates ``[a, b)`` and, unless ``others`` is None, the episodes in which exactly ``others`` of the other
    factors drew a bin within ``within`` bins of the targets'."""
    rep = d["report"]
    names = rep["attributes"]
    acts = np.asarray(rep["actions"])[updates[0]:updates[1]].reshape(-1, len(names))
    rew = np.asarray(rep["rewards"], dtype=float)[updates[0]:updates[1]].reshape(-1)
    tb = target_bins(d)
    out = {}
    for j, name in enumerate(names):
        keep = np.ones(len(rew), dtype=bool)
        if others is not None:
            near = sum(bin_distance(acts[:, k], tb[k], rep["bin_edges"][other]) <= within
                       for k, other in enumerate(names) if k != j)
            keep = np.asarray(near) == others
        rows = []
        for b in range(len(rep["bin_edges"][name]) - 1):
            r = rew[keep & (acts[:, j] == b)]
            se = float(r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else float("nan")
            rows.append((len(r), float(r.mean()) if len(r) else float("nan"), se))
        out[name] = rows
    return out


def table(d: dict, m: dict[str, list[tuple[int, float, float]]]) -> str:
    """Markdown: one row per bin, one column per factor: ``mean ± se (n)``, the targets' bin marked ``*``."""
    names = list(m)
    tb = dict(zip(d["report"]["attributes"], target_bins(d)))
    lines = ["| bin | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for b in range(max(len(v) for v in m.values())):
        cells = []
        for name in names:
            n, mean, se = m[name][b]
            lo, hi = d["report"]["bin_edges"][name][b], d["report"]["bin_edges"][name][b + 1]
            mark = "*" if tb[name] == b else ""
            cells.append(f"[{lo:.4g}, {hi:.4g}){mark} {mean:.3f} ± {se:.3f} ({n})" if n else f"[{lo:.4g}, {hi:.4g}){mark} –")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw(d: dict, panels: list[tuple[str, dict[str, list[tuple[int, float, float]]]]], title: str, out: Path) -> None:
    """Bars of the mean reward per bin with standard errors: one row per (label, marginals) pair, one panel per
    factor; the targets' bin in orange, bins with no episode left empty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tb = dict(zip(d["report"]["attributes"], target_bins(d)))
    cols = len(panels[0][1])
    fig, axes = plt.subplots(len(panels), cols, figsize=(4.5 * cols, 3.2 * len(panels) + 0.6), squeeze=False)
    for row, (label, m) in zip(axes, panels):
        for ax, (name, rows) in zip(row, m.items()):
            edges = d["report"]["bin_edges"][name]
            centres = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
            colours = ["tab:orange" if b == tb[name] else "tab:blue" for b in range(len(rows))]
            ax.bar(centres, [0 if math.isnan(r[1]) else r[1] for r in rows], width=(edges[1] - edges[0]) * 0.85,
                   color=colours, yerr=[0 if math.isnan(r[2]) else r[2] for r in rows], capsize=2)
            n = sum(r[0] for r in rows)
            if n:
                ax.axhline(sum(r[0] * r[1] for r in rows if r[0]) / n, color="grey", lw=0.8, ls=":")
            ax.set(xlabel=f"{name} bin centre", ylabel="mean reward", title=f"{name}: {label}")
            ax.title.set_fontsize(9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and print (and draw)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a diagnose_sdr.py run JSON")
    ap.add_argument("--updates", default=None, metavar="A:B", help="updates A to B-1 (default: all)")
    ap.add_argument("--others", default=None, metavar="N[,N...]",
                    help="keep episodes in which exactly N of the other factors drew bins near the targets' "
                         "(a list: one table and one figure row each)")
    ap.add_argument("--within", type=int, default=1, metavar="K", help="'near': within K bins (default 1)")
    ap.add_argument("--out", type=Path, default=None, help="PNG path for the bars")
    args = ap.parse_args()
    d = load_run(args.run)
    total = len(d["report"]["actions"])
    a, b = (0, total) if args.updates is None else (int(x) for x in args.updates.split(":"))
    if not 0 <= a < b <= total:
        raise SystemExit(f"--updates {args.updates}: the run has updates 0:{total}")
    try:
        counts = [None] if args.others is None else [int(x) for x in args.others.split(",")]
    except ValueError:
        raise SystemExit(f"--others {args.others}: give whole numbers joined by ',', e.g. 0,1,2") from None
    named = " ".join([*d.get("overrides", []), *d.get("cfg_overrides", [])]) or "default"
    title = (f"{d['setting']} {d['scale']} seed {d['seed']} ({named}): mean reward per bin (± s.e.), updates {a}:{b}; "
             f"orange: the targets' bin; dotted: the panel's mean")
    print(f"{title}\n(* = the bin holding the targets' mean; mean ± standard error (episodes))")
    panels = []
    for n in counts:
        label = "all episodes" if n is None else f"{n} other factor(s) within {args.within} bin(s) of the targets'"
        m = marginals(d, (a, b), n, args.within)
        print(f"\n{label}\n\n{table(d, m)}")
        panels.append((label, m))
    if args.out is not None:
        draw(d, panels, title, args.out)


if __name__ == "__main__":
    main()
