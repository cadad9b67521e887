"""Look-shift experiments side by side: ours before and after changes, per row (markdown to stdout).

Reads the ``results.json`` of two or more ``scenefit experiment shift`` folders of the same setting, scale and
seed (say, today's E and ``--set encoder.augment=nuisance``) and prints, per row, the initial scenes and the
ceiling (from the first), ours, the gap closed, the median rotation (and position, where there is one) error and
the share of right classes of each; then, for the last folder, the issue's targets per strong row: gap closed
>= 0.8 (skipped where the ceiling is within 3 points of initial) and every median error <= 2x its clean one::

    python benchmarks/compare_shift.py runs/shift-rot-g2 runs/shift-rot-g2-nui --names clean-E nuisance-E
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(folder: Path) -> dict[str, dict]:
    """The experiment's rows by name (``clean``, ``blur:strong``, ...)."""
    return {r["row"]: r for r in json.loads((folder / "results.json").read_text())["rows"]}


def cell(r: dict | None, key: str) -> str:
    """One formatted figure of row ``r``: ``ours`` (%), ``gap``, ``rot`` (deg), ``pos`` (px), ``cls`` (fraction)."""
    if r is None:
        return "–"
    e = r["attribute_error"]
    v = {"ours": 100 * r["accuracy"]["ours"], "gap": r["gap_closed"], "rot": e.get("rotation_median_abs"),
         "pos": e.get("position_median_px"), "cls": e.get("digit_accuracy")}[key]
    if v is None:
        return "n/a"
    return f"{v:.1f}" if key in ("ours", "rot", "pos") else f"{v:.2f}"


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", type=Path, nargs="+", help="two or more experiment folders, the first one's rows first")
    p.add_argument("--names", nargs="+", default=None, help="one name per folder (default: the folder names)")
    args = p.parse_args()
    names = args.names or [f.name for f in args.folders]
    if len(args.folders) < 2 or len(names) != len(args.folders):
        p.error(f"need two or more folders and one name each; got {len(args.folders)} folders, {len(names)} names")
    runs = [rows(f) for f in args.folders]
    order = list(runs[0]) + [r for run in runs[1:] for r in run if r not in runs[0]]
    pos = any("position_median_px" in r["attribute_error"] for r in runs[0].values())
    keys = ["ours", "gap", "rot"] + (["pos"] if pos else []) + ["cls"]
    label = {"ours": "ours %", "gap": "gap closed", "rot": "rot. err °", "pos": "pos. err px", "cls": "class right"}
    head = ["shift", "initial %", "ceiling %"] + [f"{label[k]} {n}" for k in keys for n in names]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for name in order:
        first = next(run[name] for run in runs if name in run)
        acc = first["accuracy"]
        cells = [name, f"{100 * acc['initial']:.1f}", f"{100 * acc['ceiling']:.1f}"]
        cells += [cell(run.get(name), k) for k in keys for run in runs]
        print("| " + " | ".join(cells) + " |")
    print()
    print(f"Targets for {names[-1]}: " + "; ".join(missed(runs[-1])))


def missed(run: dict[str, dict]) -> list[str]:
    """Per strong row, ``ok`` or what it misses: gap closed < 0.8, or a median error over 2x the clean row's."""
    clean = run["clean"]["attribute_error"]
    out = []
    for name, r in run.items():
        if not name.endswith(":strong"):
            continue
        miss = []
        g = r["gap_closed"]
        if g is not None and g < 0.8:
            miss.append(f"gap {g:.2f}")
        for key, unit in (("rotation_median_abs", "°"), ("position_median_px", " px")):
            v, c = r["attribute_error"].get(key), clean.get(key)
            if v is not None and c is not None and v > 2 * c:
                miss.append(f"{key.split('_')[0]} err {v:.1f}{unit} > 2 x {c:.1f}{unit}")
        out.append(f"{name} " + ("ok" if not miss else ", ".join(miss)) + (" (gap n/a)" if g is None else ""))
    return out


if __name__ == "__main__":
    main()
