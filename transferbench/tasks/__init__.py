"""Stage 1 of the pipeline, in one import: the task and suite schema, the catalog, and the
deterministic train/dev/test splits.

A task is one declarative YAML file in `tasks/` (or anywhere, given by path), validated into a
`TaskSpec` on load; a suite (`tasks/suites/`) names tasks and split sizes. `load_task_data` turns a
task's raw source rows into deduplicated, stratified, disjoint splits with a content hash. The code
lives in modules by concern; this one re-exports their public names:

- `task_schema`: `TaskSpec`, `SuiteSpec`, `SplitSizes`, `LabelFromScore`, `TaskData`
- `schema_errors`: reading YAML and one-line validation errors naming file and field
- `task_catalog`: `load_task`, `load_suite`, `suite_tasks`, `list_tasks`, `list_suites`, `load_task_folder`
- `task_rows`: source records -> examples (`examples_from_records`, `normalise`, `deduplicate`)
- `task_splits`: `load_task_data`, `text_zone`, `text_split`, `stratified_split`, `data_hash`, `cross_task_leaks`
"""

from transferbench.tasks.catalog import list_suites, list_tasks, load_suite, load_task, load_task_folder, suite_tasks
from transferbench.tasks.rows import deduplicate, examples_from_records, normalise
from transferbench.tasks.schema import LabelFromScore, SplitSizes, SuiteSpec, TaskData, TaskSpec
from transferbench.tasks.splits import (
    _usable_examples, cross_task_leaks, data_hash, load_task_data, stratified_split, text_split, text_zone,
)

__all__ = [
    "TaskSpec", "SuiteSpec", "SplitSizes", "TaskData", "LabelFromScore", "load_task", "load_suite", "suite_tasks", "list_tasks",
    "list_suites", "load_task_data", "load_task_folder", "text_zone", "text_split", "cross_task_leaks", "examples_from_records",
    "normalise", "deduplicate", "stratified_split", "data_hash", "_usable_examples",
]
