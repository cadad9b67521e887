"""Folders scenefit owns: run folders with config-keyed stages, a model store, locks and ownership markers.

scenefit deletes or replaces only what it created. Every folder it makes carries a
marker file (``.scenefit``, JSON: what it is, when it was made); it refuses a
non-empty folder without one, and a folder with a marker of another kind. While a
command writes to a folder it holds an OS lock on ``.scenefit.lock`` (the holder's
PID inside); a second writer gets :class:`FolderBusy` naming that PID.

A :class:`RunFolder` records, per stage, a key of everything the stage's output
depends on (config sections, the engine's identity, the keys of its inputs). A
stage is done when its marker's key equals the key the current config gives and
its outputs exist, so a rerun redoes only what a changed config touches, and
resumes after an interruption. A :class:`ModelStore` keeps trained networks in
folders named by stage and key, written to a temporary name and renamed when
complete, so concurrent writers never see half a model.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from scenefit.io import follow_umask, read_json, umask, write_json

MARKER = ".scenefit"
LOCK = ".scenefit.lock"
KINDS = ("run", "dataset", "models", "experiment")


class FolderError(ValueError):
    """A folder cannot be used: it is not scenefit's, of another kind, or overlaps an input."""


class FolderBusy(FolderError):
    """Another process holds the folder's lock."""


def key_of(*parts: Any) -> str:
    """A 16-hex-digit fingerprint of JSON-ready ``parts`` (dict order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def marker(path: str | Path) -> dict | None:
    """The ownership marker of folder ``path``, or None if it has none."""
    p = Path(path) / MARKER
    if not p.is_file():
        return None
    try:
        return read_json(p)
    except (ValueError, OSError):
        return {"kind": "unknown"}


def _visible(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name not in (MARKER, LOCK))


def claim(path: str | Path, kind: str) -> Path:
    """Make ``path`` a folder of scenefit's of ``kind`` (created if missing, marked if empty); return it.

    Raises :class:`FolderError` naming the path when it is a file, holds files scenefit did not create, or is
    scenefit's folder of another kind.
    """
    assert kind in KINDS
    path = Path(path)
    if str(path) in ("", "."):
        raise FolderError("the output folder must be named (got an empty path); pass e.g. --out runs/my-run")
    if path.exists() and not path.is_dir():
        raise FolderError(f"{path} is a file, not a folder; choose another output folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise FolderError(f"cannot create {path}: a part of the path is a file") from None
    except OSError as e:
        raise FolderError(f"cannot create {path}: {e.strerror or e}") from None
    m = marker(path)
    if m is None:
        files = _visible(path)
        if files:
            raise FolderError(f"{path} holds files scenefit did not create ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''}); "
                              f"scenefit writes only into new or empty folders or its own: choose another one")
        try:
            write_json(path / MARKER, {"kind": kind, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        except OSError as e:
            raise FolderError(f"cannot write into {path}: {e.strerror or e}") from None
    elif m.get("kind") != kind:
        raise FolderError(f"{path} is a scenefit {m.get('kind')} folder, not a {kind} folder; choose another one")
    return path


def check_disjoint(out: str | Path, **inputs: str | Path | None) -> None:
    """Refuse an output folder that is, holds or lies inside any input folder; the message names both paths."""
    o = Path(out).resolve()
    for name, p in inputs.items():
        if p is None:
            continue
        i = Path(p).resolve()
        if o == i or i in o.parents or o in i.parents:
            raise FolderError(f"--out {out} overlaps --{name.replace('_', '-')} {p}: the output must lie outside the inputs")


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive OS lock on folder ``path`` for the block; raises :class:`FolderBusy` with the holder's PID."""
    with _flock(Path(path) / LOCK, str(path)):
        yield


def sibling_lock(path: str | Path) -> contextlib.AbstractContextManager:
    """An exclusive lock for writing ``path`` as a whole (a dataset folder): ``.<name>.lock`` beside it, removed after."""
    path = Path(path)
    return _flock(path.with_name(f".{path.name}.lock"), str(path), remove=True)


