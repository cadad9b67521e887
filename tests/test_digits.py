import gzip
import struct

import numpy as np
import pytest
import torch

from scenefit.engines.digits import DigitEngine
from scenefit.mnist import load_idx_digits, read_idx, split_bank


def test_bank_has_5000_digits_all_classes(bank):
    assert len(bank) == 5000
    assert torch.bincount(bank.labels).tolist() == [500] * 10
    assert bank.images.shape == (5000, 28, 28) and 0.0 <= bank.images.min() and bank.images.max() <= 1.0


def test_split_is_shuffled_and_disjoint(bank, split):
    eng, tgt, tst = split
    assert (len(eng), len(tgt), len(tst)) == (2500, 1250, 1250)
    # shuffled: every class present in each part despite the sorted source
    for part in split:
        assert torch.bincount(part.labels, minlength=10).min() > 80


@pytest.mark.parametrize("canvas", [48, 64])
def test_rotation_90_equals_rot90(bank, canvas):
    e = DigitEngine(bank, canvas=canvas, background="plain")
    tex = torch.tensor([7, 1234, 4321])
    a0 = torch.tensor([[0.0, 0.0]] * 3)
    a90 = torch.tensor([[90.0, 0.0]] * 3)
    a0[:, 1] = a90[:, 1] = bank.labels[tex].float()
    im0 = e.render(a0, textures=tex)["image"]
    im90 = e.render(a90, textures=tex)["image"]
    assert torch.allclose(torch.rot90(im0, 1, dims=(-2, -1)), im90, atol=1e-5)
    im180 = e.render(a90 * torch.tensor([2.0, 1.0]), textures=tex)["image"]
    assert torch.allclose(torch.rot90(im0, 2, dims=(-2, -1)), im180, atol=1e-5)


def test_translation_moves_centre_of_mass(bank):
    e = DigitEngine(bank, canvas=64, translate=True, background="plain")
    tex = torch.tensor([99, 2500, 4999])
    d = bank.labels[tex].float()
    base = torch.stack([torch.zeros(3), torch.zeros(3), torch.zeros(3), d], 1)
    moved = base.clone()
    moved[:, 1] = 5.0
    down = base.clone()
    down[:, 2] = -3.0
    xs = torch.arange(64.0)

    def com(img):
        img = img[:, 0]
        m = img.sum((1, 2))
        return (img.sum(1) * xs).sum(1) / m, (img.sum(2) * xs).sum(1) / m

    x0, y0 = com(e.render(base, textures=tex)["image"])
    x1, y1 = com(e.render(moved, textures=tex)["image"])
    x2, y2 = com(e.render(down, textures=tex)["image"])
    assert torch.allclose(x1 - x0, torch.full((3,), 5.0), atol=0.1)
    assert torch.allclose(y1 - y0, torch.zeros(3), atol=0.1)
    assert torch.allclose(y2 - y0, torch.full((3,), -3.0), atol=0.1)


def test_same_seed_same_render(bank):
    e = DigitEngine(bank, canvas=48)
    a = e.space.sample_uniform(16, torch.Generator().manual_seed(0))
    r1 = e.render(a, torch.Generator().manual_seed(5))
    r2 = e.render(a, torch.Generator().manual_seed(5))
    r3 = e.render(a, torch.Generator().manual_seed(6))
    assert torch.equal(r1["image"], r2["image"]) and torch.equal(r1["label"], r2["label"])
    assert not torch.equal(r1["image"], r3["image"])
    assert torch.equal(r1["label"], a[:, 1].long())


def test_background_is_low_contrast(bank):
    e = DigitEngine(bank, canvas=48, contrast=0.25)
    a = torch.tensor([[0.0, 1.0]])
    img = e.render(a, torch.Generator().manual_seed(0))["image"]
    corner = img[0, 0, :8, :8]
    assert 0.0 <= corner.min() and corner.max() <= 0.25 and corner.std() > 0.005


def test_engine_is_differentiable(bank):
    e = DigitEngine(bank, canvas=48, background="plain")
    a = torch.tensor([[30.0, 3.0]], requires_grad=True)
    e.render(a, textures=torch.tensor([1600]))["image"].sum().backward()
    assert a.grad is not None and a.grad[0, 0].abs() > 0


def _write_idx(path, array):
    dims = array.shape
    header = bytes([0, 0, 8, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_roundtrip(tmp_path):
    x = (np.arange(3 * 28 * 28) % 256).reshape(3, 28, 28)
    y = np.array([1, 2, 3])
    _write_idx(tmp_path / "img.gz", x)
    _write_idx(tmp_path / "lab.gz", y)
    b = load_idx_digits(tmp_path / "img.gz", tmp_path / "lab.gz")
    assert b.labels.tolist() == [1, 2, 3]
    assert b.images[0, 0, 1].item() == pytest.approx(1 / 255)


def test_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="IDX file not found: .*missing.idx"):
        read_idx(tmp_path / "missing.idx")
    (tmp_path / "bad.idx").write_bytes(b"\x12\x34\x56\x78")
    with pytest.raises(ValueError, match=r"bad.idx: not an unsigned-byte IDX file \(magic 12345678\)"):
        read_idx(tmp_path / "bad.idx")
