"""Shared fixtures: a tiny random backbone and a suite of small local tasks, built in tmp dirs."""

from __future__ import annotations

import os
import random
import signal
import textwrap
from pathlib import Path

import pytest

from transferbench.model.backbone import tiny_backbone_folder

POSITIVE = ["good", "great", "happy", "fine"]
NEGATIVE = ["bad", "terrible", "sad", "awful"]
NOUNS = ["movie", "film", "plot", "story", "review", "news"]


def _write_task(folder: Path, name: str, family: str, rows: list[tuple[str, str]], words: dict[str, list[str]]) -> Path:
    csv = folder / f"{name}.csv"
    csv.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
    labels = "\n".join(f"  {label}: {label}" for label in words)
    verbalizers = "\n".join(f"  {label}: [{', '.join(ws)}]" for label, ws in words.items())
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        family: {family}
        version: 1
        description: A synthetic task for tests.
        source: {{type: local, path: {csv.name}}}
        text_field: text
        label_field: label
        labels:
        """) + labels + "\nverbalizers:\n" + verbalizers + "\nlicense: CC0\ncitation: none\n")
    return path


def build_tiny_suite(folder: Path, *, steps: int = 4) -> Path:
    """Four synthetic 2-class tasks (two families) plus a suite YAML listing them by path."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    paths = []
    for index, (name, family) in enumerate([("pos_a", "sentiment"), ("pos_b", "sentiment"),
                                            ("topic_a", "topic"), ("topic_b", "topic")]):
        rows = []
        for i in range(80):
            label = i % 2
            pool = (POSITIVE if label else NEGATIVE) if family == "sentiment" else (NOUNS[:3] if label else NOUNS[3:])
            text = " ".join(rng.choice(pool) for _ in range(3 + index)) + f" {rng.choice(NOUNS)} the a{'' if i % 3 else ' is'}"
            rows.append((f"{text} {i}", "pos" if label else "neg"))
        words = {"neg": ["bad"], "pos": ["good"]} if family == "sentiment" else {"neg": ["news"], "pos": ["movie"]}
        paths.append(_write_task(folder, name, family, rows, words))
    suite = folder / "tiny_suite.yaml"
    suite.write_text(textwrap.dedent(f"""\
        name: tiny
        description: Four synthetic tasks for unit tests.
        tasks: [{', '.join(str(p) for p in paths)}]
        train: 24
        dev: 12
        test: 16
        seeds: [0]
        training: {{steps: {steps}, batch_size: 8, eval_every: 2, prompt_length: 4, max_length: 16, init_steps: 2}}
        """))
    return suite


@pytest.fixture(autouse=True, scope="session")
def terminal_ctrl_c():
    """Python's own Ctrl-C handler for the session, as in a terminal: a shell starts background
    jobs (`pytest ... &`) with SIGINT ignored and Python keeps it so, which the Ctrl-C tests
    (tests/test_bad_inputs.py, tests/test_plugins.py) would read as the user's choice."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture()
def isolated_registries():
    """Registrations made by the test (indicators, backbones, executors, transfer kinds, data
    sources) are undone afterwards: `transferbench.registry.isolated` over every registry."""
    import transferbench.model.backbone  # noqa: F401  (each module defines its registry on import)
    import transferbench.pipeline.executors  # noqa: F401
    import transferbench.scoring.indicator  # noqa: F401
    import transferbench.reference.protocol  # noqa: F401
    import transferbench.tasks.sources  # noqa: F401
    from transferbench.registry import isolated

    with isolated():
        yield


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    return tiny_backbone_folder(tmp_path_factory.mktemp("tiny_backbone"))


@pytest.fixture(autouse=True)
def own_results_folder(tmp_path, monkeypatch):
    """`transferbench.run` (and `transferbench run` without --submit) writes result files into the
    user's results folder, the working directory's by default: a test's go to its own temp folder."""
    monkeypatch.setenv("TRANSFERBENCH_RESULTS", str(tmp_path / "transferbench-results"))


@pytest.fixture()
def tiny_suite(tmp_path) -> Path:
    return build_tiny_suite(tmp_path / "tasks")


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(folder))
    return folder


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the integration tests of a session (downloads, model, prompts):
    $TRANSFERBENCH_TEST_CACHE if set (tox sets it, so re-runs reuse downloads), else a temp dir."""
    existing = os.environ.get("TRANSFERBENCH_TEST_CACHE")
    return Path(existing) if existing else tmp_path_factory.mktemp("transferbench_cache")


@pytest.fixture
def real_cache(shared_cache, monkeypatch) -> Path:
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(shared_cache))
    return shared_cache
