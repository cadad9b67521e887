import csv

import numpy as np
import pytest
import torch
from PIL import Image

import scenefit.datasets as ds
from scenefit.attributes import Attribute, AttributeSpace
from scenefit.datasets import TargetFolderError, export_dataset, load_image_folder


def write_png(path, size=(48, 48), value=128, mode="L"):
    Image.fromarray(np.full(size[::-1] + ((3,) if mode == "RGB" else ()), value, np.uint8), mode).save(path)


def test_load_folder_converts_and_resizes(tmp_path):
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.jpg", size=(96, 96), value=255, mode="RGB")
    with pytest.warns(UserWarning, match=r"resized 1 of 2 images to 48x48 \(1 at 96x96\)"):
        images, names = load_image_folder(tmp_path, 1, 48, 48, progress=False)
    assert names == ["a.png", "b.jpg"]
    assert images.shape == (2, 1, 48, 48)
    assert images[0].mean().item() == pytest.approx(128 / 255, abs=1e-6)
    assert images[1].mean().item() == pytest.approx(1.0, abs=0.01)


def test_missing_and_empty_folder(tmp_path):
    with pytest.raises(TargetFolderError, match=r"target folder does not exist: .*nothere"):
        load_image_folder(tmp_path / "nothere", 1, 48, 48)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TargetFolderError, match=r"target folder is empty: .*empty \(expected PNG or JPEG images\)"):
        load_image_folder(tmp_path / "empty", 1, 48, 48)


def test_corrupt_and_non_image_files(tmp_path):
    write_png(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(TargetFolderError, match=r"cannot read image .*broken.png"):
        load_image_folder(tmp_path, 1, 48, 48, progress=False)
    (tmp_path / "broken.png").unlink()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(TargetFolderError, match=r"not an image file: .*notes.txt"):
        load_image_folder(tmp_path, 1, 48, 48, progress=False)


SPACE = AttributeSpace([Attribute("rotation", -180, 180, "deg", periodic=True), Attribute("digit", categories=tuple("0123456789"))])


def small_set(n=5):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 48, 48, generator=g), torch.arange(n) % 10, SPACE.sample_uniform(n, g)


def test_export_layout_and_metadata(tmp_path):
    images, labels, attrs = small_set()
    out = export_dataset(tmp_path / "ds", images, labels, attrs, SPACE, {"seed": 3}, targets=[f"t{i}.png" for i in range(5)],
                         fit_loss=torch.linspace(0, 1, 5), progress=False)
    rows = list(csv.DictReader(open(out / "train" / "metadata.csv")))
    assert [r["file_name"] for r in rows] == [f"{i:06d}.png" for i in range(5)]
    assert list(rows[0]) == ["file_name", "label", "rotation", "digit", "target", "fit_loss"]
    assert [int(r["label"]) for r in rows] == labels.tolist()
    assert float(rows[2]["rotation"]) == pytest.approx(attrs[2, 0].item(), abs=1e-3)
    back = np.asarray(Image.open(out / "train" / "000001.png"))
    assert np.abs(back / 255.0 - images[1, 0].numpy()).max() <= 0.5 / 255 + 1e-6
    import json

    man = json.loads((out / "manifest.json").read_text())
    assert man["seed"] == 3 and man["count"] == 5 and "torch" in man["versions"]


def test_export_is_readable_by_hf_imagefolder(tmp_path):
    datasets = pytest.importorskip("datasets")
    images, labels, attrs = small_set()
    out = export_dataset(tmp_path / "ds", images, labels, attrs, SPACE, {}, progress=False)
    d = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert len(d) == 5
    assert sorted(d[i]["label"] for i in range(5)) == sorted(labels.tolist())
    assert d[0]["image"].size == (48, 48)
    assert "rotation" in d.column_names


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
    images, labels, attrs = small_set()
    calls = {"n": 0}
    real = ds.save_png

    def flaky(array, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real(array, path)

    monkeypatch.setattr(ds, "save_png", flaky)
    with pytest.raises(OSError, match="disk full"):
        export_dataset(tmp_path / "ds", images, labels, attrs, SPACE, {}, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_to_overwrite(tmp_path):
    images, labels, attrs = small_set()
    export_dataset(tmp_path / "ds", images, labels, attrs, SPACE, {}, progress=False)
    with pytest.raises(FileExistsError, match=r"output folder already exists: .*ds \(choose another --out or pass --overwrite\)"):
        export_dataset(tmp_path / "ds", images, labels, attrs, SPACE, {}, progress=False)
