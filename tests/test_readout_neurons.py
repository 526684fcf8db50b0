"""Read-out-aware neuron indicators: activations read where the backbone's verbalizer reads its
output (the [MASK] position with an MLM head, the mean over attended positions with the cosine
verbalizer), on the tiny random backbones of both heads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from transferbench.model.backbone import Backbone, tiny_backbone_folder
from transferbench.model.kernels import autocast
from transferbench.model.prompt import (
    Verbalizer, capture_ffn, initial_prompt, prompted_attention_mask, prompted_forward, read_out,
)
from transferbench.pipeline import units
from transferbench.pipeline.artifacts import Address
from transferbench.pipeline.runner import Benchmark
from transferbench.scoring.indicator import TaskView, checked_score, make_indicator
from transferbench.tasks import load_suite

READOUT_NAMES = ("activation_overlap_readout", "skill_on_readout", "skill_overlap_readout")
MASK_NAMES = ("activation_overlap", "skill_on", "skill_overlap")


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    return tiny_backbone_folder(tmp_path_factory.mktemp("tiny_mlm"), mlm_head=True)


@pytest.fixture
def bench_of(cache, tiny_suite):
    """A Benchmark of the tiny suite on a backbone folder (one seed)."""
    return lambda folder: Benchmark(load_suite(str(tiny_suite)), str(folder), [0])


def scores(bench, spec: str) -> np.ndarray:
    """The indicator's score of every ordered pair (diagonal NaN), computed in this process (the
    sandbox adds nothing these tests ask about, and costs a process per call)."""
    indicator = make_indicator(spec)
    declared = sorted(frozenset(indicator.requires))
    bench.ensure(declared)
    views = {name: TaskView(name, task.family, task.num_classes, {a: bench.view(a, name) for a in declared})
             for name, task in bench.tasks.items()}
    return np.array([[np.nan if s == t else checked_score(indicator, views[s], views[t]) for t in views]
                     for s in views])


def _batch(backbone: Backbone):
    return dict(backbone.tokenizer(["good movie is fine", "bad"], padding=True, return_tensors="pt"))


@pytest.mark.parametrize("mlm", [False, True], ids=["cosine", "mlm"])
def test_read_out_is_what_the_verbalizer_reads(tiny_backbone, tiny_mlm, mlm):
    backbone = Backbone(str(tiny_mlm if mlm else tiny_backbone))
    assert backbone.head == ("mlm" if mlm else "cosine")
    verbalizer = Verbalizer(backbone, [["bad"], ["good", "fine"]], 20.0)
    prompt = initial_prompt(backbone, 3, seed=0)
    batch = _batch(backbone)
    with torch.no_grad():
        output = prompted_forward(backbone, prompt, batch)
        logits = verbalizer.logits(output)
        assert torch.equal(prompted_attention_mask(batch["attention_mask"], 3), output.attention_mask)
        read = read_out(backbone.head, output.hidden.float(), output.attention_mask, 3 + 1)
        if mlm:
            vocab = backbone.mlm_head(read)
            expected = torch.stack([vocab[:, ids].mean(-1) for ids in verbalizer.word_ids], dim=-1)
        else:
            expected = 20.0 * F.normalize(read, dim=-1) @ verbalizer.label_encodings.T
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)
    # the second example is padded: the cosine read-out leaves its padding out
    if not mlm:
        attended = int(output.attention_mask[1].sum())
        torch.testing.assert_close(read[1], output.hidden[1, :attended].float().mean(0))


def _all_positions(bench, task: str, prompt: torch.Tensor, split: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(FFN activations [layers, L, ffn], attention mask [L]) of every example, every position."""
    encoded, backbone = bench.encoded(task, split), bench.backbone
    pad = backbone.tokenizer.pad_token_id
    examples = []
    with capture_ffn(backbone, slice(None)) as captured, autocast(bench.config, backbone), torch.no_grad():
        for index in encoded.length_sorted_batches(bench.config.eval_batch_size):
            batch = encoded.batch(index, pad)
            prompted_forward(backbone, prompt, batch)
            mask = prompted_attention_mask(batch["attention_mask"], prompt.shape[0])
            states = captured.pop()
            examples += [(states[row], mask[row]) for row in range(len(index))]
    return examples


