"""Store keys stay byte-identical: the keys of every kind of artifact, computed on main before the
artifacts became declarations (issue 28), pinned for the smoke suite on the packaged backbone (a
user's cache and the shipped reference are addressed by them). Computing a key loads the task data
(its hash keys every artifact) but no model and trains nothing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from transferbench.pipeline.artifacts import Address
from transferbench.pipeline.runner import Benchmark
from transferbench.reference.bundle import BundleArtifacts
from transferbench.store import ArtifactStore
from transferbench.tasks import load_suite

SOURCE, TARGET = "rt_sentiment", "vader_amazon"
# written by the code of main at 9ea62d3 (`Benchmark._prompt_key`, `_zero_shot_key`, ...)
PINNED = {
    "default": {
        "prompts": "c390a27d24e7ed419433",
        "zero_shot": "d7f86179a1f7e6e9faf2",
        "zero_shot_null": "5fd1720a9416731914fe",
        "init": "26dc4a5dcc45ebc2f3c4",
        "init_null": "71ee9e1c20db32efa120",
        "skill_neurons": "146fc1d9e19f3159f834",
        "skill_neurons_prompt": "0d898d43c06d1649aeb2",
        "mask_activations": "16c4daa716c117c2088c",
        "mask_activations_task": "738f21f5402e7ca849fe",
        "text_embedding": "11368e6ead8d5e6c4fa3",
        "pair_outputs": "5959ba346708fa501928",
        "probe_ranking": "2a187547b22eae534184",
        "probe": "ba0074e0a28e5354b4c7"
    },
    "fp32": {
        "prompts": "d8a60c9c58d73ee46102",
        "zero_shot": "949be8a6765b59390ba7",
        "zero_shot_null": "9cd217f3561fe02677b9",
        "init": "bc7fef07bcded635be76",
        "init_null": "f7a2a93e59784ba08aba",
        "skill_neurons": "605255a463b9687a7ac8",
        "skill_neurons_prompt": "52fc594111cd86ae6763",
        "mask_activations": "a52e9e7beca8ffea2d6f",
        "mask_activations_task": "60064d41eea9cb8b7ff5",
        "text_embedding": "cf53705be0af8cab7bf4",
        "pair_outputs": "2d03e9de06a76ab425c5",
        "probe_ranking": "0a0d8b66f20b13baa783",
        "probe": "160dced3f53907d50329"
    },
    "eager_ppp2_compiled": {
        "prompts": "002591628af309d87a2f",
        "zero_shot": "8bc813e1ac7600560078",
        "zero_shot_null": "766b25b704c339920350",
        "init": "1b422c21d383bfdfcc4f",
        "init_null": "8e8a7a94d2600fdedf6a",
        "skill_neurons": "c53eed9505e4c65c1e1c",
        "skill_neurons_prompt": "ee98aebfc64cfb97d58f",
        "mask_activations": "e9735e65d4b6e801cf17",
        "mask_activations_task": "8ef3968bf6dd8e838926",
        "text_embedding": "11368e6ead8d5e6c4fa3",
        "pair_outputs": "01955acabed3bf658ab1",
        "probe_ranking": "7c2049447283d2ca5f5b",
        "probe": "ba0074e0a28e5354b4c7"
    },
    "shipped_eager_build": {
        "prompts": "687fe7693d7fca1142bb",
        "skill_neurons": "5a88d27f2bada3b8dddd",
        "init": "70b471277c84391699e6"
    }
}
SETTINGS = {"default": {}, "fp32": {"precision": "fp32"},
            "eager_ppp2_compiled": {"train_attention": "eager", "prompts_per_pass": 2, "eval_kernel": "compiled"}}


def entries():
    """(label, artifact, address, options) of every pinned key."""
    s, t = SOURCE, TARGET
    return {"prompts": ("prompts", Address(s, 1), {}),
            "zero_shot": ("zero_shot", Address(t, 1, s), {}), "zero_shot_null": ("zero_shot", Address(t, 0), {}),
            "init": ("init", Address(t, 1, s), {}), "init_null": ("init", Address(t, 0), {}),
            "skill_neurons": ("skill_neurons", Address(s, 0), {}),
            "skill_neurons_prompt": ("skill_neurons", Address(s, 0), {"positions": "prompt"}),
            "mask_activations": ("mask_activations", Address(s, 0), {}),
            "mask_activations_task": ("mask_activations_task", Address(s, 0), {}),
            "text_embedding": ("text_embedding", Address(s), {}), "probe": ("probe", Address(s), {}),
            "pair_outputs": ("pair_outputs", Address(t, 1, s), {}), "probe_ranking": ("probe_ranking", Address(s, 1), {})}


@pytest.fixture(scope="module")
def suite():
    return load_suite("smoke")


def bench(suite, tmp_path, supplied=None, **settings):
    kernels = {"precision": "bf16", "train_attention": "sdpa", "eval_kernel": "autocast", **settings}
    return Benchmark(suite, "minilm", [0, 1], store=ArtifactStore(tmp_path / "store"), supplied=supplied, **kernels)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_every_kind_of_artifact_keeps_its_store_key(suite, tmp_path, setting):
    b = bench(suite, tmp_path, **SETTINGS[setting])
    keys = {label: b.key(name, address, **options) for label, (name, address, options) in entries().items()}
    assert keys == PINNED[setting]


def test_artifacts_of_a_supplied_prompt_keep_their_keys(suite, tmp_path):
    """Prompts a bundle supplies are keyed by its build record (here: eager attention)."""
    shipped = SimpleNamespace(root=tmp_path, prompts={f"{SOURCE}/0": None}, predictions={},
                              info={"build": {"train_attention": "eager"}})
    b = bench(suite, tmp_path, supplied=BundleArtifacts(shipped))
    keys = {"prompts": b.key("prompts", Address(SOURCE, 0)), "skill_neurons": b.key("skill_neurons", Address(SOURCE, 0)),
            "init": b.key("init", Address(TARGET, 0, SOURCE))}
    assert keys == PINNED["shipped_eager_build"]
