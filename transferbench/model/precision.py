"""Which floating-point precision a run computes in: the one the hardware computes natively.

bfloat16 autocast is ~3x float32 for a matrix product on CPUs with bf16 instructions, and ~60x
*slower* on CPUs without them, where oneDNN emulates it (figures in benchmarks/README.md,
"Precision by hardware"). So `--precision auto` (the default) asks the hardware:

- CUDA: bf16 where `torch.cuda.is_bf16_supported()`, else fp16 (with a gradient scaler);
- Apple MPS: fp16, as before;
- CPU: bf16 when the CPU's flags show AMX-BF16 or AVX512-BF16 *and* PyTorch may use them (neither
  `ONEDNN_MAX_CPU_ISA` nor `ATEN_CPU_CAPABILITY` caps it below those instructions), else fp32.
  Flags are read from /proc/cpuinfo (Linux); elsewhere the CPU counts as having no native bf16.

`--precision bf16` forces the reduced precision (the device's, `kernels.autocast_dtype`) and
`--precision fp32` forces float32. A suite whose `training.bf16` is false always runs fp32.

The precision changes what is computed (rounding), so it keys every artifact (an fp32 prompt is not
a bf16 one: `runner.Benchmark`), and it is printed before compute and recorded in every manifest.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache

import torch

from transferbench.errors import TransferbenchError

PRECISIONS = ("auto", "bf16", "fp32")

# CPU flags (Linux /proc/cpuinfo names) of instructions that compute bf16 products natively.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

# oneDNN's instruction-set names in increasing order (its ONEDNN_MAX_CPU_ISA values). A cap below
# AVX512_CORE_BF16 leaves oneDNN without bf16 instructions: it then emulates bf16 products.
_ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
                "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16")
_FIRST_BF16_ISA = _ONEDNN_ISAS.index("AVX512_CORE_BF16")


@dataclass(frozen=True)
class Precision:
    """The precision a run computes in (`name`: bf16, fp16 or fp32), what was asked for, what the
    device computes natively, and why, in words (printed before compute, kept in manifests)."""

    name: str
    requested: str
    native: str
    reason: str

    @property
    def reduced(self) -> bool:
        """Autocast in the device's reduced precision (`kernels.autocast_dtype`), i.e. `config.bf16`."""
        return self.name != "fp32"

    def record(self) -> dict[str, str]:
        return {"precision": self.name, "requested": self.requested, "native": self.native, "reason": self.reason}

    def phrase(self) -> str:
        return f"precision {self.name} ({self.reason})"


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo is not there)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> str:
    """The CPU's model name (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_bf16(flags: frozenset[str] | set[str] | None = None, environ: dict[str, str] | None = None,
             capability: str | None = None) -> tuple[bool, str]:
    """(whether this CPU computes bf16 natively for PyTorch, the evidence in words).

    `flags`, `environ` and `capability` (`torch.backends.cpu.get_cpu_capability()`) default to this
    machine's; tests pass their own."""
    flags = cpu_flags() if flags is None else frozenset(flags)
    environ = os.environ if environ is None else environ
    capability = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    found = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    if not found:
        return False, "no AMX-BF16 or AVX512-BF16 in the CPU's flags: bf16 would be emulated"
    cap = environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap and cap not in ("ALL", "DEFAULT") and (cap not in _ONEDNN_ISAS or _ONEDNN_ISAS.index(cap) < _FIRST_BF16_ISA):
        return False, f"ONEDNN_MAX_CPU_ISA={cap} keeps oneDNN from the CPU's {found[0]}: bf16 would be emulated"
    if not capability.upper().startswith(("AVX512", "AMX")):
        return False, f"PyTorch runs its {capability} kernels here (ATEN_CPU_CAPABILITY?): bf16 would be emulated"
    return True, f"the CPU has {found[0]}"


def resolve_precision(requested: str, device: torch.device, suite_allows_reduced: bool = True) -> Precision:
    """The precision of a run on `device` for `requested` (`PRECISIONS`), see the module docstring."""
    if requested not in PRECISIONS:
        raise TransferbenchError(f"--precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    if device.type == "cuda":
        native = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        evidence = "the GPU computes bf16" if native == "bf16" else "the GPU has no bf16: fp16 with loss scaling"
    elif device.type == "mps":
        native, evidence = "fp16", "Apple MPS"
    else:
        has_bf16, evidence = cpu_bf16()
        native = "bf16" if has_bf16 else "fp32"
    if not suite_allows_reduced:
        return Precision("fp32", requested, native, "the suite's training.bf16 is false")
    if requested == "fp32":
        return Precision("fp32", requested, native, "asked for with --precision fp32")
    if requested == "bf16":
        reduced = "fp16" if native == "fp16" else "bf16"
        note = "" if native != "fp32" else "; slow here: " + evidence
        return Precision(reduced, requested, native, f"asked for with --precision bf16{note}")
    return Precision(native, requested, native, f"auto: {evidence}")


def numerics_kind(precision: Precision, device: torch.device) -> str:
    """A name for the kernels that compute a run, e.g. `bf16-amx_bf16`, `bf16-avx512_bf16`,
    `fp32-AVX2`: runs of one kind give bit-identical numbers (at equal threads per unit); other
    kinds round differently (tests/test_results_unchanged.py keeps one stored copy per kind)."""
    if device.type != "cpu":
        return f"{precision.name}-{device.type}"
    if precision.name == "bf16" and cpu_bf16()[0]:
        flags = cpu_flags()
        return "bf16-" + next(flag for flag in BF16_CPU_FLAGS if flag in flags)
    return f"{precision.name}-{torch.backends.cpu.get_cpu_capability()}"
