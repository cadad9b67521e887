"""Which files of a target folder are the targets: a flat folder, a tree of folders, a KITTI or a Cityscapes root.

The first rule that applies chooses them:

1. ``--glob PATTERN`` (``pattern``): the files matching the pattern relative to the folder (:meth:`pathlib.Path.glob`:
   case-sensitive, ``**`` descends into sub-folders), e.g. ``'training/image_2/*.png'`` or ``'**/*_leftImg8bit.png'``;
2. KITTI: a folder holding ``image_2/`` or ``<split>/image_2/`` (KITTI semantics and object roots, with their
   ``training/`` and ``testing/`` splits, or one split): the files in those ``image_2`` folders; the label folders
   beside them (``semantic/``, ``semantic_rgb/``, ``instance/``, ``label_2/``, ...) are not read;
3. Cityscapes: a folder holding ``leftImg8bit/``: the files under it (``leftImg8bit/<split>/<city>/*.png``);
   ``gtFine/`` and ``gtCoarse/`` are not read;
4. otherwise every file of the folder and of its sub-folders, at any depth.

A folder holding both ``image_2`` and ``leftImg8bit`` folders is refused (pass a pattern). Hidden files and folders
(a name starting with ``.``) are never read; links to folders are followed, each folder read once. Every chosen file
must be an image (:data:`IMAGE_SUFFIXES`), else the error names it. Entries that are neither (broken links, sockets)
are skipped with one warning.

Targets are sorted by their path relative to the folder, folder by folder, and named by that path with ``/``
separators (``training/image_2/000000_10.png``), so two ``x.png`` in two folders stay two targets. In a flat folder a
target's name is its file name and the order is by name, as before sub-folders were read.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm")
KITTI_FOLDER = "image_2"
CITYSCAPES_FOLDER = "leftImg8bit"


class TargetFolderError(ValueError):
    """A target folder or one of its files cannot be used."""


@dataclass(frozen=True)
class TargetFiles:
    """The targets of folder ``root``: their ``files``, their ``names`` (paths relative to ``root``, ``/``-separated)
    and ``rule``, one line saying which files were chosen and why (``""`` for a flat folder: nothing to say)."""

    root: Path
    files: tuple[Path, ...]
    names: tuple[str, ...]
    rule: str


def detect_layout(root: str | Path) -> tuple[str, list[Path]] | None:
    """``("KITTI", its image_2 folders)`` or ``("Cityscapes", [root/leftImg8bit])`` when ``root`` is laid out so
    (module doc, rules 2 and 3), else None; raises when it holds both."""
    root = Path(root)
    kitti = [d for d in [root / KITTI_FOLDER, *sorted(root.glob(f"*/{KITTI_FOLDER}"))]
             if d.is_dir() and not d.relative_to(root).parts[0].startswith(".")]
    city = root / CITYSCAPES_FOLDER
    if kitti and city.is_dir():
        raise TargetFolderError(f"{root} holds both KITTI {KITTI_FOLDER} folders and a Cityscapes {CITYSCAPES_FOLDER} "
                                "folder: pass --glob to choose the targets, e.g. --glob 'leftImg8bit/**/*.png'")
    if kitti:
        return "KITTI", kitti
    return ("Cityscapes", [city]) if city.is_dir() else None


def find_targets(folder: str | Path, pattern: str | None = None) -> TargetFiles:
    """The target files of ``folder`` chosen by the module doc's rules (``pattern``: rule 1); raises
    :class:`TargetFolderError` naming the folder, the pattern or the file when there are none or one is not an image."""
    root = Path(folder)
    if not root.exists():
        raise TargetFolderError(f"target folder does not exist: {root}")
    if not root.is_dir():
        raise TargetFolderError(f"target path is not a folder: {root}")
    files: list[Path] = []
    odd: list[Path] = []
    layout = None
    if pattern is not None:
        _glob(root, pattern, files, odd)
    else:
        layout = detect_layout(root)
        seen: set[Path] = set()
        for top in layout[1] if layout else [root]:
            _walk(top, files, odd, seen)
    if odd:
        shown = ", ".join(p.relative_to(root).as_posix() for p in odd[:3]) + (", ..." if len(odd) > 3 else "")
        warnings.warn(f"{root}: skipped {len(odd)} entr{'y' if len(odd) == 1 else 'ies'} neither file nor folder "
                      f"(broken links, links to a folder read already, ...: {shown})", stacklevel=2)
    files.sort(key=lambda p: p.relative_to(root).parts)
    names = tuple(p.relative_to(root).as_posix() for p in files)
    if not files:
        if pattern is not None:
            raise TargetFolderError(f"--glob '{pattern}' matches no files in {root} (hidden files are skipped; "
                                    "'**/' descends into sub-folders, e.g. '**/*.png')")
        if layout:
            where = ", ".join(d.relative_to(root).as_posix() for d in layout[1])
            raise TargetFolderError(f"{root} has the {layout[0]} layout but its {where} folders hold no files "
                                    "(pass --glob to choose the targets)")
        raise TargetFolderError(f"target folder is empty: {root} (expected PNG or JPEG images)")
    for p in files:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise TargetFolderError(f"not an image file: {p} (supported: {', '.join(IMAGE_SUFFIXES)}; "
                                    "--glob chooses which files are targets, e.g. --glob '**/*.png')")
    return TargetFiles(root, tuple(files), names, _rule(root, names, pattern, layout))


def _glob(root: Path, pattern: str, files: list[Path], odd: list[Path]) -> None:
    """Rule 1: the non-hidden files matching ``pattern`` into ``files``, other non-folders into ``odd``."""
    if not pattern or Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        raise TargetFolderError(f"--glob '{pattern}' must be a pattern relative to the target folder {root}, "
                                "without '..', such as '**/*.png'")
    for p in root.glob(pattern):
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if p.is_file():
            files.append(p)
        elif not p.is_dir():
            odd.append(p)


def _walk(top: Path, files: list[Path], odd: list[Path], seen: set[Path]) -> None:
    """Every non-hidden file under ``top`` into ``files``; broken links and the like into ``odd``. ``seen`` holds the
    real paths of the folders read: a link back to one of them (a cycle) is not read again."""
    real = top.resolve()
    if real in seen:
        odd.append(top)
        return
    seen.add(real)
    for p in sorted(top.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            _walk(p, files, odd, seen)
        elif p.is_file():
            files.append(p)
        else:
            odd.append(p)


def _rule(root: Path, names: tuple[str, ...], pattern: str | None, layout: tuple[str, list[Path]] | None) -> str:
    """The line that says which files were read (``""`` for a flat folder read whole)."""
    n = len(names)
    if pattern is not None:
        return f"reading --glob '{pattern}' in {root}: {n} images"
    if layout is not None:
        if layout[0] == "KITTI":  # the image_2 folders that hold targets
            tops = [d.relative_to(root).as_posix() for d in layout[1]]
            under = [t for t in tops if any(name.startswith(f"{t}/") for name in names)]
        else:  # leftImg8bit/<split>
            under = sorted({"/".join(name.split("/")[:-1][:2]) for name in names})
        return f"reading {layout[0]} layout of {root}: {n} images under {', '.join(under)} (labels beside them are not read)"
    folders = {name.rpartition("/")[0] for name in names}
    if folders == {""}:
        return ""
    return f"reading every image under {root}, sub-folders too: {n} images in {len(folders)} folders"


__all__ = ["CITYSCAPES_FOLDER", "IMAGE_SUFFIXES", "KITTI_FOLDER", "TargetFiles", "TargetFolderError", "detect_layout",
           "find_targets"]