def test_cosine_read_out_activations_are_means_over_attended_positions(bench_of, tiny_backbone):
    bench = bench_of(tiny_backbone)
    prompt = bench.source_prompt("pos_a", 0)["prompt"]
    n = prompt.shape[0]
    dev = _all_positions(bench, "pos_a", prompt, "dev")
    pooled = torch.stack([(states * mask[None, :, None]).sum(1) / mask.sum() for states, mask in dev])
    task = units.mask_activations_unit(bench.context, "pos_a", 0, prompt, True, "verbalizer")["activations"]
    torch.testing.assert_close(task, pooled.mean(0), rtol=0, atol=1e-5)
    # not the [MASK] position's
    at_mask = units.mask_activations_unit(bench.context, "pos_a", 0, prompt, True)["activations"]
    assert not torch.allclose(task, at_mask, atol=1e-3)
    torch.testing.assert_close(at_mask, torch.stack([states[:, n + 1] for states, _ in dev]).mean(0), rtol=0, atol=1e-5)
    # the prompt alone: [CLS] prompt [MASK] [SEP], every position attended
    alone = units.mask_activations_unit(bench.context, "pos_a", 0, prompt, False, "verbalizer")["activations"]
    tokenizer = bench.backbone.tokenizer
    ids = torch.tensor([[tokenizer.cls_token_id, tokenizer.sep_token_id]])
    with capture_ffn(bench.backbone, slice(None)) as captured, autocast(bench.config, bench.backbone), torch.no_grad():
        prompted_forward(bench.backbone, prompt, {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                                                  "token_type_ids": torch.zeros_like(ids)})
    assert captured[0].shape[2] == n + 3
    torch.testing.assert_close(alone, captured[0][0].mean(1), rtol=0, atol=1e-5)


def test_cosine_read_out_skill_neurons_put_the_read_out_in_the_place_of_mask(bench_of, tiny_backbone):
    bench = bench_of(tiny_backbone)
    prompt = bench.source_prompt("pos_a", 0)["prompt"]
    n = prompt.shape[0]
    readout = bench.skill_neurons("pos_a", 0, "readout+prompt")
    assert readout["thresholds"].shape == (bench.backbone.num_layers, n + 1, bench.backbone.ffn_width)
    prompt_only = bench.skill_neurons("pos_a", 0, "prompt")
    torch.testing.assert_close(readout["thresholds"][:, :n], prompt_only["thresholds"], rtol=0, atol=1e-6)
    train = _all_positions(bench, "pos_a", prompt, "train")
    pooled = torch.stack([(states * mask[None, :, None]).sum(1) / mask.sum() for states, mask in train]).mean(0)
    torch.testing.assert_close(readout["thresholds"][:, n], pooled, rtol=0, atol=1e-5)
    assert (readout["scores"] >= prompt_only["scores"] - 1e-7).all()  # a max over one more position
    alone = bench.skill_neurons("pos_a", 0, "readout")["thresholds"]
    torch.testing.assert_close(alone[:, 0], readout["thresholds"][:, n], rtol=0, atol=1e-6)


def test_on_a_masked_lm_the_read_out_is_the_mask_position(bench_of, tiny_mlm):
    bench = bench_of(tiny_mlm)
    assert bench.backbone.head == "mlm"
    prompt = bench.source_prompt("pos_a", 0)["prompt"]
    for with_inputs in (False, True):
        mask = units.mask_activations_unit(bench.context, "pos_a", 0, prompt, with_inputs)["activations"]
        readout = units.mask_activations_unit(bench.context, "pos_a", 0, prompt, with_inputs, "verbalizer")
        assert torch.equal(readout["activations"], mask)
    mask, readout = bench.skill_neurons("pos_a", 0), bench.skill_neurons("pos_a", 0, "readout+prompt")
    assert torch.equal(readout["thresholds"], mask["thresholds"]) and torch.equal(readout["scores"], mask["scores"])
    # and so the read-out-aware indicators score as the papers' (at [MASK]) do
    for readout_name, mask_name in zip(READOUT_NAMES, MASK_NAMES):
        np.testing.assert_array_equal(scores(bench, readout_name), scores(bench, mask_name), err_msg=readout_name)


def test_read_out_artifacts_have_keys_of_their_own_and_leave_the_existing_ones(bench_of, tiny_backbone):
    bench = bench_of(tiny_backbone)
    address = Address("pos_a", 0)
    assert bench.key("readout_activations", address) == bench.key("mask_activations", address, readout="verbalizer")
    assert bench.key("readout_activations_task", address) == bench.key(
        "mask_activations_task", address, readout="verbalizer")
    assert bench.key("skill_neurons_readout", address) == bench.key("skill_neurons", address, positions="readout+prompt")
    keys = {name: bench.key(name, address) for name in (
        "mask_activations", "mask_activations_task", "readout_activations", "readout_activations_task",
        "skill_neurons", "skill_neurons_readout")}
    assert len(set(keys.values())) == len(keys)
    # the papers' keys are computed from the options they always had
    assert bench.key_inputs("mask_activations", address)["with_inputs"] is False
    assert "readout" not in bench.key_inputs("mask_activations", address)
    assert bench.key_inputs("skill_neurons", address)["positions"] == "mask+prompt"


