"""Tasks: image-classification datasets, from a source spec to arrays that training reads."""

from mu2net.tasks.base import ArrayTask, TaskData

__all__ = ["ArrayTask", "TaskData"]
