"""Two look-shift experiments side by side: ours before and after a change, per row (markdown to stdout).

Reads the ``results.json`` of two ``scenefit experiment shift`` folders of the same setting, scale and seed (say,
today's E and ``--set encoder.augment=photometric``) and prints, per row, the initial scenes and the ceiling (from
the first), ours, the gap closed, the median rotation (and position, where there is one) error and the share of
right classes of each::

    python benchmarks/compare_shift.py runs/shift-rot-g2 runs/shift-rot-g2-aug --names clean-E augmented-E
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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--names", nargs=2, default=["before", "after"])
    args = p.parse_args()
    a, b = rows(args.before), rows(args.after)
    pos = any("position_median_px" in r["attribute_error"] for r in a.values())
    keys = ["ours", "gap", "rot"] + (["pos"] if pos else []) + ["cls"]
    label = {"ours": "ours %", "gap": "gap closed", "rot": "rot. err °", "pos": "pos. err px", "cls": "class right"}
    n1, n2 = args.names
    head = ["shift", "initial %", "ceiling %"] + [f"{label[k]} {n}" for k in keys for n in (n1, n2)]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for name, r in a.items():
        s = b.get(name)
        acc = r["accuracy"]
        cells = [name, f"{100 * acc['initial']:.1f}", f"{100 * acc['ceiling']:.1f}"]
        cells += [c for k in keys for c in (cell(r, k), cell(s, k))]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
