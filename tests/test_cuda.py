"""The CUDA path on a tiny random backbone: skipped on machines without a CUDA GPU (CI has none).

Run on a GPU machine with `pytest tests/test_cuda.py`; benchmarks/README.md records when it last ran.
"""

import datasets
import pytest
import torch

from transferbench.model.backbone import Backbone, tiny_backbone_folder
from transferbench.model.kernels import autocast_dtype
from transferbench.model.prompt import PromptConfig, Verbalizer, encode_split, predict, predict_many, train_prompt

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TEXTS = ["good movie", "great film", "bad movie", "terrible film", "good story", "awful plot",
         "great review", "sad story", "fine film", "bad plot"] * 3
LABELS = [1, 1, 0, 0, 1, 0, 1, 0, 1, 0] * 3
CONFIG = PromptConfig(prompt_length=4, steps=6, batch_size=4, eval_every=3, lr=0.1)


@pytest.fixture(scope="module", params=[False, True], ids=["cosine-head", "mlm-head"])
def folder(request, tmp_path_factory):
    return tiny_backbone_folder(tmp_path_factory.mktemp("tiny"), mlm_head=request.param)


def _train(backbone, seed=0):
    dataset = datasets.Dataset.from_dict({"text": TEXTS, "text_pair": [""] * len(TEXTS), "label": LABELS})
    split = encode_split(backbone, dataset, CONFIG.max_length)
    verbalizer = Verbalizer(backbone, [["bad"], ["good", "great"]], CONFIG.cosine_scale)
    return split, verbalizer, train_prompt(backbone, split, split, verbalizer, CONFIG, seed=seed)


def test_backbone_and_prompt_live_on_the_gpu(folder):
    backbone = Backbone(str(folder), device="cuda")
    assert all(p.device.type == "cuda" for p in backbone.model.parameters())
    split, verbalizer, trained = _train(backbone)
    assert trained.prompt.device.type == "cpu", "trained prompts come back on the CPU, ready for the store"
    assert all(torch.isfinite(torch.tensor(trained.losses)))
    # bf16 where the GPU has it (every GPU since Ampere), else fp16 with a gradient scaler
    assert autocast_dtype(torch.device("cuda")) in (torch.bfloat16, torch.float16)


def test_same_seed_gives_the_same_prompt_on_the_gpu(folder):
    backbone = Backbone(str(folder), device="cuda")
    _, _, a = _train(backbone, seed=3)
    _, _, b = _train(backbone, seed=3)
    assert torch.equal(a.prompt, b.prompt) and a.losses == b.losses


def test_gpu_predictions_agree_with_cpu(folder):
    cpu, gpu = Backbone(str(folder), device="cpu"), Backbone(str(folder), device="cuda")
    split, verbalizer, trained = _train(cpu)
    on_cpu = predict(cpu, trained.prompt, split, verbalizer, CONFIG)
    split_gpu, verbalizer_gpu, _ = _train(gpu)
    on_gpu = predict(gpu, trained.prompt, split_gpu, verbalizer_gpu, CONFIG)
    agree = (torch.as_tensor(on_cpu) == torch.as_tensor(on_gpu)).float().mean().item()
    assert agree >= 0.9, f"CPU and GPU predictions agree on {agree:.0%} of examples"


def test_per_example_prompts_match_one_at_a_time_on_the_gpu(folder):
    backbone = Backbone(str(folder), device="cuda")
    split, verbalizer, trained = _train(backbone)
    other = trained.prompt.flip(0)
    many = predict_many(backbone, torch.stack([trained.prompt, other]), split, verbalizer, CONFIG)
    one = [predict(backbone, p, split, verbalizer, CONFIG) for p in (trained.prompt, other)]
    for got, expected in zip(many, one):
        agree = (torch.as_tensor(got) == torch.as_tensor(expected)).float().mean().item()
        assert agree >= 0.9


def test_compiled_evaluation_on_the_gpu_agrees_with_autocast(folder):
    """`--eval-kernel compiled` on a GPU: the frozen copy lives on the GPU, in the autocast dtype,
    and predicts like the default kernel (not yet run on a GPU: no device was lent when it was written)."""
    backbone = Backbone(str(folder), device="cuda")
    split, verbalizer, trained = _train(backbone)
    compiled = predict(backbone, trained.prompt, split, verbalizer, CONFIG, "compiled")
    default = predict(backbone, trained.prompt, split, verbalizer, CONFIG)
    copy = backbone.compiled_encoder(autocast_dtype(backbone.device))
    assert all(p.device.type == "cuda" and p.dtype == autocast_dtype(backbone.device) for p in copy.parameters())
    agree = (torch.as_tensor(compiled) == torch.as_tensor(default)).float().mean().item()
    assert agree >= 0.9, f"compiled and autocast predictions agree on {agree:.0%} of examples"
