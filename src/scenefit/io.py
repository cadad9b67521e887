"""Safe outputs: atomic files and folders, safetensors + JSON checkpoints.

Nothing here ever leaves a half-written file that looks complete: data goes to a
temporary sibling first and is renamed into place only when fully written.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


def umask() -> int:
    """The process's file-creation mask (read without changing it for longer than a call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | Path, directory: bool = False) -> None:
    """Give a file made by ``mkstemp`` (0600) or a folder made by ``mkdtemp`` (0700) the umask's usual mode."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (mode from the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        follow_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def strict(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (strict JSON has no NaN or Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return strict(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented, strict JSON (NaN and infinities become null)."""
    atomic_write_text(path, json.dumps(strict(obj), indent=2, sort_keys=False, allow_nan=False, default=_json_default) + "\n")


def _json_default(o):
    if hasattr(o, "item") and getattr(o, "ndim", 1) == 0:  # numpy scalars
        v = o.item()
        return v if not isinstance(v, float) or math.isfinite(v) else None
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def read_json(path: str | Path) -> dict:
    """Read a JSON object; errors name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"file not found: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


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
    follow_umask(tmp, directory=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, path)


def replace_dir(src: str | Path, dst: str | Path) -> None:
    """Move finished folder ``src`` to ``dst`` (same filesystem); an existing ``dst`` is swapped out first and removed,
    so ``dst`` is never half-written. The caller checks that ``dst`` may be replaced."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def write_parquet(path: str | Path, cols: dict[str, list]) -> None:
    """Write columns ``cols`` as a parquet table atomically (a unique temporary name, then a rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(pa.table(cols), tmp)
        follow_umask(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(path: str | Path, model: torch.nn.Module, meta: dict) -> None:
    """Save ``model``'s weights to ``path`` (``.safetensors``) and ``meta`` beside it (``.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_tensors(path, tensors)
    write_json(path.with_suffix(".json"), meta)


def load_checkpoint_meta(path: str | Path) -> dict:
    """Read the JSON written beside a checkpoint; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise FileNotFoundError(f"checkpoint {path} has no metadata file {meta_path}")
    return read_json(meta_path)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a truncated, empty or foreign file raises ``ValueError`` naming it."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"file not found: {path}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None


def load_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Load safetensors weights from ``path`` into ``model`` (strict); refuses non-finite weights."""
    state = load_tensors(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"checkpoint {path} does not fit this model: {' '.join(str(e).split())[:500]}") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"checkpoint {path} holds non-finite weights ({', '.join(bad[:3])}); retrain it")


def first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """Dotted path of the first place two JSON-like values differ, or None if equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            d = first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
            if d is not None:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{where}[{i}]")
            if d is not None:
                return d
        return None
    return None if a == b else (where or "(value)")


def check_engine_match(path: str | Path, saved: dict, current: dict) -> None:
    """Raise ``ValueError`` naming the first differing field when a checkpoint was made for another engine
    (``describe()`` is compared as a whole)."""
    saved, current = json.loads(json.dumps(strict(saved))), json.loads(json.dumps(strict(current)))
    where = first_difference(saved, current)
    if where is not None:
        def at(d):
            for part in where.replace("[", ".[").split("."):
                if isinstance(d, list) and part.startswith("["):
                    d = d[int(part[1:-1])] if int(part[1:-1]) < len(d) else None
                elif isinstance(d, dict):
                    d = d.get(part)
            return d
        raise ValueError(f"checkpoint {path} was made for another engine: {where}={at(saved)!r}, but this run has {where}={at(current)!r}")


def save_model_for_engine(path: str | Path, model: torch.nn.Module, kind: str, identity: dict, report: dict | None = None) -> None:
    """Checkpoint a network built for one engine: weights, ``model.cfg`` (a dataclass), the engine identity and a report."""
    from dataclasses import asdict

    save_checkpoint(path, model, {"kind": kind, "config": asdict(model.cfg), "engine": identity, "report": report or {}})


def load_model_for_engine(path: str | Path, kind: str, identity: dict, build: Callable[[dict], torch.nn.Module],
                          device: str = "cpu") -> torch.nn.Module:
    """Load a :func:`save_model_for_engine` checkpoint.

    ``build(config_dict) -> nn.Module`` makes the empty network. Raises ``ValueError``
    if the file holds another kind of network or was made for another engine or canvas.
    """
    meta = load_checkpoint_meta(path)
    if meta.get("kind") != kind:
        raise ValueError(f"{path} is not a {kind} checkpoint (kind={meta.get('kind')!r})")
    check_engine_match(path, meta.get("engine"), identity)
    if not isinstance(meta.get("config"), dict):
        raise ValueError(f"{Path(path).with_suffix('.json')}: 'config' must be a mapping of architecture fields")
    try:
        model = build(meta["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{Path(path).with_suffix('.json')}: its 'config' does not build the {kind}: {e}") from None
    load_weights(path, model)
    return model.to(device).eval()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically write named tensors as one safetensors file, with the string pairs ``metadata`` in its header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata)
        follow_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
