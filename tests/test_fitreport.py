"""The fit report: loss quantiles, worst targets, attributes at their bounds, written beside a loadable dataset."""

import numpy as np
import pytest
import torch
from PIL import Image

from scenefit.attributes import Attribute, AttributeSpace
from scenefit.fitreport import FILES, at_bounds, attribute_rows, loss_summary, write_fit_report

SPACE = AttributeSpace([Attribute("rotation", -180.0, 180.0, "deg", periodic=True), Attribute("tx", -10.0, 10.0, "px"),
                        Attribute("digit", categories=tuple("0123456789"))])


def test_loss_summary_and_bounds_are_the_closed_form_values():
    s = loss_summary(np.arange(101, dtype=np.float64))  # 0..100: quantile q is 100 q
    assert s == {"count": 101.0, "mean": 50.0, "max": 100.0, "q10": 10.0, "q50": 50.0, "q90": 90.0, "q99": 99.0}
    lo, hi = at_bounds(np.array([-10.0, -9.995, 0.0, 10.0]), -10.0, 10.0)  # tolerance 0.02 px
    assert (lo, hi) == (0.5, 0.25)


def test_attribute_rows_skip_bounds_of_periodic_and_categorical_attributes():
    fitted = {"rotation": np.array([170.0, -170.0]), "tx": np.array([10.0, 0.0]), "digit": np.array([3.0, 3.0])}
    rows = attribute_rows(SPACE, fitted, np.array([[0.0, 0.0, 1.0], [10.0, 2.0, 3.0]]))
    assert [r["low"] for r in rows] == [None, 0.0, None] and [r["high"] for r in rows] == [None, 0.5, None]
    assert rows[1]["fit_mean"] == 5.0 and rows[1]["init_mean"] == 1.0 and rows[2]["fit_std"] == 0.0


def make_dataset(tmp_path, n=8):
    targets, folder = tmp_path / "targets", tmp_path / "ds"
    targets.mkdir()
    (folder / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((20, 30)) * 255).astype(np.uint8)).save(targets / f"t{i}.png")
        for k in range(2):  # two renders per target, the first is shown
            Image.fromarray(np.full((16, 16), 40 * k, np.uint8)).save(folder / "train" / f"{2 * i + k:03d}.png")
    names = [f"t{i}.png" for i in range(n)]
    meta = {"file_name": [f"{j:03d}.png" for j in range(2 * n)], "target": [t for t in names for _ in range(2)]}
    loss = [0.1, 0.9, 0.2, 0.05, 0.7, 0.3, 0.4, 0.6][:n]
    fit = {"target": names, "fit_loss": loss, "rotation": [0.0] * n, "tx": [10.0] * (n // 2) + [0.0] * (n - n // 2),
           "digit": [i % 10 for i in range(n)]}
    return targets, folder, meta, fit


def test_report_names_the_worst_targets_and_flags_a_pile_up_at_a_bound(tmp_path):
    targets, folder, meta, fit = make_dataset(tmp_path)
    initial = torch.tensor([[0.0, 0.0, 1.0]]).repeat(100, 1)
    rep = write_fit_report(folder, fit, meta, targets, SPACE, initial, 1, 16, 16, worst=3)
    assert [w[0] for w in rep["worst"]] == ["t1.png", "t4.png", "t7.png"] and rep["worst"][0][1] == pytest.approx(0.9)
    assert rep["loss"]["q50"] == pytest.approx(float(np.median(fit["fit_loss"])))
    for name in FILES:
        assert (folder / name).stat().st_size > 100, name
    md = (folder / "fit_report.md").read_text()
    assert md.startswith("# Fit report\n\n8 targets fitted.")
    assert "| t1.png | 0.9000 |\n| t4.png | 0.7000 |\n| t7.png | 0.6000 |" in md
    assert ("- **tx**: 50.0% of the fitted rows sit at the high bound; the targets may lie outside the engine's range "
            "for it.") in md
    assert "| tx | 5 ± 5 px | 0 ± 0 px | 0.0% | 50.0% |" in md
    with Image.open(folder / "fit_report_worst.png") as im:  # 3 pairs in one block: two rows of images
        assert im.width > im.height > 100


def test_report_without_flags_says_so(tmp_path):
    targets, folder, meta, fit = make_dataset(tmp_path, n=4)
    fit["tx"] = [1.0, -2.0, 3.0, 0.5]
    write_fit_report(folder, fit, meta, targets, SPACE, torch.zeros(10, 3), 1, 16, 16)
    assert "- none: no attribute piles up at a bound of its range, no category takes most rows." in (folder / "fit_report.md").read_text()


def test_report_flags_a_fit_collapsed_onto_one_category(tmp_path):
    targets, folder, meta, fit = make_dataset(tmp_path)
    fit["tx"] = [0.0] * 8
    fit["digit"] = [1] * 7 + [4]
    initial = torch.tensor([[0.0, 0.0, float(i % 10)] for i in range(100)])  # 10% each
    rep = write_fit_report(folder, fit, meta, targets, SPACE, initial, 1, 16, 16)
    assert rep["attributes"][2]["mode"] == {"category": "1", "share": 0.875, "initial_share": 0.1}
    assert len(rep["flags"]) == 1 and rep["flags"][0].startswith("**digit**: 87.5% of the fitted rows are '1'")
    md = (folder / "fit_report.md").read_text()
    assert "| digit | most common 1: 87.5% | 1: 10.0% | – | – |" in md
    assert ("- **digit**: 87.5% of the fitted rows are '1' (the initial distribution: 10.0%); the fit may have collapsed "
            "onto one category because the targets look unlike the engine's renders (with the amortized fit, an encoder "
            "trained with encoder.augment nuisance reads other looks better).") in md
