"""The task catalog: built-in and user task / suite YAML files, loaded by name or path and
validated into `TaskSpec` / `SuiteSpec`, with one error line naming the file and field.
"""

from __future__ import annotations

import importlib.resources
from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from transferbench.errors import TransferbenchError, UnknownNameError
from transferbench.registry import did_you_mean
from transferbench.tasks.schema import SuiteSpec, TaskSpec
from transferbench.tasks.schema_errors import one_line, read_yaml


def display_path(path: Path) -> str:
    """Built-in files as `tasks/<file>`, user files as given."""
    builtin = _builtin_task_folder()
    try:
        return str(Path("tasks") / path.resolve().relative_to(builtin.resolve()))
    except ValueError:
        return str(path)



def _parse_task_file(path: Path) -> TaskSpec:
    where = display_path(path)
    data = read_yaml(path, where)
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as exc:
        raise TransferbenchError(one_line(where, exc, TaskSpec)) from None
    spec._yaml_path = path.resolve()
    return spec


def load_task_folder(folder: Path) -> dict[str, TaskSpec]:
    """Every `*.yaml` task in `folder`, by name; two files declaring one name is an error."""
    found: dict[str, TaskSpec] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        spec = _parse_task_file(path)
        if spec.name in found:
            first = found[spec.name].yaml_path
            raise TransferbenchError(
                f"task name {spec.name!r} is declared twice: in {display_path(first)} and in {display_path(path)}"
            )
        found[spec.name] = spec
    return found


def _builtin_task_folder() -> Path:
    return Path(str(importlib.resources.files("transferbench.task_files")))


def _builtin_suite_folder() -> Path:
    return Path(str(importlib.resources.files("transferbench.task_files.suites")))


@lru_cache(maxsize=1)
def _builtin_tasks() -> dict[str, TaskSpec]:
    return load_task_folder(_builtin_task_folder())


def _looks_like_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name or "\\" in name


def _by_name_or_path(kind: str, name_or_path: str, parse, builtins):
    """A built-in spec by name, or one parsed from a YAML file given by path."""
    if _looks_like_path(str(name_or_path)):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise TransferbenchError(f"{kind} file {path} does not exist")
        return parse(path)
    known = builtins()
    if name_or_path not in known:
        raise UnknownNameError(f"unknown {kind} {name_or_path!r}{did_you_mean(name_or_path, list(known))}")
    return known[name_or_path]


def load_task(name_or_path: str) -> TaskSpec:
    """A built-in task by name, or a task YAML file by path."""
    return _by_name_or_path("task", name_or_path, _parse_task_file, _builtin_tasks)


def suite_tasks(suite: SuiteSpec) -> list[TaskSpec]:
    """The `TaskSpec` of each of `suite`'s tasks, in its order (built-in names and task file paths
    alike). Here, not on `SuiteSpec`: the schema is data; finding a task by name is the catalog's."""
    return [load_task(t) for t in suite.tasks]


def list_tasks() -> list[TaskSpec]:
    """All built-in tasks (including hub tasks; see `TaskSpec.offline`), sorted by name."""
    return [spec for _, spec in sorted(_builtin_tasks().items())]


def _parse_suite_file(path: Path) -> SuiteSpec:
    where = display_path(path) if path.parent.resolve() != _builtin_suite_folder().resolve() else f"tasks/suites/{path.name}"
    data = read_yaml(path, where)
    try:
        suite = SuiteSpec.model_validate(data)
    except ValidationError as exc:
        raise TransferbenchError(one_line(where, exc, SuiteSpec)) from None
    resolved = []
    known = list(_builtin_tasks())
    for entry in suite.tasks:
        if _looks_like_path(entry):
            task_path = Path(entry).expanduser()
            if not task_path.is_absolute():
                task_path = path.parent / task_path
            if not task_path.is_file():
                raise TransferbenchError(f"{where}: field 'tasks': task file {task_path} does not exist")
            _parse_task_file(task_path)
            resolved.append(str(task_path.resolve()))
        elif entry in known:
            resolved.append(entry)
        else:
            raise UnknownNameError(f"{where}: field 'tasks': unknown task {entry!r}{did_you_mean(entry, known)}")
    names = [load_task(t).name for t in resolved]
    for i, name in enumerate(names):
        if name in names[:i]:  # two files with one name, or one file listed by two paths
            first = suite.tasks[names.index(name)]
            raise TransferbenchError(
                f"{where}: field 'tasks': task {name!r} is listed twice ({first!r} and {suite.tasks[i]!r}); "
                "list each task once and give different tasks different names"
            )
    for name in suite.task_sizes:
        if name not in names:
            raise TransferbenchError(
                f"{where}: field 'task_sizes': {name!r} is not one of the suite's tasks{did_you_mean(name, names)}"
            )
    suite = suite.model_copy(update={"tasks": resolved})
    suite._yaml_path = path.resolve()
    return suite


@lru_cache(maxsize=1)
def _builtin_suites() -> dict[str, SuiteSpec]:
    found: dict[str, SuiteSpec] = {}
    for path in sorted(_builtin_suite_folder().glob("*.yaml")):
        suite = _parse_suite_file(path)
        if suite.name in found:
            raise TransferbenchError(
                f"suite name {suite.name!r} is declared twice: in tasks/suites/{found[suite.name].yaml_path.name} "
                f"and in tasks/suites/{path.name}"
            )
        found[suite.name] = suite
    return found


def load_suite(name_or_path: str) -> SuiteSpec:
    """A built-in suite by name, or a suite YAML file by path."""
    return _by_name_or_path("suite", name_or_path, _parse_suite_file, _builtin_suites)


def list_suites() -> list[SuiteSpec]:
    return [suite for _, suite in sorted(_builtin_suites().items())]
