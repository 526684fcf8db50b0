"""Prompt tuning on a tiny random backbone: frozen weights, determinism, activations."""

import contextlib

import datasets
import pytest
import torch

from transferbench.model.backbone import Backbone, tiny_backbone_folder
from transferbench.model.prompt import (
    PromptConfig, TrainJob, Verbalizer, capture_ffn, encode_split, predict, prompted_forward, train_prompt,
    train_prompts,
)
from transferbench.errors import TransferbenchError

TEXTS = ["good movie", "great film", "bad movie", "terrible film", "good story", "awful plot",
         "great review", "sad story", "fine film", "bad plot"] * 3
LABELS = [1, 1, 0, 0, 1, 0, 1, 0, 1, 0] * 3


@pytest.fixture(scope="module", params=[False, True], ids=["cosine-head", "mlm-head"])
def backbone(request, tmp_path_factory):
    folder = tiny_backbone_folder(tmp_path_factory.mktemp("tiny"), mlm_head=request.param)
    return Backbone(str(folder))


def _split(backbone, config):
    dataset = datasets.Dataset.from_dict({"text": TEXTS, "text_pair": [""] * len(TEXTS), "label": LABELS})
    return encode_split(backbone, dataset, config.max_length)


def _train(backbone, config, seed=0):
    split = _split(backbone, config)
    verbalizer = Verbalizer(backbone, [["bad"], ["good", "great"]], config.cosine_scale)
    return train_prompt(backbone, split, split, verbalizer, config, seed=seed)


CONFIG = PromptConfig(prompt_length=4, steps=6, batch_size=4, eval_every=3, lr=0.1)


def test_backbone_weights_never_change_and_get_no_gradients(backbone):
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    trained = _train(backbone, CONFIG)
    assert trained.prompt.shape == (4, backbone.hidden_size)
    for name, param in backbone.model.named_parameters():
        assert not param.requires_grad and param.grad is None, name
    for key, value in backbone.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_only_the_prompt_moves(backbone):
    config = PromptConfig(prompt_length=4, steps=3, batch_size=4, eval_every=100, lr=0.5)
    trained = _train(backbone, config)
    untrained = _train(backbone, PromptConfig(prompt_length=4, steps=1, batch_size=4, eval_every=100, lr=0.0))
    assert not torch.equal(trained.prompt, untrained.prompt)


def test_same_seed_gives_bit_identical_prompt_and_predictions(backbone):
    a, b = _train(backbone, CONFIG, seed=3), _train(backbone, CONFIG, seed=3)
    assert torch.equal(a.prompt, b.prompt) and a.losses == b.losses
    c = _train(backbone, CONFIG, seed=4)
    assert not torch.equal(a.prompt, c.prompt)
    split = _split(backbone, CONFIG)
    verbalizer = Verbalizer(backbone, [["bad"], ["good"]], CONFIG.cosine_scale)
    assert (predict(backbone, a.prompt, split, verbalizer, CONFIG) == predict(backbone, b.prompt, split, verbalizer, CONFIG)).all()


def test_capture_ffn_reads_every_layer_at_prompt_positions(backbone):
    split = _split(backbone, CONFIG)
    prompt = torch.randn(4, backbone.hidden_size)
    batch = split.batch(list(range(5)), backbone.tokenizer.pad_token_id)
    with capture_ffn(backbone, slice(1, 5)) as captured:
        prompted_forward(backbone, prompt, batch)
    assert captured[0].shape == (5, backbone.num_layers, 4, backbone.ffn_width)


def test_per_example_prompts_equal_shared_prompt(backbone):
    split = _split(backbone, CONFIG)
    prompt = torch.randn(4, backbone.hidden_size)
    batch = split.batch(list(range(6)), backbone.tokenizer.pad_token_id)
    with torch.no_grad():
        shared = prompted_forward(backbone, prompt, batch).hidden
        stacked = prompted_forward(backbone, prompt.expand(6, -1, -1), batch).hidden
    torch.testing.assert_close(shared, stacked)


def test_unknown_training_setting_is_one_line_error():
    with pytest.raises(TransferbenchError, match="unknown prompt-training setting"):
        PromptConfig.from_overrides({"stepz": 3})


