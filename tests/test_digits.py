import gzip
import struct

import numpy as np
import pytest
import torch

from scenefit.engines.digits import DigitEngine, digit_engine, paste_grid
from scenefit.engines.registry import EngineSpecError, make_engine
from scenefit.mnist import DigitBank, load_idx_digits, read_idx
from scenefit.seeding import draw_seeds

SEEDS3 = torch.tensor([1, 2, 3])


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
    im0 = e.render_seeded(a0, SEEDS3, textures=tex)["image"]
    im90 = e.render_seeded(a90, SEEDS3, textures=tex)["image"]
    assert torch.allclose(torch.rot90(im0, 1, dims=(-2, -1)), im90, atol=1e-5)
    im180 = e.render_seeded(a90 * torch.tensor([2.0, 1.0]), SEEDS3, textures=tex)["image"]
    assert torch.allclose(torch.rot90(im0, 2, dims=(-2, -1)), im180, atol=1e-5)
    # unrotated and centred: the 28x28 texture itself, in the middle of the canvas
    m = (canvas - 28) // 2
    assert torch.allclose(im0[:, 0, m : m + 28, m : m + 28], bank.images[tex], atol=1e-5)
    assert im0[:, 0, :m].abs().max() == 0 and im0[:, 0, m + 28 :].abs().max() == 0


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

    x0, y0 = com(e.render_seeded(base, SEEDS3, textures=tex)["image"])
    x1, y1 = com(e.render_seeded(moved, SEEDS3, textures=tex)["image"])
    x2, y2 = com(e.render_seeded(down, SEEDS3, textures=tex)["image"])
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
    assert torch.equal(r1["seed"], draw_seeds(16, torch.Generator().manual_seed(5)))
    assert torch.equal(e.render(a)["image"], e.render(a, torch.Generator().manual_seed(0))["image"])  # None == seed 0
    # the texture drawn is one of the requested class
    assert torch.equal(bank.labels[r1["texture"]], a[:, 1].long())


def test_every_row_draws_texture_and_background_from_its_own_seed(bank):
    e = DigitEngine(bank, canvas=32)
    a = e.space.sample_uniform(6, torch.Generator().manual_seed(1))
    seeds = torch.tensor([10, 11, 12, 13, 14, 15])
    full = e.render_seeded(a, seeds)
    rev = e.render_seeded(a.flip(0), seeds.flip(0))
    assert torch.equal(rev["image"], full["image"].flip(0)) and torch.equal(rev["texture"], full["texture"].flip(0))
    one = e.render_seeded(a[3:4], seeds[3:4])
    assert torch.equal(one["image"][0], full["image"][3])
    # the same scene with another seed: another background (and, most likely, another texture)
    other = e.render_seeded(a[3:4], torch.tensor([99]))
    assert not torch.equal(other["image"][0, 0, :4, :4], full["image"][3, 0, :4, :4])
    # over many seeds, every texture of a class is reachable and drawn about uniformly
    many = e.render_seeded(torch.tensor([[0.0, 4.0]]).expand(4000, 2), torch.arange(4000))["texture"]
    count = int((bank.labels == 4).sum())
    hist = torch.bincount(many, minlength=len(bank))[bank.labels == 4]
    assert hist.sum() == 4000 and (hist > 0).float().mean() > 0.98
    assert 0.7 < hist.float().std().item() / (4000 / count) ** 0.5 < 1.3  # Poisson spread of a uniform choice


def test_explicit_backgrounds_and_labels_follow_the_texture(bank):
    e = DigitEngine(bank, canvas=32, background="plain")
    a = torch.tensor([[0.0, 3.0], [45.0, 3.0]])
    bg = torch.full((2, 1, 32, 32), 0.2)
    out = e.render_seeded(a, torch.tensor([0, 1]), textures=torch.tensor([5, 6]), backgrounds=bg)
    glyph = e.render_seeded(a, torch.tensor([0, 1]), textures=torch.tensor([5, 6]))["image"]  # plain: black background
    assert torch.allclose(out["image"], 0.2 * (1 - glyph) + glyph, atol=1e-6)  # the digit's intensity is its alpha
    assert torch.equal(out["label"], bank.labels[torch.tensor([5, 6])])


