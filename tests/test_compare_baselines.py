"""benchmarks/compare_baselines.py's mode breakdown on hand-made rows (closed form: which mode a row is nearest)."""

from __future__ import annotations

import runpy
from pathlib import Path

import torch

from scenefit.engines.digits import digit_space
from scenefit.scenarios import mixture_from_dict

BENCH = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "compare_baselines.py"))
SPACE = digit_space(translate=True, max_shift=20.0)
# two rotation modes half a turn apart, the second also shifted right
MIX = mixture_from_dict({"components": [
    {"weight": 1, "rotation": {"mean": 170.0, "std": 10.0}, "tx": {"mean": 0.0, "std": 2.0}},
    {"weight": 1, "rotation": {"mean": -10.0, "std": 10.0}, "tx": {"mean": 10.0, "std": 2.0}}]})


def rows(rot: list[float], tx: list[float], digit: list[int]) -> torch.Tensor:
    """(N, 4) rows of rotation, tx, ty = 0, digit."""
    return torch.tensor([[r, x, 0.0, d] for r, x, d in zip(rot, tx, digit)])


def test_assign_modes_wraps_rotation_and_uses_every_named_attribute() -> None:
    # -175° is 15° from 170° across the seam, 165° from -10°; tx 9 is nearer mode 1 but the rotation outweighs it
    x = rows([-175.0, 5.0, 150.0, 20.0], [9.0, 1.0, 0.0, 10.0], [0, 0, 0, 0])
    assert BENCH["assign_modes"](SPACE, MIX, x).tolist() == [0, 1, 0, 1]
    # equal rotation distance (80° from both): tx decides
    y = rows([80.0, 80.0], [1.0, 9.0], [0, 0])
    assert BENCH["assign_modes"](SPACE, MIX, y).tolist() == [0, 1]


def test_modes_names_the_class_mode_pairs_the_rows_miss() -> None:
    targets = rows([170.0] * 10 + [-10.0] * 10, [0.0] * 10 + [10.0] * 10, [0, 1] * 10)
    # class 0 only in mode 0, class 1 in both
    made = rows([170.0, 170.0, -10.0], [0.0, 0.0, 10.0], [0, 1, 1])
    line = BENCH["modes"](SPACE, MIX, made, targets)
    assert "0: 50 / 67, 1: 50 / 33" in line
    assert "pairs the targets fill and the rows miss: 1 of 4 (0:1)" in line
    one = mixture_from_dict({"components": [{"weight": 1, "rotation": {"mean": 0.0, "std": 10.0}}]})
    assert BENCH["modes"](SPACE, one, made, targets) == ""