def test_on_the_cosine_backbone_the_read_out_indicators_read_other_neurons(bench_of, tiny_backbone):
    bench = bench_of(tiny_backbone)
    for readout_name, mask_name in zip(READOUT_NAMES, MASK_NAMES):
        readout, at_mask = scores(bench, readout_name), scores(bench, f"{readout_name}:readout=mask")
        np.testing.assert_array_equal(at_mask, scores(bench, mask_name), err_msg=readout_name)  # [MASK], an option
        off_diagonal = ~np.eye(len(readout), dtype=bool)
        assert np.isfinite(readout[off_diagonal]).all()
        assert not np.array_equal(readout[off_diagonal], at_mask[off_diagonal]), readout_name


def _view(name: str, **artifacts) -> TaskView:
    return TaskView(name, "sentiment", 2, artifacts)


def test_read_out_indicators_declare_and_read_the_read_out_artifacts():
    a = [np.array([[1.0, -1.0, 2.0, 0.5]])]
    b = [np.array([[1.0, 1.0, -2.0, 0.5]])]
    at_mask = [np.array([[1.0, 1.0, 1.0, 1.0]])]
    indicator = make_indicator("activation_overlap_readout")
    assert indicator.requires == ("readout_activations",)
    source = _view("s", readout_activations=a, mask_activations=at_mask)
    target = _view("t", readout_activations=b, mask_activations=at_mask)
    assert checked_score(indicator, source, target) == pytest.approx(2 / math.sqrt(9))  # 2 shared of 3 and 3
    assert checked_score(make_indicator("activation_overlap_readout:readout=mask"), source, target) == 1.0
    assert make_indicator("activation_overlap_readout:inputs=task").requires == ("readout_activations_task",)
    assert make_indicator("skill_on_readout").requires == ("skill_scores_readout", "readout_activations")
    assert make_indicator("skill_overlap_readout").requires == ("skill_scores_readout",)
    assert make_indicator("skill_overlap_readout:readout=mask").requires == ("skill_scores",)
    # the papers' indicators keep their parameters (and their results' manifests)
    for name in MASK_NAMES:
        assert "readout" not in make_indicator(name).get_params()


@pytest.mark.parametrize("spec", ["activation_overlap_readout:readout=cls", "skill_on_readout:readout=1"])
def test_a_bad_readout_is_one_error_line(spec):
    from transferbench.errors import TransferbenchError

    with pytest.raises(TransferbenchError, match="readout must be one of mask, verbalizer"):
        make_indicator(spec)


def test_transferbench_run_scores_the_read_out_indicators(cache, tiny_backbone, tiny_suite, tmp_path, monkeypatch,
                                                          capsys):
    import json

    from transferbench.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["run", "--suite", str(tiny_suite), "--backbone", str(tiny_backbone), "--transfer", "zero_shot"]
    for name in READOUT_NAMES:
        args += ["--indicator", name]
    assert main(args) == 0, capsys.readouterr().err
    files = sorted((tmp_path / "transferbench-results" / "submissions").glob("*.json"))
    assert sorted(json.loads(f.read_text())["indicator"]["name"] for f in files) == sorted(READOUT_NAMES)
    for file in files:
        record = json.loads(file.read_text())
        assert record["indicator"]["params"] == {}
        assert record["manifest"]["config"]["indicator"]["params"]["readout"] == "verbalizer"


def test_transferbench_neurons_exports_the_read_out_skill_neurons_and_says_where(tmp_path, cache, tiny_backbone,
                                                                                  tiny_suite):
    import io

    from rich.console import Console

    from test_neurons_cli import parse
    from transferbench.analysis.inspect_neurons import run

    export = tmp_path / "export"
    assert run(parse("--task", "pos_a", "--suite", tiny_suite, "--backbone", tiny_backbone, "--seeds", "0",
                     "--positions", "readout+prompt", "--export", export), Console(file=io.StringIO())) == 0
    thresholds = np.load(export / "thresholds.npy")
    assert thresholds.shape[2] == 4 + 1  # the 4 prompt positions and the read-out
    readme = (export / "README.md").read_text()
    assert ("positions 1..4, then the verbalizer's read-out (the mean over the example's attended positions, "
            "which the cosine verbalizer reads)") in readme
    assert 'bench.skill_position_activations(\'pos_a\', k, "train", \'readout+prompt\')' in readme