def test_background_is_low_contrast(bank):
    e = DigitEngine(bank, canvas=48, contrast=0.25)
    a = torch.tensor([[0.0, 1.0]])
    img = e.render(a, torch.Generator().manual_seed(0))["image"]
    corner = img[0, 0, :8, :8]
    assert 0.0 <= corner.min() and corner.max() <= 0.25 and corner.std() > 0.005
    many = DigitEngine(bank, canvas=32, contrast=0.1).render(torch.tensor([[0.0, 1.0]]).expand(64, 2))["image"]
    assert many[:, 0, :4, :4].max() <= 0.1 + 1e-6 and many[:, 0, :4, :4].max() > 0.05


def test_engine_is_differentiable(bank):
    e = DigitEngine(bank, canvas=48, background="plain")
    a = torch.tensor([[30.0, 3.0]], requires_grad=True)
    e.render_seeded(a, torch.tensor([0]), textures=torch.tensor([1600]))["image"].sum().backward()
    assert a.grad is not None and a.grad[0, 0].abs() > 0


def test_paste_grid_maps_the_canvas_centre_to_the_texture_centre():
    grid = paste_grid(torch.tensor([0.0, 90.0]), torch.tensor([[0.0, 0.0], [3.0, -2.0]]), 4, 4)
    assert grid.shape == (2, 4, 4, 2)
    # pixel centres at offsets -1.5..1.5 from the canvas centre; texture half-size 14 px
    assert torch.allclose(grid[0, 0, 0], torch.tensor([-1.5, -1.5]) / 14)
    # rotated +90 (counter-clockwise on screen) about the shifted centre: (dx, dy) -> (-dy, dx)
    dx, dy = 0.5 - 3.0, -1.5 + 2.0
    assert torch.allclose(grid[1, 0, 2], torch.tensor([-dy, dx]) / 14, atol=1e-6)


def test_describe_and_factory(bank, split):
    e = digit_engine(canvas=32, textures="target")
    assert len(e.bank) == 1250 and torch.equal(e.bank.labels, split[1].labels)
    d = e.describe()
    assert d["textures"] == {"sha256": e.bank_hash(), "count": 1250} and len(d["textures"]["sha256"]) == 64
    assert d["height"] == d["width"] == 32 and d["label_kind"] == "class" and d["labels"]["names"] == list("0123456789")
    assert [a["name"] for a in d["attributes"]] == ["rotation", "digit"]
    assert digit_engine(canvas=32, textures="test").bank_hash() != e.bank_hash()
    eng = make_engine("digits", {"canvas": 40, "translate": True, "max_shift": 6})
    assert eng.space.names == ("rotation", "tx", "ty", "digit") and eng.space["tx"].high == 6.0
    assert eng.describe()["spec"] == {"name": "digits", "args": {"canvas": 40, "translate": True, "max_shift": 6}}
    centre = eng.initial_centre()
    assert centre.tolist() == [0.0, 0.0, 0.0, 0.0]
    x = eng.sample_initial(2000, torch.Generator().manual_seed(0))
    eng.space.check(x)
    assert x[:, 0].std().item() == pytest.approx(10.0, rel=0.1) and abs(x[:, 0].mean().item()) < 1.0  # N(0, 10 deg)
    assert x[:, 1].abs().max() == 0 and x[:, 2].abs().max() == 0


def test_bad_arguments_name_the_field(bank):
    with pytest.raises(ValueError, match=r"^canvas must be an integer number of px in \[28, 512\], got 20$"):
        DigitEngine(bank, canvas=20)
    with pytest.raises(ValueError, match=r"^background must be 'texture' or 'plain', got 'noise'$"):
        DigitEngine(bank, background="noise")
    with pytest.raises(ValueError, match=r"^digit bank has no texture for classes \[8, 9\]$"):
        DigitEngine(DigitBank(bank.images[bank.labels < 8], bank.labels[bank.labels < 8]))
    with pytest.raises(EngineSpecError, match=r"^engine 'digits' with engine.args \{'textures': 'train'\}: "
                                              r"textures must be one of \['engine', 'target', 'test'\], got 'train'$"):
        make_engine("digits", {"textures": "train"})
    with pytest.raises(EngineSpecError, match=r"split must be three positive fractions summing to 1, got \[0.5, 0.5, 0.5\]"):
        make_engine("digits", {"split": [0.5, 0.5, 0.5]})
    with pytest.raises(EngineSpecError, match=r"^engine 'digits' takes no argument\(s\) \['size'\] in engine.args"):
        make_engine("digits", {"size": 32})



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
