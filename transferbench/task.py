"""Stage 1 of the pipeline: the task registry, suites, and deterministic train/dev/test splits.

A task is one declarative YAML file in `tasks/` (or anywhere, given by path), validated into a
`TaskSpec` on load; a suite (`tasks/suites/`) names tasks and split sizes. `load_task_data` turns a
task's raw source rows into deduplicated, stratified, disjoint splits with a content hash.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import re
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from transferbench.errors import TransferbenchError, UnknownNameError
from transferbench.registry import did_you_mean
from transferbench.sources import SOURCES, HubSource, LocalSource, Source

__all__ = [
    "TaskSpec", "SuiteSpec", "SplitSizes", "TaskData", "LabelFromScore", "load_task", "load_suite", "list_tasks",
    "list_suites", "load_task_data", "load_task_folder", "text_zone", "cross_task_leaks",
]

_NAME = r"^[a-z][a-z0-9_]*$"


class LabelFromScore(BaseModel):
    """Binary label from a numeric score: `<= negative_max` is raw label "negative",
    `>= positive_min` is "positive", anything in between is dropped as ambiguous."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    negative_max: float
    positive_min: float

    @model_validator(mode="after")
    def _ordered(self):
        if self.negative_max >= self.positive_min:
            raise ValueError("'negative_max' must be below 'positive_min'")
        return self


class TaskSpec(BaseModel):
    """One text-classification task, exactly as declared in its YAML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    family: str = Field(pattern=_NAME)
    version: int = Field(ge=1)
    description: str = Field(min_length=1)
    source: Source
    text_field: str
    text_pair_field: str | None = None
    # Either a column holding the raw label, or a numeric score turned into one.
    label_field: str | None = None
    label_from_score: LabelFromScore | None = None
    # Raw label value -> label name. Several raw values may share a name; the order of first
    # appearance fixes the label ids (0, 1, ...). Raw values listed in `drop_labels` are dropped;
    # any other unmapped raw value is an error, so a typo never silently loses data.
    labels: dict[str, str]
    drop_labels: list[str] = Field(default_factory=list)
    min_words: int = Field(default=1, ge=1)
    verbalizers: dict[str, list[str]]
    license: str = Field(min_length=1)
    citation: str = Field(min_length=1)

    _yaml_path: Path | None = PrivateAttr(default=None)

    @field_validator("labels", mode="before")
    @classmethod
    def _raw_values_as_strings(cls, value: Any) -> Any:
        # YAML reads `0:` as an int; raw values are compared as strings.
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    @field_validator("drop_labels", mode="before")
    @classmethod
    def _drop_as_strings(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _consistent(self):
        if (self.label_field is None) == (self.label_from_score is None):
            raise ValueError("give exactly one of 'label_field' or 'label_from_score'")
        names = self.label_names
        if len(names) < 2:
            raise ValueError(f"'labels' must map to at least two label names (got {names})")
        if self.label_from_score is not None:
            extra = set(self.labels) - {"negative", "positive"}
            if extra:
                raise ValueError(f"with 'label_from_score' the raw labels are 'negative' and 'positive' (got {sorted(extra)})")
        missing = [n for n in names if not self.verbalizers.get(n)]
        if missing:
            raise ValueError(
                "field 'verbalizers': every label needs at least one word (missing: "
                + ", ".join(repr(n) for n in missing) + ")"
            )
        unknown = [k for k in self.verbalizers if k not in names]
        if unknown:
            raise ValueError(f"field 'verbalizers': {unknown} are not label names (labels: {names})")
        for label, words in self.verbalizers.items():
            bad = [w for w in words if not isinstance(w, str) or not w.strip() or w != w.strip()]
            if bad:
                raise ValueError(f"field 'verbalizers': label {label!r} has empty or padded words {bad}")
        return self

    @property
    def label_names(self) -> list[str]:
        return list(dict.fromkeys(self.labels.values()))

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return self.text_pair_field is not None

    @property
    def offline(self) -> bool:
        """True when the data needs no network beyond the package index (not a hub task)."""
        return not isinstance(self.source, HubSource)

    @property
    def yaml_path(self) -> Path | None:
        return self._yaml_path

    def source_fingerprint(self) -> str:
        base = self._yaml_path.parent if self._yaml_path else None
        if isinstance(self.source, LocalSource):
            return self.source.fingerprint(base)
        return self.source.fingerprint()


class SplitSizes(BaseModel):
    """Examples per split, per task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train: int = Field(ge=1)
    dev: int = Field(ge=1)
    test: int = Field(ge=1)

    @property
    def total(self) -> int:
        return self.train + self.dev + self.test


