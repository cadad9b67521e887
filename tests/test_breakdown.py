"""The error breakdown's pure parts: groups per attribute space, flips, swapped rows (closed form)."""

from __future__ import annotations

import pytest
import torch

from scenefit.attributes import Attribute, AttributeSpace
from scenefit.breakdown import breakdown_table, flipped, swap_groups, swapped
from scenefit.engines.digits import digit_space
from scenefit.evaluate import attribute_errors


def test_groups_of_the_digit_spaces():
    rot = digit_space(False, 20.0)
    assert swap_groups(rot) == {"rotation": ([0], False), "rotation flips": ([0], True), "digit": ([1], False)}
    trans = digit_space(True, 20.0)
    assert swap_groups(trans) == {"rotation": ([0], False), "rotation flips": ([0], True), "position": ([1, 2], False),
                                  "digit": ([3], False)}


def test_groups_skip_and_lone_tx_and_radians():
    space = AttributeSpace([Attribute("tx", -5, 5, "px"), Attribute("yaw", -3.1416, 3.1416, "rad", periodic=True),
                            Attribute("gain", 0, 1, "", look=True)])
    # tx without ty is its own group; a periodic attribute not in degrees has no flip group; skipped looks have none
    assert swap_groups(space, skip=("gain",)) == {"tx": ([0], False), "yaw": ([1], False)}


def test_flips_wrap_around_the_circle():
    space = digit_space(False, 20.0)
    true = torch.tensor([[170.0, 3], [10.0, 3], [0.0, 3], [-90.0, 3]])
    fitted = torch.tensor([[-10.0, 3], [-120.0, 3], [134.0, 3], [90.0, 3]])
    # errors: 180, 130, 134, 180 degrees (circular)
    assert flipped(space, fitted, true, 0).tolist() == [True, False, False, True]
    err = attribute_errors(space, fitted, true)
    assert err["rotation_flip_fraction"] == 0.5 and err["rotation_within_15deg"] == 0.0


def test_swapped_rows_in_closed_form():
    space = digit_space(True, 20.0)
    true = torch.tensor([[0.0, 1.0, 2.0, 7], [45.0, -3.0, 4.0, 1], [90.0, 5.0, 5.0, 2]])
    fitted = torch.tensor([[180.0, 1.5, 2.0, 7], [40.0, -3.0, 4.0, 7], [90.0, 5.0, 5.0, 2]])
    rows, changed = swapped(space, fitted, true, [1, 2])
    assert torch.equal(rows[:, :1], fitted[:, :1]) and torch.equal(rows[:, 3], fitted[:, 3])
    assert torch.equal(rows[:, 1:3], true[:, 1:3]) and changed == pytest.approx(1 / 3)
    rows, changed = swapped(space, fitted, true, [3])
    assert rows[:, 3].tolist() == [7, 1, 2] and changed == pytest.approx(1 / 3)
    rows, changed = swapped(space, fitted, true, [0], flips_only=True)  # only the 180° row takes the truth
    assert rows[:, 0].tolist() == [0.0, 40.0, 90.0] and changed == pytest.approx(1 / 3)
    assert torch.equal(fitted, torch.tensor([[180.0, 1.5, 2.0, 7], [40.0, -3.0, 4.0, 7], [90.0, 5.0, 5.0, 2]]))  # not modified


def test_table_cells():
    b = {"ours": 0.8, "ceiling": 0.9, "oracle": 0.95, "not_attribute": 0.05, "attributes": 0.1,
         "swaps": {"digit": {"score": 0.85, "gain": 0.05, "rows_changed": 0.04}}}
    md = breakdown_table({"rot-g2": b}).splitlines()
    assert md[2] == "| rot-g2 | 1 | 80.0 | 90.0 | 95.0 | 5.0 | 10.0 | +5.0 (4% rows) |"
