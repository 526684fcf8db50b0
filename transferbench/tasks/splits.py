"""Splitting: a task's usable examples -> deterministic, stratified, disjoint train/dev/test
splits drawn jointly with the suite (`text_zone`), with a content hash; and a per-process cache of
parsed sources.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from transferbench.errors import TransferbenchError
from transferbench.tasks.catalog import display_path
from transferbench.tasks.rows import deduplicate, examples_from_records, normalise
from transferbench.tasks.schema import SuiteSpec, TaskData, TaskSpec



def _rng(suite: SuiteSpec, spec: TaskSpec) -> np.random.Generator:
    seed = hashlib.sha256(f"{suite.split_seed}:{spec.name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(seed[:8], "little"))


def _text_position(texts: pd.Series, suite: SuiteSpec) -> np.ndarray:
    """Each text's place in [0, 1): a hash of its normalised form and the suite's `split_seed`."""
    def unit_interval(text: str) -> float:
        digest = hashlib.sha256(f"{suite.split_seed}\x00{text}".encode()).digest()
        return int.from_bytes(digest[:8], "little") / 2**64

    normalised = normalise(texts)
    places = {t: unit_interval(t) for t in pd.unique(normalised)}
    return normalised.map(places).to_numpy(dtype=float)


def text_zone(texts: pd.Series, suite: SuiteSpec) -> np.ndarray:
    """True where a text may only go to dev/test splits, False where it may only go to train.

    The zone is a hash of the normalised text (the premise, for text pairs: every pair built on
    one premise lands in one zone) and the suite's `split_seed`, compared with `eval_share`. It
    depends on the text alone, never on the task, so tasks drawn from one corpus (Rotten Tomatoes
    sentiment and subjectivity, the SNLI tasks, the BBC tasks, or two packagings of the same movie
    snippets) get joint splits: no dev or test text of any task is in any task's train split.
    """
    return _text_position(texts, suite) < suite.eval_share


def text_split(texts: pd.Series, suite: SuiteSpec) -> np.ndarray:
    """The only split ("train", "dev" or "test") a text may go to in any task of a suite with a
    `dev_share`: the evaluation zone's first `dev_share` is dev, the rest test (`text_zone` refined)."""
    position = _text_position(texts, suite)
    dev_below = suite.eval_share * (suite.dev_share if suite.dev_share is not None else 1.0)
    return np.where(position >= suite.eval_share, "train", np.where(position < dev_below, "dev", "test"))


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


# Tasks derived from one corpus (five SNLI tasks, nine BBC ones) read one source: its raw rows are
# parsed once per process, keyed by the source's fingerprint alone (a few sources, never modified).
_RECORDS: dict[str, pd.DataFrame] = {}
_RECORDS_MAX = 4


def _source_records(spec: TaskSpec) -> pd.DataFrame:
    key = spec.source_fingerprint()
    if key not in _RECORDS:
        base = spec.yaml_path.parent if spec.yaml_path else None
        raw = spec.source.records(base_dir=base, task_name=spec.name)
        if len(_RECORDS) >= _RECORDS_MAX:
            _RECORDS.pop(next(iter(_RECORDS)))
        _RECORDS[key] = raw
    return _RECORDS[key]


def _usable_examples(spec: TaskSpec) -> pd.DataFrame:
    key = (spec.model_dump_json(), spec.source_fingerprint())
    if key not in _POOLS:
        raw = _source_records(spec)
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
        where = display_path(spec.yaml_path) if spec.yaml_path else f"task {spec.name}"
        raise TransferbenchError(
            f"{where}: field 'labels': no usable example has label {', '.join(map(repr, missing))} "
            f"({len(pool)} usable examples); fix the data or remove the label"
        )