class SuiteSpec(BaseModel):
    """A named list of tasks with split sizes (examples per split, per task)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    description: str = Field(min_length=1)
    # Built-in task names, or paths to task YAML files (made absolute on load).
    tasks: list[str] = Field(min_length=1)
    train: int = Field(ge=1)
    dev: int = Field(ge=1)
    test: int = Field(ge=1)
    split_seed: int = 0
    # Share of all texts (by hash of the normalised text, the same for every task of the suite)
    # that may only appear in dev/test splits; the rest may only appear in train splits. This is
    # what makes splits joint across tasks that share a corpus (see `text_zone`).
    eval_share: float = Field(default=0.5, gt=0, lt=1)
    # Prompt-tuning seeds a run uses unless `--seeds` overrides them.
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    # Smaller sizes for tasks whose source is too small for the suite's sizes (task name -> sizes).
    task_sizes: dict[str, SplitSizes] = Field(default_factory=dict)
    # Prompt-training overrides (steps, batch_size, ...); validated by the training stage.
    training: dict[str, int | float] = Field(default_factory=dict)

    _yaml_path: Path | None = PrivateAttr(default=None)

    @field_validator("tasks")
    @classmethod
    def _unique(cls, tasks: list[str]) -> list[str]:
        repeated = sorted({t for t in tasks if tasks.count(t) > 1})
        if repeated:
            raise ValueError(f"tasks listed more than once: {repeated}")
        return tasks

    @property
    def yaml_path(self) -> Path | None:
        return self._yaml_path

    def sizes_for(self, task_name: str) -> SplitSizes:
        """The split sizes for one task: its `task_sizes` entry, else the suite's sizes."""
        return self.task_sizes.get(task_name) or SplitSizes(train=self.train, dev=self.dev, test=self.test)

    def task_specs(self) -> list[TaskSpec]:
        return [load_task(t) for t in self.tasks]


@dataclass(frozen=True)
class TaskData:
    """A task's three splits, each with exactly the columns text, text_pair, label."""

    spec: TaskSpec
    train: Any  # datasets.Dataset
    dev: Any
    test: Any
    data_hash: str
    source_size: int

    def majority_accuracy(self) -> float:
        """Test accuracy of always predicting the most frequent training label."""
        train_labels = np.asarray(list(self.train["label"]))
        majority = np.bincount(train_labels, minlength=self.spec.num_classes).argmax()
        return float(np.mean(np.asarray(list(self.test["label"])) == majority))


# --------------------------------------------------------------------------- loading YAML


def _display(path: Path) -> str:
    """Built-in files as `tasks/<file>`, user files as given."""
    builtin = _builtin_task_folder()
    try:
        return str(Path("tasks") / path.resolve().relative_to(builtin.resolve()))
    except ValueError:
        return str(path)


def _field_name(loc: tuple) -> str:
    parts = []
    for i, part in enumerate(loc):
        # skip pydantic's discriminator tag ("source", "pypi", "sha256") and validator names
        if i > 0 and loc[i - 1] == "source" and part in {"pypi", "local", "hub"}:
            continue
        if isinstance(part, str) and "[" in part:
            continue
        parts.append(str(part))
    return ".".join(parts)


