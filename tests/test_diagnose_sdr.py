"""benchmarks/diagnose_sdr.py helpers: the SDR set's summary statistics, circular for periodic attributes."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

from scenefit.attributes import Attribute, AttributeSpace

M = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "diagnose_sdr.py"))


def test_set_stats_circular_for_rotation_only() -> None:
    space = AttributeSpace([Attribute("rotation", -180, 180, "deg", periodic=True), Attribute("tx", -10, 10, "px")])
    sdr = torch.tensor([[175.0, 1.0], [-175.0, 3.0]])
    targets = torch.tensor([[170.0, -2.0], [-170.0, 2.0], [180.0, 0.0]])
    rot = M["set_stats"](space, 0, sdr, targets)
    # linear means sit at 0 deg, half a turn from both sets; the circular ones at 180
    assert rot["sdr_mean"] == pytest.approx(0.0) and rot["target_mean"] == pytest.approx(60.0)
    assert rot["circular"]["sdr_mean"] == pytest.approx(180.0) and rot["circular"]["target_mean"] == pytest.approx(180.0)
    assert rot["circular"]["sdr_std"] == pytest.approx(5.0, rel=1e-2)
    tx = M["set_stats"](space, 1, sdr, targets)
    assert "circular" not in tx and tx["sdr_mean"] == pytest.approx(2.0) and tx["target_std"] == pytest.approx(2.0)
