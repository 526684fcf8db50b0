"""Task and suite schema: the pydantic models a task YAML and a suite YAML are validated into,
and `TaskData`, a task's three splits.

Stage 1 of the pipeline. Loading files is `transferbench.tasks.catalog`; turning a task's source
into splits is `transferbench.tasks.rows` and `transferbench.tasks.splits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictInt, field_validator, model_serializer, model_validator

from transferbench.tasks.sources import HubSource, LocalSource, Source

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
    # any other unmapped raw value is an error, so a typo never silently loses data. Together they
    # derive tasks from one corpus: one-vs-rest (all other raw values -> one name), a subset of
    # classes (the rest in `drop_labels`), coarser label sets (several raw values -> one name).
    # With `label_field`, every raw value named here must occur in the source (checked on load).
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
        both = sorted(set(self.labels) & set(self.drop_labels))
        if both:
            raise ValueError(f"raw labels {both} are both mapped in 'labels' and listed in 'drop_labels'; keep one")
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

    @property
    def _base_dir(self) -> Path | None:
        """The folder a local source's relative path is read against: the task YAML's."""
        return self._yaml_path.parent if self._yaml_path else None

    def source_fingerprint(self) -> str:
        if isinstance(self.source, LocalSource):
            return self.source.fingerprint(self._base_dir)
        return self.source.fingerprint()

    def source_corpus(self) -> str:
        """The corpus the task's texts come from (`DataSource.corpus`), relative paths resolved."""
        return self.source.corpus(self._base_dir)


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
    # Share of the evaluation zone whose texts may only go to dev splits; the rest may only go to
    # test splits. Unset (the v1 rule, which the default suite's reference was measured with), dev
    # and test are drawn per task from the whole zone, so a text may be a dev text of one task and
    # a test text of another; set, every text is in the same split for every task that has it
    # (tasks derived from one corpus select checkpoints on none of each other's test texts).
    dev_share: float | None = Field(default=None, gt=0, lt=1)
    # Prompt-tuning seeds a run uses unless `--seeds` overrides them.
    seeds: list[StrictInt] = Field(default_factory=lambda: [0], min_length=1)  # `[true]` is no seed 1
    # Smaller sizes for tasks whose source is too small for the suite's sizes (task name -> sizes).
    task_sizes: dict[str, SplitSizes] = Field(default_factory=dict)
    # Prompt-training overrides (steps, batch_size, ...); validated by the training stage. A boolean
    # stays one (pydantic would read `steps: true` as 1), so only `bf16` accepts it.
    training: dict[str, bool | int | float | str] = Field(default_factory=dict)

    _yaml_path: Path | None = PrivateAttr(default=None)

    @field_validator("tasks")
    @classmethod
    def _unique(cls, tasks: list[str]) -> list[str]:
        repeated = sorted({t for t in tasks if tasks.count(t) > 1})
        if repeated:
            raise ValueError(f"tasks listed more than once: {repeated}")
        return tasks

    @model_serializer(mode="wrap")
    def _without_unset_dev_share(self, handler):
        # The dump keys the artifact store and is compared with a reference's recorded suite: a
        # suite without `dev_share` must dump exactly as before the field existed.
        data = handler(self)
        if self.dev_share is None:
            data.pop("dev_share", None)
        return data

    @property
    def yaml_path(self) -> Path | None:
        return self._yaml_path

    def sizes_for(self, task_name: str) -> SplitSizes:
        """The split sizes for one task: its `task_sizes` entry, else the suite's sizes."""
        return self.task_sizes.get(task_name) or SplitSizes(train=self.train, dev=self.dev, test=self.test)


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