def _one_line(where: str, exc: ValidationError, model: type[BaseModel], count_models: bool = True) -> str:
    # An unknown field usually explains a "missing" one (a typo), so report it first.
    err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    field = _field_name(err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        message = "required field is missing"
    elif err["type"] == "extra_forbidden":
        known = _known_fields(model, err["loc"])
        message = "unknown field" + (did_you_mean(str(err["loc"][-1]), known) if known else "")
    elif err["type"] == "union_tag_invalid":
        message = "source 'type' must be one of 'pypi', 'local', 'hub'"
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        message += f" (got {err['input']!r})"
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    if message.startswith("field '"):
        return f"{where}: {message}{suffix}"
    if not field:
        return f"{where}: {message}{suffix}"
    return f"{where}: field '{field}': {message}{suffix}".replace("\n", " ")


def _known_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    current: Any = model
    for i, part in enumerate(loc[:-1]):
        if part == "source":
            tag = loc[i + 1] if i + 1 < len(loc) else None
            current = SOURCES.get(tag) if isinstance(tag, str) and tag in SOURCES else None
            break
        field = current.model_fields.get(part) if isinstance(current, type) else None
        options = (field.annotation, *typing.get_args(field.annotation)) if field else ()
        current = next((t for t in options if isinstance(t, type) and issubclass(t, BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _read_yaml(path: Path, where: str) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TransferbenchError(f"{where}: cannot read file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TransferbenchError(f"{where}: invalid YAML{line}: {problem}") from None
    if not isinstance(data, dict):
        raise TransferbenchError(f"{where}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data


def _parse_task_file(path: Path) -> TaskSpec:
    where = _display(path)
    data = _read_yaml(path, where)
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as exc:
        raise TransferbenchError(_one_line(where, exc, TaskSpec)) from None
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
                f"task name {spec.name!r} is declared twice: in {_display(first)} and in {_display(path)}"
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


def list_tasks() -> list[TaskSpec]:
    """All built-in tasks (including hub tasks; see `TaskSpec.offline`), sorted by name."""
    return [spec for _, spec in sorted(_builtin_tasks().items())]


def _parse_suite_file(path: Path) -> SuiteSpec:
    where = _display(path) if path.parent.resolve() != _builtin_suite_folder().resolve() else f"tasks/suites/{path.name}"
    data = _read_yaml(path, where)
    try:
        suite = SuiteSpec.model_validate(data)
    except ValidationError as exc:
        raise TransferbenchError(_one_line(where, exc, SuiteSpec)) from None
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


# --------------------------------------------------------------------------- rows -> examples

_SPACE = re.compile(r"\s+")


def _column(raw: pd.DataFrame, spec: TaskSpec, field: str, column: str) -> pd.Series:
    if column not in raw.columns:
        where = _display(spec.yaml_path) if spec.yaml_path else f"task {spec.name}"
        raise TransferbenchError(
            f"{where}: field '{field}': the source has no column {column!r} (columns: {', '.join(map(str, raw.columns))})"
        )
    return raw[column]


def _clean_text(values: pd.Series) -> pd.Series:
    return values.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip())


def examples_from_records(spec: TaskSpec, raw: pd.DataFrame) -> pd.DataFrame:
    """Raw source rows -> columns text, text_pair, label (int); unusable rows dropped."""
    text = _clean_text(_column(raw, spec, "text_field", spec.text_field))
    pair = (_clean_text(_column(raw, spec, "text_pair_field", spec.text_pair_field))
            if spec.is_pair else pd.Series("", index=raw.index))
    keep = (text != "") & (text.str.split().str.len() >= spec.min_words)
    if spec.is_pair:
        keep &= pair != ""

    if spec.label_from_score is not None:
        rule = spec.label_from_score
        score = pd.to_numeric(_column(raw, spec, "label_from_score.field", rule.field), errors="coerce")
        raw_label = pd.Series(None, index=raw.index, dtype=object)
        raw_label[score <= rule.negative_max] = "negative"
        raw_label[score >= rule.positive_min] = "positive"
        keep &= raw_label.notna()
        raw_label = raw_label.astype(object).where(raw_label.notna(), "")
    else:
        values = _column(raw, spec, "label_field", spec.label_field)
        present = values.notna()
        raw_label = values.map(lambda v: str(v).strip()).where(present, "")
        keep &= present
    ids = {name: i for i, name in enumerate(spec.label_names)}
    mapped = raw_label.map(lambda v: ids.get(spec.labels.get(v)) if v in spec.labels else None)
    dropped = raw_label.isin(spec.drop_labels)
    unexpected = sorted(set(raw_label[keep & mapped.isna() & ~dropped]))
    if unexpected:
        where = _display(spec.yaml_path) if spec.yaml_path else f"task {spec.name}"
        shown = ", ".join(repr(v) for v in unexpected[:5]) + (" ..." if len(unexpected) > 5 else "")
        raise TransferbenchError(
            f"{where}: field 'labels': the source has raw labels {shown} that are neither mapped in "
            "'labels' nor listed in 'drop_labels'"
        )
    keep &= mapped.notna()
    return pd.DataFrame({
        "text": text[keep].to_list(),
        "text_pair": pair[keep].to_list(),
        "label": mapped[keep].astype(int).to_list(),
    })


def normalise(texts: pd.Series) -> pd.Series:
    """The form in which two texts count as the same: lower case, runs of white space as one space."""
    return texts.str.lower().map(lambda t: _SPACE.sub(" ", t).strip())


def deduplicate(examples: pd.DataFrame) -> pd.DataFrame:
    """Keep one copy of each normalised text (or pair); drop every copy when copies disagree."""
    key = normalise(examples["text"]) + "\x00" + normalise(examples["text_pair"])
    labels_per_key = examples.groupby(key, sort=False)["label"].nunique()
    agreeing = key.map(labels_per_key) == 1
    first = ~key.duplicated(keep="first")
    return examples[agreeing & first].reset_index(drop=True)


# --------------------------------------------------------------------------- splitting


def _rng(suite: SuiteSpec, spec: TaskSpec) -> np.random.Generator:
    seed = hashlib.sha256(f"{suite.split_seed}:{spec.name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(seed[:8], "little"))


def text_zone(texts: pd.Series, suite: SuiteSpec) -> np.ndarray:
    """True where a text may only go to dev/test splits, False where it may only go to train.

    The zone is a hash of the normalised text (the premise, for text pairs: every pair built on
    one premise lands in one zone) and the suite's `split_seed`, compared with `eval_share`. It
    depends on the text alone, never on the task, so tasks drawn from one corpus (Rotten Tomatoes
    sentiment and subjectivity, the SNLI tasks, the BBC tasks, or two packagings of the same movie
    snippets) get joint splits: no dev or test text of any task is in any task's train split.
    """
    def unit_interval(text: str) -> float:
        digest = hashlib.sha256(f"{suite.split_seed}\x00{text}".encode()).digest()
        return int.from_bytes(digest[:8], "little") / 2**64

    return np.fromiter((unit_interval(t) < suite.eval_share for t in normalise(texts)), dtype=bool, count=len(texts))


def _allocate(size: int, proportions: np.ndarray, available: np.ndarray) -> np.ndarray:
    """`size` examples over classes in `proportions` (largest remainder), at most `available` each."""
    exact = size * proportions
    quota = np.minimum(np.floor(exact).astype(int), available)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    while quota.sum() < size:
        for c in order:
            if quota.sum() < size and quota[c] < available[c]:
                quota[c] += 1
    return quota


def stratified_split(labels: np.ndarray, sizes: list[int], num_classes: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint index sets of the given sizes, each with the label proportions of the pool."""
    counts = np.bincount(labels, minlength=num_classes)
    proportions = counts / counts.sum()
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]
    used = np.zeros(num_classes, dtype=int)
    splits = []
    for size in sizes:
        quota = _allocate(size, proportions, counts - used)
        chosen = np.concatenate([pools[c][used[c]:used[c] + quota[c]] for c in range(num_classes)])
        used += quota
        splits.append(rng.permutation(chosen))
    return splits


def _to_dataset(frame: pd.DataFrame, label_names: list[str]):
    import datasets

    features = datasets.Features({
        "text": datasets.Value("string"),
        "text_pair": datasets.Value("string"),
        "label": datasets.ClassLabel(names=label_names),
    })
    return datasets.Dataset.from_dict(
        {"text": frame["text"].to_list(), "text_pair": frame["text_pair"].to_list(), "label": frame["label"].to_list()},
        features=features,
    )


def data_hash(label_names: list[str], splits: dict[str, pd.DataFrame]) -> str:
    """sha256 of the canonical JSON of the label names and every (text, text_pair, label) per split."""
    canonical = {"labels": label_names}
    for name, frame in splits.items():
        canonical[name] = [list(row) for row in zip(frame["text"], frame["text_pair"], frame["label"].astype(int).tolist())]
    blob = json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


# Parsing a source can take seconds (100k SNLI JSON lines) and suites share tasks and sources, so
# the usable examples are kept per process, keyed by the whole spec and the source's fingerprint
# (which, for local files, includes their bytes: an edited file is re-read).
_POOLS: dict[tuple[str, str], pd.DataFrame] = {}
_POOLS_MAX = 16


def _usable_examples(spec: TaskSpec) -> pd.DataFrame:
    key = (spec.model_dump_json(), spec.source_fingerprint())
    if key not in _POOLS:
        base = spec.yaml_path.parent if spec.yaml_path else None
        raw = spec.source.records(base_dir=base, task_name=spec.name)
        if len(_POOLS) >= _POOLS_MAX:
            _POOLS.pop(next(iter(_POOLS)))
        pool = deduplicate(examples_from_records(spec, raw))
        _check_every_class_present(spec, pool)
        _POOLS[key] = pool
    return _POOLS[key].copy()


def _check_every_class_present(spec: TaskSpec, pool: pd.DataFrame) -> None:
    """A declared label with no usable example makes the task degenerate (a 2-label task with one
    class is solved by a constant): reject it when the data loads, before any compute."""
    counts = np.bincount(pool["label"].to_numpy(dtype=int), minlength=spec.num_classes)
    missing = [name for name, count in zip(spec.label_names, counts) if count == 0]
    if missing:
        where = _display(spec.yaml_path) if spec.yaml_path else f"task {spec.name}"
        raise TransferbenchError(
            f"{where}: field 'labels': no usable example has label {', '.join(map(repr, missing))} "
            f"({len(pool)} usable examples); fix the data or remove the label"
        )


def load_task_data(spec: TaskSpec, suite: SuiteSpec) -> TaskData:
    """The task's deduplicated, stratified, disjoint train/dev/test splits at the suite's sizes.

    dev and test are drawn from the texts of the evaluation zone, train from the rest
    (`text_zone`), so splits are joint across every task of the suite.
    """
    pool = _usable_examples(spec)
    sizes = suite.sizes_for(spec.name)
    held_out = text_zone(pool["text"], suite)
    zones = {"train": pool[~held_out].reset_index(drop=True), "eval": pool[held_out].reset_index(drop=True)}
    for zone, needed, parts in (("train", sizes.train, f"train {sizes.train}"),
                                ("eval", sizes.dev + sizes.test, f"dev {sizes.dev} + test {sizes.test}")):
        if len(zones[zone]) < needed:
            raise TransferbenchError(
                f"task {spec.name} has {len(pool)} usable examples after filtering and deduplication, "
                f"{len(zones[zone])} of them in the {zone} zone (suite {suite.name}, eval_share {suite.eval_share}), "
                f"but needs {needed} there ({parts}); use smaller split sizes (e.g. the suite's 'task_sizes')"
            )
    rng = _rng(suite, spec)
    # Each zone is stratified by its own class shares (the reference of the default suite was
    # measured with exactly this rule; changing it changes every data hash).
    (train,) = stratified_split(zones["train"]["label"].to_numpy(), [sizes.train], spec.num_classes, rng)
    dev, test = stratified_split(zones["eval"]["label"].to_numpy(), [sizes.dev, sizes.test], spec.num_classes, rng)
    frames = {"train": zones["train"].iloc[train].reset_index(drop=True),
              "dev": zones["eval"].iloc[dev].reset_index(drop=True),
              "test": zones["eval"].iloc[test].reset_index(drop=True)}
    names = spec.label_names
    return TaskData(
        spec=spec,
        train=_to_dataset(frames["train"], names),
        dev=_to_dataset(frames["dev"], names),
        test=_to_dataset(frames["test"], names),
        data_hash=data_hash(names, frames),
        source_size=len(pool),
    )


def cross_task_leaks(data: dict[str, TaskData]) -> list[str]:
    """Every (task, split, other task) where a dev/test text of `task` is in `other`'s train split,
    as readable lines (empty when the suite's splits are joint, as `load_task_data` draws them)."""
    train_texts = {name: set(normalise(pd.Series(d.train["text"], dtype=str))) for name, d in data.items()}
    leaks = []
    for name, task_data in data.items():
        for split in ("dev", "test"):
            texts = set(normalise(pd.Series(getattr(task_data, split)["text"], dtype=str)))
            for other, seen in train_texts.items():
                if other != name and texts & seen:
                    leaks.append(f"{len(texts & seen)} {split} texts of {name} are in the train split of {other}")
    return leaks