@contextlib.contextmanager
def _flock(lock: Path, what: str, remove: bool = False) -> Iterator[None]:
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
    except OSError as e:
        raise FolderError(f"cannot write into {lock.parent}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FolderBusy(f"{what} is in use by another scenefit process (PID {holder}); wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            if remove:
                lock.unlink(missing_ok=True)
    finally:
        os.close(fd)  # closing releases the lock


def clean_partials(path: str | Path) -> list[str]:
    """Remove temporary ``.*.partial`` folders and ``.*.tmp`` files that an interrupted write left in ``path``."""
    removed = []
    for p in Path(path).iterdir():
        if p.name.startswith(".") and (p.name.endswith(".partial") or p.name.endswith(".tmp") or p.name.endswith(".old")):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


class RunFolder:
    """A run folder: config-keyed stage markers in ``stages/<stage>.json`` and the stage outputs beside them."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        """Path of an output inside the folder."""
        return self.root / name

    def _marker(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage}.json"

    def done(self, stage: str, key: str, outputs: tuple[str, ...] = ()) -> bool:
        """Whether ``stage`` finished with ``key`` and its ``outputs`` (names in the folder) still exist."""
        m = self._marker(stage)
        if not m.is_file():
            return False
        try:
            saved = read_json(m).get("key")
        except ValueError:
            return False
        return saved == key and all((self.root / o).exists() for o in outputs)

    def mark(self, stage: str, key: str, info: dict) -> dict:
        """Record that ``stage`` finished with ``key`` (written last, after its outputs)."""
        info = {**info, "key": key}
        write_json(self._marker(stage), info)
        return info

    def info(self, stage: str) -> dict:
        """The report recorded by :meth:`mark`."""
        return read_json(self._marker(stage))

    def stages(self) -> list[str]:
        """Names of the stages with a marker."""
        return sorted(p.stem for p in (self.root / "stages").glob("*.json")) if (self.root / "stages").is_dir() else []


class ModelStore:
    """Trained networks in ``root/<stage>-<key>/`` folders, each complete or absent.

    ``read_only``: a store the command must not change (``scenefit fit --models M``); a missing model raises.
    """

    def __init__(self, root: str | Path, read_only: bool = False) -> None:
        self.root = Path(root)
        self.read_only = read_only

    def folder(self, stage: str, key: str) -> Path:
        """The folder ``root/<stage>-<key>`` a model of ``stage`` with ``key`` is (or would be) stored in."""
        return self.root / f"{stage}-{key}"

    def has(self, stage: str, key: str) -> bool:
        """Whether a complete model of ``stage`` with ``key`` is stored."""
        return (self.folder(stage, key) / "report.json").is_file()

    def report(self, stage: str, key: str) -> dict:
        """The report written with the model."""
        return read_json(self.folder(stage, key) / "report.json")

    def remove(self, stage: str, key: str) -> None:
        """Delete the stored model ``stage``/``key`` (under its writers' lock), if any."""
        folder = self.folder(stage, key)
        if folder.exists():
            with _flock(self.root / f".{stage}-{key}.lock", str(folder), remove=True):
                shutil.rmtree(folder)

    def publish(self, stage: str, key: str, write: Callable[[Path], dict]) -> dict:
        """Make sure ``stage``/``key`` is stored: ``write(tmp_folder) -> report`` runs only if it is missing.

        Concurrent writers of one key are serialised by a lock; the second finds the model done. The folder
        appears under its final name only when complete.
        """
        if self.has(stage, key):
            return self.report(stage, key)
        if self.read_only:
            raise FolderError(f"{self.root} holds no '{stage}' model for this config (key {key}); --models folders are "
                              f"read as they are: train it with 'scenefit run' there, or leave out --models")
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / f".{stage}-{key}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # wait for another writer of the same model
            if self.has(stage, key):
                return self.report(stage, key)
            tmp = Path(tempfile.mkdtemp(prefix=f".{stage}-{key}.", suffix=".partial", dir=self.root))
            follow_umask(tmp, directory=True)
            try:
                t0 = time.time()
                report = {**write(tmp), "stage": stage, "key": key}
                report.setdefault("seconds", time.time() - t0)
                write_json(tmp / "report.json", report)
                final = self.folder(stage, key)
                if final.exists():  # an incomplete leftover (no report.json): ours to replace
                    shutil.rmtree(final)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return report
        finally:
            lock_path.unlink(missing_ok=True)  # every later writer finds the model done (has() is checked under the lock)
            os.close(fd)


def merge_runs(src: str | Path, dst: str | Path) -> list[str]:
    """Copy into run folder ``dst`` the models and finished stages of ``src`` that ``dst`` lacks; returns the names.

    Both must hold the same problem (equal ``stages/problem.json`` keys, else :class:`FolderError` naming both).
    A copied stage counts as done in ``dst`` only where its key is the one ``dst``'s own config gives, so
    stages of another config are carried along but redone. Files go first, the stage marker last.
    """
    src, dst = Path(src), Path(dst)
    a, b = RunFolder(src), RunFolder(dst)
    for folder in (a, b):
        if not folder.path("stages/problem.json").is_file():
            raise FolderError(f"{folder.root} is not a scenefit run folder with a bound problem (no stages/problem.json)")
    if a.info("problem").get("key") != b.info("problem").get("key"):
        raise FolderError(f"{src / 'stages' / 'problem.json'} and {dst / 'stages' / 'problem.json'} hold different targets; "
                          f"only folders of one target set merge")
    copied = []
    models = src / "models"
    if models.is_dir():
        for m in sorted(models.iterdir()):
            target = dst / "models" / m.name
            if m.is_dir() and (m / "report.json").is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{m.name}.merge.partial")
                shutil.copytree(m, tmp)
                os.replace(tmp, target)
                copied.append(f"model {m.name}")
    for stage in a.stages():
        if stage == "problem" or (dst / "stages" / f"{stage}.json").is_file():
            continue
        info = a.info(stage)
        for name in info.get("files", []):
            s, d = src / name, dst / name
            if s.is_dir():
                shutil.rmtree(d, ignore_errors=True)
                shutil.copytree(s, d)
            elif s.is_file():
                d.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(s, d)
            else:
                raise FolderError(f"{src} marks stage '{stage}' done but lacks its file {s}")
        shutil.copy2(src / "stages" / f"{stage}.json", dst / "stages" / f"{stage}.json")
        copied.append(stage)
    return copied