def test_select_metric_is_validated_and_keys_nothing_at_its_default():
    with pytest.raises(TransferbenchError, match="select_metric must be one of accuracy, balanced_accuracy"):
        PromptConfig.from_overrides({"select_metric": "f1"})
    assert "select_metric" not in PromptConfig().to_dict()  # store keys and v1 bundle records unchanged
    assert PromptConfig(select_metric="balanced_accuracy").to_dict()["select_metric"] == "balanced_accuracy"


def test_balanced_accuracy_selection_keeps_the_prompt_with_the_best_dev_balanced_accuracy(backbone, monkeypatch):
    from sklearn.metrics import balanced_accuracy_score

    from transferbench.model import prompt as prompt_module

    config = PromptConfig(prompt_length=4, steps=6, batch_size=4, eval_every=2, lr=0.1, bf16=False,
                          select_metric="balanced_accuracy")
    split = _split(backbone, config)
    verbalizer = Verbalizer(backbone, [["bad"], ["good", "great"]], config.cosine_scale)
    seen = []
    original = prompt_module.predict

    def recording(*args, **kwargs):
        predictions = original(*args, **kwargs)
        seen.append(balanced_accuracy_score(LABELS, predictions))
        return predictions

    monkeypatch.setattr(prompt_module, "predict", recording)
    trained = train_prompt(backbone, split, split, verbalizer, config, seed=0)
    assert len(seen) == 3 and trained.dev_accuracy == pytest.approx(max(seen))
    assert trained.best_step == 2 * (seen.index(max(seen)) + 1)


def test_predict_many_matches_one_prompt_at_a_time(backbone):
    from transferbench.model.prompt import predict_many

    config = PromptConfig(prompt_length=4, eval_batch_size=8, bf16=False)
    split = _split(backbone, config)
    verbalizer = Verbalizer(backbone, [["bad"], ["good"]], config.cosine_scale)
    torch.manual_seed(0)
    prompts = torch.randn(3, 4, backbone.hidden_size)
    many = predict_many(backbone, prompts, split, verbalizer, config)
    for k in range(3):
        assert (many[k] == predict(backbone, prompts[k], split, verbalizer, config)).all()


def test_inputs_longer_than_the_backbone_positions_are_refused(backbone):
    config = PromptConfig(prompt_length=4)
    dataset = datasets.Dataset.from_dict({"text": ["good"], "text_pair": [""], "label": [1]})
    with pytest.raises(TransferbenchError, match="exceeds the 128 positions"):
        encode_split(backbone, dataset, max_length=124, prompt_length=config.prompt_length)


def test_without_dev_the_final_prompt_is_returned(backbone):
    config = PromptConfig(prompt_length=4, steps=4, batch_size=4, eval_every=4, lr=0.1)
    split = _split(backbone, config)
    verbalizer = Verbalizer(backbone, [["bad"], ["good"]], config.cosine_scale)
    with_dev = train_prompt(backbone, split, split, verbalizer, config, seed=0)  # one eval, at the last step
    without = train_prompt(backbone, split, None, verbalizer, config, seed=0)
    assert torch.equal(with_dev.prompt, without.prompt) and without.best_step == 4


