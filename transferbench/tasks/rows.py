"""Row extraction: a task source's raw records -> labelled examples (text, text_pair, label), with
whitespace normalised and duplicate inputs removed.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from transferbench.errors import TransferbenchError
from transferbench.tasks.catalog import display_path
from transferbench.tasks.schema import TaskSpec

_SPACE = re.compile(r"\s+")


def _column(raw: pd.DataFrame, spec: TaskSpec, field: str, column: str) -> pd.Series:
    if column not in raw.columns:
        where = display_path(spec.yaml_path) if spec.yaml_path else f"task {spec.name}"
        raise TransferbenchError(
            f"{where}: field '{field}': the source has no column {column!r} (columns: {', '.join(map(str, raw.columns))})"
        )
    return raw[column]


def _clean_text(values: pd.Series) -> pd.Series:
    return values.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip())


def _check_named_raw_labels_occur(spec: TaskSpec, present: set[str]) -> None:
    """A raw value in `labels` or `drop_labels` that the source never has is a typo: for a derived
    task (several raw values -> one name, or a one-vs-rest rest) it would silently shrink a class.
    A label none of whose raw values occurs is left to the empty-class check, which names the label."""
    named = {spec.labels[v] for v in spec.labels if v in present}
    unknown = [v for v in spec.labels if v not in present and spec.labels[v] in named]
    unknown += [v for v in spec.drop_labels if v not in present]
    if unknown:
        where = display_path(spec.yaml_path) if spec.yaml_path else f"task {spec.name}"
        field = "labels" if unknown[0] in spec.labels else "drop_labels"
        known = sorted(present)
        shown = ", ".join(repr(v) for v in known[:12]) + (" ..." if len(known) > 12 else "")
        raise TransferbenchError(
            f"{where}: field '{field}': raw label(s) {', '.join(map(repr, unknown))} do not occur in the source "
            f"(its raw labels: {shown}); fix the spelling or remove them"
        )


def examples_from_records(spec: TaskSpec, raw: pd.DataFrame) -> pd.DataFrame:
    """Raw source rows -> columns text, text_pair, label (int); unusable rows dropped."""
    text = _clean_text(_column(raw, spec, "text_field", spec.text_field))
    pair = (_clean_text(_column(raw, spec, "text_pair_field", spec.text_pair_field))
            if spec.is_pair else pd.Series("", index=raw.index))
    keep = text != ""  # a non-empty stripped text has a word: count words only where a card asks for more
    if spec.min_words > 1:
        keep &= text.str.split().str.len() >= spec.min_words
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
        _check_named_raw_labels_occur(spec, set(raw_label[present]))
    ids = {name: i for i, name in enumerate(spec.label_names)}
    mapped = raw_label.map(lambda v: ids.get(spec.labels.get(v)) if v in spec.labels else None)
    dropped = raw_label.isin(spec.drop_labels)
    unexpected = sorted(set(raw_label[keep & mapped.isna() & ~dropped]))
    if unexpected:
        where = display_path(spec.yaml_path) if spec.yaml_path else f"task {spec.name}"
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
    # Each distinct text once: an SNLI premise comes with about three hypotheses.
    forms = {t: _SPACE.sub(" ", t.lower()).strip() for t in pd.unique(texts)}
    return pd.Series([forms[t] for t in texts], index=texts.index, dtype=object)


def deduplicate(examples: pd.DataFrame) -> pd.DataFrame:
    """Keep one copy of each normalised text (or pair); drop every copy when copies disagree."""
    key = normalise(examples["text"]) + "\x00" + normalise(examples["text_pair"])
    labels_per_key = examples.groupby(key, sort=False)["label"].nunique()
    agreeing = key.map(labels_per_key) == 1
    first = ~key.duplicated(keep="first")
    return examples[agreeing & first].reset_index(drop=True)
