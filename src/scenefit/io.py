"""Safe outputs: atomic files and folders, safetensors + JSON checkpoints.

Nothing here ever leaves a half-written file that looks complete: data goes to a
temporary sibling first and is renamed into place only when fully written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load_file, save_file


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``path`` only if the block succeeds.

    On any exception the temporary folder is removed and ``path`` is untouched.
    Raises ``FileExistsError`` if ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"output folder already exists: {path} (choose another --out or pass --overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def save_checkpoint(path: str | Path, model: torch.nn.Module, meta: dict) -> None:
    """Save ``model``'s weights to ``path`` (``.safetensors``) and ``meta`` beside it (``.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)
    write_json(path.with_suffix(".json"), meta)


def load_checkpoint_meta(path: str | Path) -> dict:
    """Read the JSON written beside a checkpoint; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise FileNotFoundError(f"checkpoint {path} has no metadata file {meta_path}")
    with open(meta_path) as f:
        return json.load(f)


def load_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Load safetensors weights from ``path`` into ``model`` (strict)."""
    state = load_file(str(path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"checkpoint {path} does not fit this model: {e}") from None


def check_engine_match(path: str | Path, saved: dict, current: dict) -> None:
    """Raise ``ValueError`` naming the first differing field when a checkpoint was made for another engine."""
    for key in ("engine", "channels", "height", "width", "translate", "max_shift", "attributes"):
        if saved.get(key) != current.get(key):
            raise ValueError(
                f"checkpoint {path} was made for another engine: {key}={saved.get(key)!r}, "
                f"but this run has {key}={current.get(key)!r}"
            )


def save_model_for_engine(path: str | Path, model: torch.nn.Module, kind: str, identity: dict, report: dict | None = None) -> None:
    """Checkpoint a network built for one engine: weights, ``model.cfg`` (a dataclass), the engine identity and a report."""
    from dataclasses import asdict

    save_checkpoint(path, model, {"kind": kind, "config": asdict(model.cfg), **identity, "report": report or {}})


def load_model_for_engine(path: str | Path, kind: str, identity: dict, build, device: str = "cpu") -> torch.nn.Module:
    """Load a :func:`save_model_for_engine` checkpoint.

    ``build(config_dict) -> nn.Module`` makes the empty network. Raises ``ValueError``
    if the file holds another kind of network or was made for another engine or canvas.
    """
    meta = load_checkpoint_meta(path)
    if meta.get("kind") != kind:
        raise ValueError(f"{path} is not a {kind} checkpoint (kind={meta.get('kind')!r})")
    check_engine_match(path, meta, identity)
    model = build(meta["config"])
    load_weights(path, model)
    return model.to(device).eval()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Atomically write named tensors as one safetensors file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