def test_device_cuda_without_a_gpu_is_one_error_line(capsys):
    import torch

    from transferbench.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    code = main(["run", "-i", "random", "--suite", "smoke", "--device", "cuda"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "no CUDA GPU" in lines[0], err


def test_auto_device_on_a_cpu_machine_is_the_cpu():
    import torch

    from transferbench.model.backbone import resolve_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"


def _jobs(backbone, config, seeds, flip=()):
    """Training jobs on TEXTS (labels flipped for the seeds in `flip`, so jobs differ in data)."""
    split = _split(backbone, config)
    jobs = []
    for seed in seeds:
        labels = [1 - y for y in LABELS] if seed in flip else LABELS
        dataset = datasets.Dataset.from_dict({"text": TEXTS[: 20 + seed], "text_pair": [""] * (20 + seed),
                                              "label": labels[: 20 + seed]})
        train = encode_split(backbone, dataset, config.max_length)
        jobs.append(TrainJob(train, split, Verbalizer(backbone, [["bad"], ["good", "great"]], config.cosine_scale), seed))
    return jobs


def test_one_job_trains_exactly_like_train_prompt(backbone):
    job = _jobs(backbone, CONFIG, [2])[0]
    alone = train_prompt(backbone, job.train, job.dev, job.verbalizer, CONFIG, seed=2)
    [together] = train_prompts(backbone, [job], CONFIG)
    assert torch.equal(alone.prompt, together.prompt) and alone.losses == together.losses


def test_prompts_trained_together_follow_their_own_trajectories(backbone):
    """Each prompt gets its own loss's gradient: trained with others it matches training alone (fp32,
    so only the padded batch shape differs), and a neighbour with opposite labels does not pull it."""
    config = PromptConfig(prompt_length=4, steps=6, batch_size=4, eval_every=3, lr=0.1, bf16=False)
    jobs = _jobs(backbone, config, [0, 1, 5], flip={1})
    together = train_prompts(backbone, jobs, config)
    for job, got in zip(jobs, together):
        alone = train_prompt(backbone, job.train, job.dev, job.verbalizer, config, seed=job.seed)
        assert torch.allclose(got.prompt, alone.prompt, atol=1e-4), job.seed
        assert got.best_step == alone.best_step
        assert got.losses == pytest.approx(alone.losses, abs=1e-4)


def test_prompts_trained_together_are_deterministic(backbone):
    jobs = _jobs(backbone, CONFIG, [0, 3])
    a, b = train_prompts(backbone, jobs, CONFIG), train_prompts(backbone, jobs, CONFIG)
    assert all(torch.equal(x.prompt, y.prompt) and x.losses == y.losses for x, y in zip(a, b))


def test_frozen_linears_in_bf16_are_bit_identical_to_autocast_and_restored(backbone):
    """`Backbone.linears_in` holds the reduced-precision copy autocast would make at every pass:
    outputs and prompt gradients are bit-identical, and the float32 weights come back after."""
    from transferbench.model.prompt import initial_prompt

    split = _split(backbone, CONFIG)
    batch = split.batch(list(range(8)), backbone.tokenizer.pad_token_id)
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}

    def step(cast_once: bool):
        prompt = initial_prompt(backbone, 4, 0).requires_grad_(True)
        with backbone.linears_in(torch.bfloat16) if cast_once else contextlib.nullcontext():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                hidden = prompted_forward(backbone, prompt, batch).hidden
            hidden.float().pow(2).mean().backward()
            if cast_once:  # nested blocks are free and keep the copies
                with backbone.linears_in(torch.bfloat16):
                    assert backbone.encoder.encoder.layer[0].intermediate.dense.weight.dtype == torch.bfloat16
        return hidden.detach(), prompt.grad

    (h1, g1), (h2, g2) = step(False), step(True)
    assert torch.equal(h1, h2) and torch.equal(g1, g2)
    for key, value in backbone.model.state_dict().items():
        assert value.dtype == before[key].dtype and torch.equal(value, before[key]), key


def test_auto_kernels_come_from_the_measured_table():
    from transferbench.model.kernels import AUTO_KERNELS, resolve_train_attention

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_train_attention("auto", cpu, "bf16") == AUTO_KERNELS["cpu", "bf16"][0]
    assert resolve_train_attention("auto", cpu, "fp32") == AUTO_KERNELS["cpu", "fp32"][0]
    assert resolve_train_attention("auto", cuda, "bf16") == "sdpa"
    assert resolve_train_attention("sdpa", cpu, "bf16") == "sdpa"
    assert resolve_train_attention("eager-compiled", cpu, "bf16") == "eager-compiled"
    with pytest.raises(TransferbenchError, match="--train-attention must be one of auto, sdpa, eager, eager-compiled"):
        resolve_train_attention("flash", cpu, "bf16")


def test_run_config_and_cli_offer_exactly_the_training_kernels():
    from typing import get_args

    from transferbench.model.kernels import TRAIN_ATTENTION
    from transferbench.run_config import RunConfig

    assert get_args(RunConfig.model_fields["train_attention"].annotation) == TRAIN_ATTENTION


@pytest.mark.parametrize("baseline, kernel", [("sdpa", "eager"), ("eager", "eager-compiled")])
def test_training_kernel_trains_like_its_baseline_within_rounding_and_deterministically(backbone, baseline, kernel):
    """`eager` computes the attention `sdpa` computes, and `eager-compiled` the forward pass `eager`
    runs (compiled by torch.compile): the losses along the way agree to rounding (the prompts
    themselves can drift apart on this random backbone, whose tiny gradients AdamW turns into whole
    lr-sized steps), each kernel gives the same prompt for the same seed every time, and the
    encoder is left as it was (its own sdpa attention, its own uncompiled forward)."""
    job = _jobs(backbone, CONFIG, [1])[0]

    def trained(name):
        return train_prompt(backbone, job.train, job.dev, job.verbalizer, CONFIG, seed=1, attention=name)

    reference, first, second = trained(baseline), trained(kernel), trained(kernel)
    assert torch.equal(first.prompt, second.prompt) and first.losses == second.losses
    assert reference.losses == pytest.approx(first.losses, abs=0.01)
    assert "forward" not in vars(backbone.encoder) and backbone.encoder.config._attn_implementation == "sdpa"


def test_run_config_and_cli_offer_exactly_the_evaluation_kernels():
    from typing import get_args

    from transferbench.model.kernels import EVAL_KERNEL, check_eval_kernel
    from transferbench.run_config import RunConfig

    assert get_args(RunConfig.model_fields["eval_kernel"].annotation) == ("auto", *EVAL_KERNEL)
    with pytest.raises(TransferbenchError, match="--eval-kernel must be one of auto, autocast, compiled, not 'jit'"):
        check_eval_kernel("jit")


@pytest.mark.parametrize("bf16", [True, False], ids=["bf16", "fp32"])
def test_compiled_evaluation_predicts_like_autocast_and_leaves_the_encoder_alone(backbone, bf16):
    """The compiled kernel (a frozen copy of the encoder in the reduced precision, compiled by
    torch.compile) scores the same logits as the encoder under autocast up to rounding, so it
    predicts the same labels wherever the margin exceeds that rounding; it gives the same
    predictions every time, for one prompt and for many (`predict_many`); dev selection runs on it;
    and the encoder itself keeps its weights, its dtype and its uncompiled forward."""
    from transferbench.model.kernels import evaluation
    from transferbench.model.prompt import predict_many

    config = PromptConfig(prompt_length=4, eval_batch_size=8, bf16=bf16)
    split = _split(backbone, config)
    verbalizer = Verbalizer(backbone, [["bad"], ["good"]], config.cosine_scale)
    torch.manual_seed(0)
    prompts = torch.randn(3, 4, backbone.hidden_size)
    before = {k: v.clone() for k, v in backbone.encoder.state_dict().items()}
    batch = split.batch(list(range(len(split))), backbone.tokenizer.pad_token_id)
    with torch.no_grad():
        logits = {}
        for kernel in ("autocast", "compiled"):
            with evaluation(backbone, config, kernel) as encoder:
                logits[kernel] = verbalizer.logits(prompted_forward(backbone, prompts[0], batch, encoder))
    assert encoder is not None and encoder is not backbone.encoder
    # bf16 keeps 8 bits of mantissa: 1 % of the logits' scale (cosine x 20, or the MLM head's)
    tolerance = (0.01 if bf16 else 1e-4) * logits["autocast"].abs().max().item()
    torch.testing.assert_close(logits["compiled"], logits["autocast"], atol=tolerance, rtol=0)
    margin = (logits["autocast"][:, 1] - logits["autocast"][:, 0]).abs() > 2 * tolerance
    assert margin.sum() >= len(split) // 2  # the comparison below covers most examples
    one = predict(backbone, prompts[0], split, verbalizer, config, "compiled")
    assert (one == predict(backbone, prompts[0], split, verbalizer, config, "compiled")).all()
    autocast_one = predict(backbone, prompts[0], split, verbalizer, config)
    assert (one[margin.numpy()] == autocast_one[margin.numpy()]).all()
    many = predict_many(backbone, prompts, split, verbalizer, config, "compiled")
    assert (many == predict_many(backbone, prompts, split, verbalizer, config, "compiled")).all()
    job = _jobs(backbone, CONFIG, [1])[0]
    trained = [train_prompt(backbone, job.train, job.dev, job.verbalizer, CONFIG, seed=1, eval_kernel="compiled")
               for _ in range(2)]
    assert torch.equal(trained[0].prompt, trained[1].prompt) and trained[0].best_step == trained[1].best_step
    for key, value in backbone.encoder.state_dict().items():
        assert value.dtype == before[key].dtype and torch.equal(value, before[key]), key
    assert "forward" not in vars(backbone.encoder)
