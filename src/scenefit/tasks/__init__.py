"""Task networks: the classifier and the segmenter, one protocol (:class:`TaskNet`), and how a config names one.

``task.name``: ``auto`` (from the engine's ``label_kind``), ``classifier``, ``segmenter``, an installed
plug-in of the entry-point group ``scenefit.tasks``, or ``package.module:Class``.
"""

from __future__ import annotations

from pathlib import Path

from scenefit.plugins import PluginError, resolve
from scenefit.tasks.base import TaskConfig, TaskFeatures, TaskNet, content_loss, load_task
from scenefit.tasks.classifier import Classifier
from scenefit.tasks.segmenter import SegNet, SegNetConfig

ENTRY_POINT_GROUP = "scenefit.tasks"
TASKS: dict[str, type[TaskNet]] = {"classifier": Classifier, "segmenter": SegNet}
DEFAULT_TASK = {"class": "classifier", "mask": "segmenter"}


def task_name(cfg: TaskConfig, label_kind: str) -> str:
    """The task name a config resolves to (``auto`` follows the engine's ``label_kind``)."""
    return DEFAULT_TASK[label_kind] if cfg.name == "auto" else cfg.name


def task_class(cfg: TaskConfig, label_kind: str, search_dirs: tuple[str | Path, ...] = ()) -> type[TaskNet]:
    """The :class:`TaskNet` subclass ``cfg.name`` names; raises ``ValueError`` if it is unknown or does not fit
    the engine's labels (a classifier for masks, say)."""
    name = task_name(cfg, label_kind)
    try:
        cls = resolve(name, TASKS, ENTRY_POINT_GROUP, search_dirs, "task")
    except PluginError as e:
        raise ValueError(f"task.name: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, TaskNet)):
        raise ValueError(f"task.name '{name}' is not a scenefit.tasks.TaskNet subclass")
    if cls.label_kind != label_kind:
        raise ValueError(f"task.name '{name}' predicts '{cls.label_kind}' labels but the engine's labels are '{label_kind}'")
    return cls


__all__ = ["Classifier", "DEFAULT_TASK", "ENTRY_POINT_GROUP", "SegNet", "SegNetConfig", "TASKS", "TaskConfig", "TaskFeatures",
           "TaskNet", "content_loss", "load_task", "task_class", "task_name"]
