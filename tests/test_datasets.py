"""Reading target folders (any size, bit depth, mode) and exporting datasets that Hugging Face loads with names."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import scenefit.datasets as ds
from scenefit.datasets import export_dataset, read_metadata
from scenefit.engines.digits import DigitEngine
from scenefit.imagefolder import LUMA, TargetFolderError, crop_box, load_image_folder, read_image
from scenefit.runs import FolderError


def write_png(path, size=(48, 48), value=128, mode="L"):
    Image.fromarray(np.full(size[::-1] + ((3,) if mode == "RGB" else ()), value, np.uint8), mode).save(path)


def test_load_folder_converts_crops_and_resizes(tmp_path):
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.jpg", size=(96, 96), value=255, mode="RGB")
    with pytest.warns(UserWarning, match=r": resized 1 of 2 images to 48x48 \(1 resized at 96x96\)"):
        images, names = load_image_folder(tmp_path, 1, 48, 48, progress=False)
    assert names == ["a.png", "b.jpg"]
    assert images.shape == (2, 1, 48, 48)
    assert images[0].mean().item() == pytest.approx(128 / 255, abs=1e-6)
    assert images[1].mean().item() == pytest.approx(1.0, abs=0.01)


def test_crop_box_keeps_the_aspect_ratio_centred():
    assert crop_box(375, 1242, 96, 320) == (1, 0, 373, 1242)  # KITTI is a little taller than 10:3: 1242 / (10/3) = 372.6 rows
    assert crop_box(375, 1300, 96, 320) == (0, 25, 375, 1250)  # too wide: 1300 - 1250 = 50 px cut, 25 each side
    assert crop_box(400, 300, 48, 48) == (50, 0, 300, 300)  # too tall: 100 px cut, 50 each side


def test_wide_image_is_centre_cropped_before_resizing(tmp_path):
    arr = np.zeros((10, 30), np.uint8)
    arr[:, 10:20] = 255  # a white centre third: after a centre crop to 10x10 the image is all white
    Image.fromarray(arr).save(tmp_path / "wide.png")
    with pytest.warns(UserWarning, match=r"centre-cropped to the aspect ratio and resized 1 of 1 images to 10x10 \(1 cropped and resized at 30x10\)"):
        images, _ = load_image_folder(tmp_path, 1, 10, 10, progress=False)
    assert images.min().item() == pytest.approx(1.0)


def test_sixteen_bit_grey_alpha_and_colour_to_grey(tmp_path):
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(tmp_path / "g16.png")
    assert read_image(tmp_path / "g16.png", 1)[0, 0, 0] == pytest.approx(32768 / 65535, abs=1e-6)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128  # red at half opacity over black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png", 3)[0, 0].tolist() == pytest.approx([128 / 255, 0.0, 0.0], abs=1e-6)
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "green.png")
    assert read_image(tmp_path / "green.png", 1)[0, 0, 0] == pytest.approx(LUMA[1] * 200 / 255, abs=1e-6)


def test_decompression_bomb_is_a_clear_error(tmp_path, monkeypatch):
    write_png(tmp_path / "big.png", size=(100, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(TargetFolderError, match=r"image .*big.png is too large \(over 1,000 pixels\); shrink it first"):
        load_image_folder(tmp_path, 1, 48, 48, progress=False)


def test_missing_empty_and_skipped(tmp_path):
    with pytest.raises(TargetFolderError, match=r"target folder does not exist: .*nothere"):
        load_image_folder(tmp_path / "nothere", 1, 48, 48)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TargetFolderError, match=r"target folder is empty: .*empty \(expected PNG or JPEG images\)"):
        load_image_folder(tmp_path / "empty", 1, 48, 48)
    write_png(tmp_path / "empty" / "a.png")
    (tmp_path / "empty" / "sub").mkdir()
    (tmp_path / "empty" / "dangling.png").symlink_to(tmp_path / "gone.png")
    with pytest.warns(UserWarning, match=r"skipped 1 entry neither file nor folder \(broken links, links to a folder read "
                      r"already, \.\.\.: dangling.png\)"):  # the empty sub-folder is read: it holds no targets
        images, names = load_image_folder(tmp_path / "empty", 1, 48, 48, progress=False)
    assert names == ["a.png"]


def test_corrupt_and_non_image_files(tmp_path):
    write_png(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(TargetFolderError, match=r"cannot read image .*broken.png"):
        load_image_folder(tmp_path, 1, 48, 48, progress=False)
    (tmp_path / "broken.png").unlink()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(TargetFolderError, match=r"not an image file: .*notes.txt"):
        load_image_folder(tmp_path, 1, 48, 48, progress=False)


@pytest.fixture(scope="module")
def engine(split):
    return DigitEngine(split[0], canvas=32)


def small_set(engine, n=5):
    g = torch.Generator().manual_seed(0)
    attrs = engine.space.sample_uniform(n, g)
    out = engine.render(attrs, g)
    return out["image"], out["label"], attrs


def test_export_layout_metadata_and_card(tmp_path, engine):
    images, labels, attrs = small_set(engine)
    out = export_dataset(tmp_path / "ds", images, labels, attrs, engine, {"seed": 3}, targets=[f"t{i}.png" for i in range(5)],
                         fit_loss=torch.linspace(0, 1, 5), seeds=torch.arange(5), progress=False)
    meta = read_metadata(out)
    assert list(meta) == ["file_name", "label", "rotation", "digit", "target", "fit_loss", "seed"]
    assert meta["file_name"] == [f"{i:06d}.png" for i in range(5)] and meta["label"] == labels.tolist()
    assert meta["rotation"][2] == pytest.approx(attrs[2, 0].item(), abs=1e-5) and meta["seed"] == [0, 1, 2, 3, 4]
    back = np.asarray(Image.open(out / "train" / "000001.png"))
    assert np.abs(back / 255.0 - images[1, 0].numpy()).max() <= 0.5 / 255 + 1e-6
    man = json.loads((out / "manifest.json").read_text())
    assert man["seed"] == 3 and man["count"] == 5 and "torch" in man["versions"] and man["labels"]["names"][3] == "3"
    classes = json.loads((out / "classes.json").read_text())
    assert classes["label_kind"] == "class" and classes["classes"][7] == {"id": 7, "name": "7", "color": None}
    assert "class_label" in (out / "README.md").read_text()
    assert json.loads((out / ".scenefit").read_text())["kind"] == "dataset"


def test_export_loads_in_hf_with_class_names(tmp_path, engine):
    datasets = pytest.importorskip("datasets")
    images, labels, attrs = small_set(engine)
    out = export_dataset(tmp_path / "ds", images, labels, attrs, engine, {}, progress=False)
    d = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert len(d) == 5 and d[0]["image"].size == (32, 32)
    assert d.features["label"].names == [str(i) for i in range(10)] and d.features["digit"].names == [str(i) for i in range(10)]
    assert [d[i]["label"] for i in range(5)] == labels.tolist()


def test_failed_export_leaves_nothing(tmp_path, monkeypatch, engine):
    images, labels, attrs = small_set(engine)
    calls = {"n": 0}
    real = ds.save_png

    def flaky(array, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real(array, path)

    monkeypatch.setattr(ds, "save_png", flaky)
    with pytest.raises(OSError, match="disk full"):
        export_dataset(tmp_path / "ds", images, labels, attrs, engine, {}, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_export_replaces_only_its_own_folders(tmp_path, engine):
    images, labels, attrs = small_set(engine)
    export_dataset(tmp_path / "ds", images, labels, attrs, engine, {}, progress=False)
    with pytest.raises(FileExistsError, match=r"dataset folder already exists: .*ds \(choose another --out or pass --overwrite\)"):
        export_dataset(tmp_path / "ds", images, labels, attrs, engine, {}, progress=False)
    export_dataset(tmp_path / "ds", images[:2], labels[:2], attrs[:2], engine, {}, overwrite=True, progress=False)
    assert len(read_metadata(tmp_path / "ds")["file_name"]) == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "important.txt").write_text("x")
    with pytest.raises(FolderError, match=r"mine exists and is not a scenefit dataset; scenefit replaces only folders it created"):
        export_dataset(tmp_path / "mine", images, labels, attrs, engine, {}, overwrite=True, progress=False)
    assert (tmp_path / "mine" / "important.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "mine"]  # no lock or temp file left beside them


def test_stale_partials_of_a_killed_export_are_cleaned(tmp_path, engine):
    images, labels, attrs = small_set(engine)
    (tmp_path / ".ds.abc123.partial" / "train").mkdir(parents=True)
    export_dataset(tmp_path / "ds", images, labels, attrs, engine, {}, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_outputs_follow_the_umask(tmp_path, engine):
    import os

    images, labels, attrs = small_set(engine)
    old = os.umask(0o022)
    try:
        out = export_dataset(tmp_path / "ds", images, labels, attrs, engine, {}, progress=False)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755
    assert (out / "manifest.json").stat().st_mode & 0o777 == 0o644
