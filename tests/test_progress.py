"""Progress a person can read: per-batch ticks with rate and ETA, one line per finished stage, and
plain lines (bounded in number) when the output is not a terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from transferbench import progress
from transferbench.model.prompt import EncodedSplit


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=120, color_system=None), buffer


def test_auto_is_rich_on_a_terminal_and_plain_otherwise():
    assert progress.resolve_mode("auto", _console(True)[0]) == "rich"
    assert progress.resolve_mode("auto", _console(False)[0]) == "plain"
    assert progress.resolve_mode("rich", _console(False)[0]) == "rich"
    with pytest.raises(ValueError):
        progress.resolve_mode("loud", _console(False)[0])


def test_plain_lines_have_rate_and_eta_and_one_summary_per_stage(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    console, buffer = _console(False)
    reporter = progress.Reporter(console, "plain", interval=10.0)
    with reporter.reporting():
        unit_done = reporter.stage("skill neurons", 4)
        for _ in range(4):  # 4 units of 50 batches, 0.125 s per batch: 25 s in all
            progress.loop_started(50)
            for _ in range(50):
                clock[0] += 0.125
                progress.batch_done()
            unit_done()
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "skill neurons: 4 units to run"
    periodic = lines[1:-1]
    assert len(periodic) == 2  # one per 10 s of a 25 s stage, not one per batch
    # at 10 s: 80 batches, the first unit and 30 of the second unit's 50 batches done (40%)
    assert periodic[0] == "skill neurons: 1/4 units · 80 batches, 8.0/s · 10s · ETA 15s", periodic
    assert lines[-1] == "done: skill neurons: 4 units, 200 batches (8.0/s) in 25s"


def test_eta_counts_the_batches_of_the_unit_in_progress(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    stage = progress._Stage("train prompts", units=2)
    progress.loop_started(10)  # no stage reported: a no-op
    assert stage.unit_total == 0
    stage.unit_total = 10
    stage.unit_batches, clock[0] = 5, 30.0  # half of the first of two units in 30 s
    assert stage.fraction() == pytest.approx(0.25) and stage.eta() == "ETA 1m30s"


def test_eta_is_the_work_left_over_the_rate_of_work(monkeypatch):
    """One big unit and ten small ones (a zero-shot row next to single cells): once the big one
    is done in 100 s, the ETA is the small units' work at that rate (10 s), not 10 units at 100 s
    each (16m40s, what counting units gave); within a unit, its ticked examples count."""
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    console, _ = _console(False)
    reporter = progress.Reporter(console, "plain", interval=1e9)
    with reporter.reporting():
        unit_done = reporter.stage("measure transfer", 11, [progress.Work(eval=1000)] + [progress.Work(eval=10)] * 10)
        stage = progress._current
        for _ in range(5):  # half of the big unit: 500 of 1100 examples in 50 s
            clock[0] += 10.0
            progress.batch_done(100)
        assert stage.fraction() == pytest.approx(500 / 1100) and stage.eta() == "ETA 1m00s"
        for _ in range(5):
            clock[0] += 10.0
            progress.batch_done(100)
        unit_done(0)
        assert stage.eta() == "ETA 10s", stage.status()  # 100 examples left at 10 per second
        unit_done(7)  # units finishing out of order (Ray) count their own work
        assert stage.work_done() == pytest.approx(1010)


def test_a_training_example_weighs_its_measured_cost_and_the_first_eta_is_measured(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    console, buffer = _console(False)
    reporter = progress.Reporter(console, "plain", interval=1e9)
    cost = progress.ExampleCost(eval_seconds=0.01, train_seconds=0.1)  # a training example: 10 evaluation ones
    with reporter.reporting():
        reporter.stage("train prompts", 2, [progress.Work(train=160, eval=400)] * 2, cost)
        stage = progress._current
        assert stage.sizes == [2000, 2000]
        assert stage.eta() == "ETA 40s"  # nothing done yet: 4000 evaluation examples at 0.01 s
        clock[0] += 16.0
        progress.batch_done(16, train=True)  # 160 of 4000 in 16 s: 384 s left at the observed rate
        assert stage.eta() == "ETA 6m24s"
    assert buffer.getvalue().splitlines()[0] == "train prompts: 2 units to run, ETA 40s at the rate measured on this machine"


def test_evaluation_batches_tick_the_current_stage():
    console, buffer = _console(False)
    reporter = progress.Reporter(console, "plain", interval=1e9)
    split = EncodedSplit(input_ids=[[1, 2]] * 10, token_type_ids=None, labels=None)
    with reporter.reporting():
        unit_done = reporter.stage("text embedding", 1)
        assert len(list(split.length_sorted_batches(4))) == 3
        assert progress._current.unit_total == 3 and progress._current.batches == 3
        assert progress._current.unit_work == 10  # examples, the unit of work
        assert len(list(split.length_sorted_batches(4, copies=3))) == 3  # 3 prompts evaluated together
        assert progress._current.unit_work == 10 + 30
        unit_done()
    assert buffer.getvalue().splitlines()[-1].startswith("done: text embedding: 1 unit, 6 batches")
    assert progress._current is None


def test_rich_mode_draws_bars_and_prints_the_finished_line():
    console, buffer = _console(True)
    reporter = progress.Reporter(console, "rich")
    with reporter.reporting():
        unit_done = reporter.stage("mask activations", 2)
        progress.loop_started(2)
        progress.batch_done()
        unit_done()
        unit_done()
    text = buffer.getvalue()
    assert "mask activations" in text and "done: mask activations: 2 units, 1 batches" in text


def test_a_download_is_named_when_it_starts_and_when_it_ends(tmp_path, monkeypatch, capsys):
    import hashlib

    from transferbench.tasks import sources

    payload = b"a wheel's bytes"
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))

    def fake_pip(package, version, dist, into, cache_folder):
        (into / f"{package}-{version}.whl").write_bytes(payload)
        return into / f"{package}-{version}.whl"

    monkeypatch.setattr(sources, "_pip_download", fake_pip)
    path = sources.fetch_distribution("somepkg", "1.0", hashlib.sha256(payload).hexdigest(), "wheel")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("downloading somepkg==1.0 (wheel) into ")
    assert lines[1].startswith("downloaded somepkg-1.0.whl: 0.0 MiB in ")
    sources.fetch_distribution("somepkg", "1.0", hashlib.sha256(payload).hexdigest(), "wheel")
    assert capsys.readouterr().err == "" and path.read_bytes() == payload  # cached: nothing to say


def test_runs_first_line_comes_before_torch_is_imported(tmp_path):
    """The first line of `run` is printed before anything slow is imported (torch alone takes
    seconds on a loaded machine), so it appears within a second of starting."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import transferbench.cli as cli\n"
        "seen = []\n"
        "original = cli.Console.print\n"
        "def spy(self, *args, **kwargs):\n"
        "    seen.append('torch' in sys.modules)\n"
        "    return original(self, *args, **kwargs)\n"
        "cli.Console.print = spy\n"
        "status = cli.main(['run', '-i', 'random', '--suite', 'no_such_suite'])\n"
        "print('TORCH_AT_FIRST_LINE', seen[0], 'STATUS', status, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.stdout.startswith("transferbench run: indicator random on suite no_such_suite"), done.stdout
    assert "TORCH_AT_FIRST_LINE False STATUS 2" in done.stderr, done.stderr


def test_reference_build_takes_the_progress_mode_as_run_does():
    from transferbench.cli import build_parser

    parser = build_parser(neurons=False)
    assert parser.parse_args(["reference", "build", "--progress", "plain"]).progress == "plain"
    assert parser.parse_args(["reference", "build"]).progress == "auto"
    assert parser.parse_args(["run", "-i", "random", "--progress", "rich"]).progress == "rich"
