"""The cost of an example measured on this machine (`transferbench.pipeline.calibration`) and the work every
unit of a stage declares (`transferbench.pipeline.runner`), which progress and the opening estimate read."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
import torch

from transferbench.pipeline import calibration

from transferbench import progress
from transferbench.pipeline.runner import Benchmark
from transferbench.reference.protocol import measured_cells
from transferbench.tasks import load_suite


def test_calibration_gives_positive_finite_costs_once_per_process_and_setting(cache, tiny_backbone, tiny_suite,
                                                                              monkeypatch):
    calls = []
    measure = calibration.measure

    def counted(backbone, split, verbalizer, config, train_attention, eval_kernel):
        calls.append(config)
        return measure(backbone, split, verbalizer, config, train_attention, eval_kernel)

    monkeypatch.setattr(calibration, "measure", counted)
    monkeypatch.setattr(calibration, "_MEASURED", {})
    bench = Benchmark(load_suite(str(tiny_suite)), str(tiny_backbone), seeds=[0], precision="bf16")
    rng = torch.get_rng_state()
    cost = calibration.example_cost(bench)
    assert torch.equal(torch.get_rng_state(), rng)  # a calibration changes nothing a run computes
    assert math.isfinite(cost.eval_seconds) and cost.eval_seconds > 0
    assert math.isfinite(cost.train_seconds) and cost.train_seconds > 0
    assert calibration.example_cost(Benchmark(load_suite(str(tiny_suite)), str(tiny_backbone), seeds=[1],
                                              precision="bf16")) is cost
    assert calls == [bench.config]  # measured once, under the benchmark's own settings

    # the precision comes from the benchmark's config: another precision is another measurement
    fp32 = Benchmark(load_suite(str(tiny_suite)), str(tiny_backbone), seeds=[0], precision="fp32")
    assert not fp32.config.bf16
    assert calibration.example_cost(fp32) is not cost and len(calls) == 2 and not calls[1].bf16


def test_calibration_ticks_no_stage(cache, tiny_backbone, tiny_suite, monkeypatch):
    monkeypatch.setattr(calibration, "_MEASURED", {})
    bench = Benchmark(load_suite(str(tiny_suite)), str(tiny_backbone), seeds=[0])
    with bench.progress("plain"):
        progress.Reporter.stage(bench.reporter, "a stage", 1)
        calibration.example_cost(bench)
        assert progress._current.batches == 0 and progress._current.unit_work == 0


def test_every_unit_processes_the_work_its_job_declares(cache, tiny_backbone, tiny_suite, monkeypatch):
    """The runner sizes each job by the examples its unit's passes process; the examples the unit
    then reports batch by batch add up to exactly that size, for every kind of unit."""
    finished = defaultdict(list)
    original = progress._Stage.unit_finished

    def record(stage, index):
        size = stage.sizes[index if index is not None else stage.units_done]
        finished[stage.description].append((stage.unit_work, size))
        original(stage, index)

    monkeypatch.setattr(progress._Stage, "unit_finished", record)
    bench = Benchmark(load_suite(str(tiny_suite)), str(tiny_backbone), seeds=[0])
    with bench.progress("plain"):
        bench.ensure(measured_cells())
        bench.ensure(["skill_scores", "mask_activations_task", "text_embedding", "pair_outputs", "probe_ranking"])
        bench.get("probe", task="pos_a")
    assert set(finished) == {"train prompts", "zero-shot transfer", "initialisation transfer", "skill neurons",
                             "mask activations on task inputs", "text embeddings", "pair outputs", "probe rankings",
                             "linear probes"}  # one stage per artifact
    assert len(finished["zero-shot transfer"]) == 4  # a zero-shot row per target
    assert len(finished["initialisation transfer"]) == 4 * 4  # an init arm per cell
    for description, pairs in finished.items():
        for ticked, size in pairs:
            assert size > 0 and ticked == pytest.approx(size), (description, pairs)
