"""Tasks: image-classification datasets, from a source spec to arrays that training reads.

Public API (nothing here imports TensorFlow at import time):

* `ingest(spec, out_root, *, data_dir=None, name=None) -> TaskInfo` and
  `load_prepared(folder) -> ArrayTask` (`mu2net.tasks.ingest`);
* `check_onboarding(name, view, mode)`: refuses a task already onboarded unless iterating;
* `load_source(spec, ...)` / `parse_spec(spec)` (`mu2net.tasks.sources`);
* the suite: `SUITE`, `suite_names()`, `load_suite_task(name)`, `ROOT_TASK_NAME`;
* `make_dataset(...)` (`mu2net.tasks.preprocess`): the tf.data pipeline of docs/method.md §5.5.
"""

from mu2net.tasks.base import ArrayTask, TaskData
from mu2net.tasks.ingest import (
    check_onboarding,
    ingest,
    load_prepared,
    prepared_dir,
    read_prepared_info,
)
from mu2net.tasks.preprocess import make_dataset
from mu2net.tasks.sources import load_source, parse_spec
from mu2net.tasks.suite import ROOT_TASK_NAME, SUITE, load_suite_task, suite_names

__all__ = ["ArrayTask", "TaskData", "ROOT_TASK_NAME", "SUITE", "check_onboarding", "ingest",
           "load_prepared", "load_source", "load_suite_task", "make_dataset", "parse_spec",
           "prepared_dir", "read_prepared_info", "suite_names"]
