"""The precision policy (`transferbench.model.precision`): bf16 only where the hardware computes it
natively, and the precision keys what it computes."""

from __future__ import annotations

import pytest
import torch

from transferbench.errors import TransferbenchError
from transferbench.model import precision as precision_module
from transferbench.model.precision import cpu_bf16, resolve_precision

CPU = torch.device("cpu")
ZEN4 = {"fpu", "avx2", "avx512f", "avx512bw", "avx512_bf16"}
SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
ZEN3 = {"fpu", "sse4_2", "avx", "avx2", "fma"}


@pytest.mark.parametrize("flags, native", [(ZEN4, True), (SAPPHIRE_RAPIDS, True), (ZEN3, False), (set(), False)],
                         ids=["avx512_bf16", "amx_bf16", "avx2-only", "no-flags"])
def test_native_bf16_follows_the_cpu_flags(flags, native):
    has, why = cpu_bf16(flags, environ={}, capability="AVX512" if "avx512f" in flags else "AVX2")
    assert has is native
    assert ("bf16 would be emulated" in why) is not native


def test_a_capped_instruction_set_means_no_native_bf16():
    """ONEDNN_MAX_CPU_ISA or ATEN_CPU_CAPABILITY below the bf16 instructions makes PyTorch emulate them."""
    assert cpu_bf16(ZEN4, environ={"ONEDNN_MAX_CPU_ISA": "AVX2"}, capability="AVX512")[0] is False
    assert cpu_bf16(ZEN4, environ={"ONEDNN_MAX_CPU_ISA": "avx512_core"}, capability="AVX512")[0] is False
    assert cpu_bf16(ZEN4, environ={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, capability="AVX512")[0] is True
    assert cpu_bf16(SAPPHIRE_RAPIDS, environ={"ONEDNN_MAX_CPU_ISA": "ALL"}, capability="AVX512")[0] is True
    assert cpu_bf16(ZEN4, environ={}, capability="AVX2")[0] is False


@pytest.mark.parametrize("flags, auto", [(ZEN4, "bf16"), (ZEN3, "fp32")], ids=["avx512_bf16", "avx2-only"])
def test_resolve_precision_on_a_cpu(monkeypatch, flags, auto):
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    chosen = resolve_precision("auto", CPU)
    assert (chosen.name, chosen.native, chosen.requested) == (auto, auto, "auto")
    assert chosen.reduced is (auto == "bf16")
    assert resolve_precision("fp32", CPU).name == "fp32"
    forced = resolve_precision("bf16", CPU)
    assert forced.name == "bf16" and ("slow here" in forced.reason) is (auto == "fp32")
    # a suite that turns reduced precision off wins over any request
    assert resolve_precision("bf16", CPU, suite_allows_reduced=False).name == "fp32"
    assert set(chosen.record()) == {"precision", "requested", "native", "reason"}


def test_an_unknown_precision_is_one_line():
    with pytest.raises(TransferbenchError, match="--precision must be one of auto, bf16, fp32, not 'fp8'"):
        resolve_precision("fp8", CPU)


def test_the_run_config_offers_exactly_the_precisions():
    from typing import get_args

    from transferbench.model.precision import PRECISIONS
    from transferbench.run_config import RunConfig

    assert get_args(RunConfig.model_fields["precision"].annotation) == PRECISIONS
    assert RunConfig().precision == "auto"


def test_precision_keys_every_artifact_and_turns_autocast_off(tiny_suite, tiny_backbone, tmp_path):
    """An fp32 benchmark's prompts, null-prompt cells, embeddings and reference folder are keyed
    apart from a bf16 one's; bf16 keys stay what they always were (no precision entry)."""
    from transferbench.pipeline.artifacts import Address
    from transferbench.pipeline.runner import Benchmark
    from transferbench.store import ArtifactStore
    from transferbench.tasks import load_suite

    suite = load_suite(str(tiny_suite))

    def bench(precision: str) -> Benchmark:
        return Benchmark(suite, str(tiny_backbone), [0], store=ArtifactStore(tmp_path / "store"),
                         precision=precision, train_attention="sdpa", eval_kernel="autocast")

    bf16, fp32 = bench("bf16"), bench("fp32")
    assert bf16.config.bf16 and not fp32.config.bf16
    assert bf16.precision.name == "bf16" and fp32.precision.name == "fp32"
    assert "precision" not in bf16.device_key() and fp32.device_key()["precision"] == "fp32"
    task = next(iter(bf16.tasks))
    target = list(bf16.tasks)[1]
    assert bf16.key("prompts", Address(task, 0)) != fp32.key("prompts", Address(task, 0))
    assert bf16.key("zero_shot", Address(target, 0)) != fp32.key("zero_shot", Address(target, 0))
    assert bf16.key("text_embedding", Address(task)) != fp32.key("text_embedding", Address(task))
    assert bf16.context.config.bf16 is True and fp32.context.config.bf16 is False
