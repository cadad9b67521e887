"""Which files of a target folder are targets: sub-folders, KITTI and Cityscapes roots, --glob; names relative to the
root stay unique through shards, fitted.parquet and the dataset; a KITTI root fits end to end with street-tiny."""

import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from scenefit.cli import main
from scenefit.imagefolder import list_images, load_image_folder
from scenefit.shards import job_record, plan_shards
from scenefit.targetfiles import TargetFolderError, detect_layout, find_targets

KITTI_NAMES = ["testing/image_2/000000_10.png", "testing/image_2/000001_10.png",
               "training/image_2/000000_10.png", "training/image_2/000001_10.png", "training/image_2/000002_10.png"]


def image(path: Path, size=(124, 40), seed=0) -> None:
    """An RGB noise PNG of ``size`` (W, H) (KITTI's aspect ratio by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = (np.random.default_rng(seed).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(path)


def label(path: Path, size=(124, 40)) -> None:
    """A single-channel PNG of Cityscapes ids, as KITTI's semantic/ and Cityscapes' gtFine/ hold."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0]), 7, np.uint8)).save(path)


def kitti(root: Path) -> Path:
    """A KITTI semantics root: training/{image_2, semantic, semantic_rgb} and testing/image_2, same names in both."""
    for i in range(3):
        image(root / "training" / "image_2" / f"00000{i}_10.png", seed=i)
        label(root / "training" / "semantic" / f"00000{i}_10.png")
        image(root / "training" / "semantic_rgb" / f"00000{i}_10.png", seed=50 + i)
    for i in range(2):
        image(root / "testing" / "image_2" / f"00000{i}_10.png", seed=10 + i)
    (root / "devkit").mkdir()
    (root / "devkit" / "readme.txt").write_text("not a target")
    return root


def cityscapes(root: Path) -> Path:
    """A Cityscapes root: leftImg8bit/<split>/<city> beside gtFine/<split>/<city> (ids, colours, polygons)."""
    for split, city in (("train", "aachen"), ("train", "bonn"), ("val", "frankfurt")):
        stem = f"{city}_000000_000019"
        image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", size=(128, 64))
        for kind in ("labelIds", "instanceIds", "color"):
            label(root / "gtFine" / split / city / f"{stem}_gtFine_{kind}.png", size=(128, 64))
        (root / "gtFine" / split / city / f"{stem}_gtFine_polygons.json").write_text("{}")
    (root / "license.txt").write_text("not a target")
    return root


def test_kitti_root_reads_the_image_2_folders_only(tmp_path):
    found = find_targets(kitti(tmp_path / "kitti"))
    assert list(found.names) == KITTI_NAMES  # no semantic/, semantic_rgb/ or devkit/ file
    assert [p.relative_to(tmp_path / "kitti").as_posix() for p in found.files] == KITTI_NAMES
    assert found.rule == (f"reading KITTI layout of {tmp_path / 'kitti'}: 5 images under testing/image_2, training/image_2 "
                          "(labels beside them are not read)")
    assert detect_layout(tmp_path / "kitti" / "training")[0] == "KITTI"  # one split holding image_2 and semantic
    assert list(find_targets(tmp_path / "kitti" / "training").names) == [f"image_2/00000{i}_10.png" for i in range(3)]


def test_cityscapes_root_reads_left_img8bit_only(tmp_path):
    found = find_targets(cityscapes(tmp_path / "cs"))
    assert list(found.names) == ["leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png",
                                 "leftImg8bit/train/bonn/bonn_000000_000019_leftImg8bit.png",
                                 "leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png"]
    assert found.rule == (f"reading Cityscapes layout of {tmp_path / 'cs'}: 3 images under leftImg8bit/train, leftImg8bit/val "
                          "(labels beside them are not read)")
    assert list(find_targets(tmp_path / "cs" / "leftImg8bit" / "val").names) == [
        "frankfurt/frankfurt_000000_000019_leftImg8bit.png"]  # a split folder is a plain tree


def test_plain_tree_reads_subfolders_and_keeps_same_names_apart(tmp_path):
    for rel in ("c.png", "a/x.png", "b/x.png", "b/deep/y.jpg", ".hidden/z.png", "a/.z.png"):
        image(tmp_path / rel, size=(16, 16))
    (tmp_path / "empty").mkdir()
    found = find_targets(tmp_path)
    assert list(found.names) == ["a/x.png", "b/deep/y.jpg", "b/x.png", "c.png"]  # folder by folder, hidden skipped
    assert found.rule == f"reading every image under {tmp_path}, sub-folders too: 4 images in 4 folders"
    assert list_images(tmp_path) == [tmp_path / n for n in found.names]
    images, names = load_image_folder(tmp_path, 3, 16, 16, progress=False)
    assert names == list(found.names) and images.shape == (4, 3, 16, 16)