def load_task_data(spec: TaskSpec, suite: SuiteSpec) -> TaskData:
    """The task's deduplicated, stratified, disjoint train/dev/test splits at the suite's sizes.

    dev and test are drawn from the texts of the evaluation zone, train from the rest
    (`text_zone`), so splits are joint across every task of the suite; with the suite's `dev_share`,
    dev and test are drawn from disjoint parts of that zone (`text_split`), so a text is in the same
    split for every task that has it.
    """
    pool = _usable_examples(spec)
    sizes = suite.sizes_for(spec.name)
    if suite.dev_share is None:
        held_out = text_zone(pool["text"], suite)
        zones = {"train": pool[~held_out], "eval": pool[held_out]}
        needs = (("train", sizes.train, f"train {sizes.train}"),
                 ("eval", sizes.dev + sizes.test, f"dev {sizes.dev} + test {sizes.test}"))
    else:
        split_of = text_split(pool["text"], suite)
        zones = {zone: pool[split_of == zone] for zone in ("train", "dev", "test")}
        needs = tuple((zone, getattr(sizes, zone), f"{zone} {getattr(sizes, zone)}") for zone in zones)
    zones = {zone: frame.reset_index(drop=True) for zone, frame in zones.items()}
    for zone, needed, parts in needs:
        if len(zones[zone]) < needed:
            shares = f"eval_share {suite.eval_share}" + (f", dev_share {suite.dev_share}" if suite.dev_share else "")
            raise TransferbenchError(
                f"task {spec.name} has {len(pool)} usable examples after filtering and deduplication, "
                f"{len(zones[zone])} of them in the {zone} zone (suite {suite.name}, {shares}), "
                f"but needs {needed} there ({parts}); use smaller split sizes (e.g. the suite's 'task_sizes')"
            )
    rng = _rng(suite, spec)
    # Each zone is stratified by its own class shares (the reference of the default suite was
    # measured with exactly this rule; changing it changes every data hash).
    (train,) = stratified_split(zones["train"]["label"].to_numpy(), [sizes.train], spec.num_classes, rng)
    if suite.dev_share is None:
        dev, test = stratified_split(zones["eval"]["label"].to_numpy(), [sizes.dev, sizes.test], spec.num_classes, rng)
        dev_zone = test_zone = zones["eval"]
    else:
        (dev,) = stratified_split(zones["dev"]["label"].to_numpy(), [sizes.dev], spec.num_classes, rng)
        (test,) = stratified_split(zones["test"]["label"].to_numpy(), [sizes.test], spec.num_classes, rng)
        dev_zone, test_zone = zones["dev"], zones["test"]
    frames = {"train": zones["train"].iloc[train].reset_index(drop=True),
              "dev": dev_zone.iloc[dev].reset_index(drop=True),
              "test": test_zone.iloc[test].reset_index(drop=True)}
    names = spec.label_names
    return TaskData(
        spec=spec,
        train=_to_dataset(frames["train"], names),
        dev=_to_dataset(frames["dev"], names),
        test=_to_dataset(frames["test"], names),
        data_hash=data_hash(names, frames),
        source_size=len(pool),
    )


def cross_task_leaks(data: dict[str, TaskData], *, dev_vs_test: bool = False) -> list[str]:
    """Every (task, split, other task) where a dev/test text of `task` is in `other`'s train split,
    as readable lines (empty when the suite's splits are joint, as `load_task_data` draws them).
    With `dev_vs_test`, also every test text of `task` that is a dev text of `other` (empty when
    the suite has a `dev_share`)."""
    def texts_of(task_data: TaskData, split: str) -> set[str]:
        return set(normalise(pd.Series(getattr(task_data, split)["text"], dtype=str)))

    seen_in = {"train": {name: texts_of(d, "train") for name, d in data.items()}}
    if dev_vs_test:
        seen_in["dev"] = {name: texts_of(d, "dev") for name, d in data.items()}
    leaks = []
    for name, task_data in data.items():
        for split in ("dev", "test"):
            texts = texts_of(task_data, split)
            for other_split, by_task in seen_in.items():
                if other_split == "dev" and split == "dev":
                    continue
                for other, seen in by_task.items():
                    if other != name and texts & seen:
                        leaks.append(f"{len(texts & seen)} {split} texts of {name} are in the {other_split} split of {other}")
    return leaks