def test_flat_folder_is_read_as_before(tmp_path):
    for n in ("b.png", "a.jpg", "c.PNG"):
        image(tmp_path / n, size=(8, 8))
    found = find_targets(tmp_path)
    assert list(found.names) == ["a.jpg", "b.png", "c.PNG"] and found.rule == ""


def test_glob_chooses_the_targets(tmp_path):
    root = kitti(tmp_path / "kitti")
    found = find_targets(root, "training/*/*.png")
    assert list(found.names) == [f"training/{d}/00000{i}_10.png" for d in ("image_2", "semantic", "semantic_rgb") for i in range(3)]
    assert found.rule == f"reading --glob 'training/*/*.png' in {root}: 9 images"
    assert list(find_targets(root, "**/image_2/*.png").names) == KITTI_NAMES


def test_errors_name_the_folder_and_the_value(tmp_path):
    root = kitti(tmp_path / "kitti")
    with pytest.raises(TargetFolderError, match=re.escape(
            f"--glob '*.png' matches no files in {root} (hidden files are skipped; '**/' descends into sub-folders, "
            "e.g. '**/*.png')")):
        find_targets(root, "*.png")
    with pytest.raises(TargetFolderError, match=re.escape(
            f"--glob '../*.png' must be a pattern relative to the target folder {root}, without '..', such as '**/*.png'")):
        find_targets(root, "../*.png")
    with pytest.raises(TargetFolderError, match=re.escape(
            f"not an image file: {root / 'devkit' / 'readme.txt'} (supported: .png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp, "
            ".pgm; --glob chooses which files are targets, e.g. --glob '**/*.png')")):
        find_targets(root, "devkit/*")
    (tmp_path / "both").mkdir()
    kitti(tmp_path / "both")
    cityscapes(tmp_path / "both")
    with pytest.raises(TargetFolderError, match=re.escape(
            f"{tmp_path / 'both'} holds both KITTI image_2 folders and a Cityscapes leftImg8bit folder: pass --glob")):
        find_targets(tmp_path / "both")
    (tmp_path / "bare" / "training" / "image_2").mkdir(parents=True)
    with pytest.raises(TargetFolderError, match=re.escape(
            f"{tmp_path / 'bare'} has the KITTI layout but its training/image_2 folders hold no files")):
        find_targets(tmp_path / "bare")


def test_a_link_back_up_the_tree_is_read_once(tmp_path):
    image(tmp_path / "a" / "x.png", size=(8, 8))
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    with pytest.warns(UserWarning, match=r"skipped 1 entry neither file nor folder \(broken links, links to a folder read "
                                         r"already, \.\.\.: a/loop\)"):
        assert list(find_targets(tmp_path).names) == ["a/x.png"]


def test_shards_and_job_key_keep_same_file_names_apart(tmp_path):
    found = find_targets(kitti(tmp_path / "kitti"))
    shards = plan_shards(list(found.files), 2, list(found.names))
    assert [n for s in shards for n in s.names] == KITTI_NAMES and [len(s.names) for s in shards] == [2, 2, 1]
    assert plan_shards(list(found.files), 2)[0].names == ("000000_10.png", "000001_10.png")  # default: file names
    with pytest.raises(ValueError, match="5 target files but 1 names"):
        plan_shards(list(found.files), 2, ["x"])
    by_path = job_record({}, {}, list(found.files), 2, list(found.names))["key"]
    assert by_path != job_record({}, {}, list(found.files), 2)["key"]


def test_fit_street_on_a_kitti_root(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("SCENEFIT_CACHE", str(tmp_path / "cache"))  # trains the tiny surrogate there (seconds)
    root, out = kitti(tmp_path / "kitti"), tmp_path / "ds"
    args = ["fit", "street-tiny", "--targets", str(root), "--set", "fit.calibrate.attributes=[]", "--no-progress"]
    with pytest.warns(UserWarning, match=re.escape(f"{root}: centre-cropped to the aspect ratio and resized 5 of 5 images to 160x64")):
        assert main([*args, "--out", str(out)]) == 0
    assert (f"[scenefit] reading KITTI layout of {root}: 5 images under testing/image_2, training/image_2 "
            "(labels beside them are not read)") in capsys.readouterr().out
    assert pq.read_table(out / "fitted.parquet").column("target").to_pylist() == KITTI_NAMES
    meta = pq.read_table(out / "train" / "metadata.parquet").to_pydict()
    assert meta["target"] == KITTI_NAMES and meta["file_name"] == [f"{i:06d}.png" for i in range(5)]
    assert sorted(p.name for p in (out / "train").glob("*.png")) == meta["file_name"]
    assert "training/image_2/" in (out / "fit_report.md").read_text()  # the worst targets are read back by their names
    assert main([*args, "--out", str(tmp_path / "ds2"), "--glob", "*.png"]) == 2
    assert f"scenefit: error: --glob '*.png' matches no files in {root}" in capsys.readouterr().err
    assert not (tmp_path / "ds2").exists() and not (tmp_path / ".ds2.shards").exists()
