"""Refactors keep the numbers: `transferbench run --indicator all --suite smoke` writes result files
whose scores, transfer, metrics and run configuration equal a stored copy.

The run starts from a cold cache (only the downloaded data and model are shared) with one thread
per unit, so every prompt and cell is trained here, the same way on every machine of a kind: a
warm cache could hold prompts trained with other thread counts (cache keys leave threads out),
whose rounding moves the smoke reference's borderline target admissions.

Numbers are bit-identical only between machines whose kernels compute alike: the same precision
and the same instructions (`transferbench.model.precision.numerics_kind`: `bf16-amx_bf16` on an Intel
Xeon with AMX, `bf16-avx512_bf16` on an AMD EPYC with AVX512-BF16, `fp32-AVX2` on a CPU without bf16
instructions). So `tests/data/` keeps one copy per (training attention, numerics kind), and the test
compares with the copy of this machine's kind; on a kind without a copy it is skipped, saying how
to write one (`python tests/test_results_unchanged.py --write KERNEL`, on that machine).

- `smoke_all_results.json.gz` (sdpa) and `smoke_all_results_eager.json.gz` (eager): `bf16-amx_bf16`,
  written on 2026-11-26 from main, and checked against main at commit 172d4fb (before the registry /
  module redesign of issue 14) run the same way: every entry equal except the 6 skill_overlap /
  skill_on ones, which moved on purpose when skill neurons were read at the [MASK] + prompt
  positions of the reference code (issue 13); the sdpa copy passing unchanged with the frozen
  linear weights held in bf16 showed that this moved no number.
- `smoke_all_results__<kernel>__bf16-avx512_bf16.json.gz`: written on 2026-12-03 on an AMD EPYC
  (Zen 4) with this module's `--write`, from the commit that added the precision policy (which
  changed no bf16 number: the AMX copies still pass on AMX machines).

The manifest's `precision` record (its reason names the CPU's flags) is left out of the comparison:
the copy is chosen by the numerics kind. Regenerate a copy only for a change that is meant to move
a number, and say so in the commit.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import pytest

from transferbench.cli import main
from transferbench.json_trees import first_difference

DATA = Path(__file__).parent / "data"
KERNELS = ("sdpa", "eager")
# copies written before they were named by their numerics kind
NAMED_BEFORE = {("sdpa", "bf16-amx_bf16"): DATA / "smoke_all_results.json.gz",
                ("eager", "bf16-amx_bf16"): DATA / "smoke_all_results_eager.json.gz"}


def stored_copy(kernel: str, kind: str) -> Path:
    """The stored copy of the smoke results for `kernel` on machines of numerics `kind`."""
    return NAMED_BEFORE.get((kernel, kind), DATA / f"smoke_all_results__{kernel}__{kind}.json.gz")


def this_numerics_kind() -> str:
    """The numerics kind a default `--device cpu` run computes in here (`--precision auto`)."""
    import torch

    from transferbench.model.precision import numerics_kind, resolve_precision

    cpu = torch.device("cpu")
    return numerics_kind(resolve_precision("auto", cpu), cpu)
COMMAND = ["run", "--indicator", "all", "--suite", "smoke", "--unit-threads", "1", "--device", "cpu", "--submit"]
COMPARED = ("indicator", "suite", "backbone", "transfer_kind", "tasks", "seeds", "scores", "transfer", "metrics",
            "reference", "excluded_targets", "families", "transfer_per_seed")


def stored_fields(result: dict) -> dict:
    """What must not move: everything but the volatile parts of the manifest (time, versions, git)
    and the indicator's code identity (a hash of its source file: it moves with any edit of that
    file, and was added after the copies were written)."""
    config = {key: value for key, value in result["manifest"]["config"].items() if key != "precision"}
    fields = {key: result[key] for key in COMPARED}
    fields["indicator"] = {key: value for key, value in result["indicator"].items() if key != "code"}
    return {**fields, "manifest": {"config": config, "data": result["manifest"]["data"]}}


def without_reference_hash(name: str, fields: dict) -> tuple[str, dict]:
    """A re-measured reference has the same numbers but a new hash (its bundle records when and
    how fast it was built), so the hash is left out of the file name and the fields compared."""
    config = {key: value for key, value in fields["manifest"]["config"].items() if key != "reference"}
    return (re.sub(r"__ref-[0-9a-f]+\.json$", ".json", name),
            {**{key: value for key, value in fields.items() if key != "reference"},
             "manifest": {**fields["manifest"], "config": config}})


def test_the_reference_hash_is_left_out_of_names_and_fields():
    name, fields = without_reference_hash("smoke__minilm__zero_shot__random__seeds-0__ref-cb5a33ea.json",
                                          {"reference": "cb5a", "scores": {}, "manifest": {"config": {"reference": "cb5a", "seeds": [0]}}})
    assert name == "smoke__minilm__zero_shot__random__seeds-0.json"
    assert fields == {"scores": {}, "manifest": {"config": {"seeds": [0]}}}


def produce(kernel: str, real_cache: Path, folder: Path) -> dict[str, dict]:
    """Run COMMAND with `kernel` in `folder` from a cold cache but for the downloads and the unpacked
    model (see the module docstring): the prompts, cells, smoke reference and indicator artifacts
    are all computed by this run. Returns the stored fields of each result file, by file name."""
    import os

    cache = folder / "cache"
    cache.mkdir(parents=True)
    for child in real_cache.iterdir():
        if child.name in ("downloads", "models"):
            (cache / child.name).symlink_to(child)
    previous, where = os.environ.get("TRANSFERBENCH_CACHE"), Path.cwd()
    os.environ["TRANSFERBENCH_CACHE"] = str(cache)
    os.chdir(folder)
    try:
        assert main([*COMMAND, "--train-attention", kernel]) == 0
    finally:
        os.chdir(where)
        if previous is None:
            del os.environ["TRANSFERBENCH_CACHE"]
        else:
            os.environ["TRANSFERBENCH_CACHE"] = previous
    return {path.name: stored_fields(json.loads(path.read_text())) for path in sorted((folder / "submissions").glob("*.json"))}


@pytest.mark.integration
@pytest.mark.parametrize("kernel", KERNELS)
def test_smoke_results_equal_the_stored_copy(real_cache, tmp_path, capsys, kernel):
    kind = this_numerics_kind()
    path = stored_copy(kernel, kind)
    if not path.is_file():
        pytest.skip(f"no stored smoke results for numerics kind {kind} (copies: "
                    f"{', '.join(sorted(p.name for p in DATA.glob('smoke_all_results*.json.gz')))}); write one on "
                    f"such a machine with `python tests/test_results_unchanged.py --write {kernel}`")
    results = produce(kernel, real_cache, tmp_path)
    capsys.readouterr()
    produced = dict(without_reference_hash(name, fields) for name, fields in results.items())
    stored = dict(without_reference_hash(name, fields)
                  for name, fields in json.loads(gzip.decompress(path.read_bytes())).items())
    assert len(stored) == 39  # 13 indicators x 3 transfer kinds
    # every stored result is produced again; indicators added since the copy was written (e.g.
    # label_overlap) add files of their own, which this test does not pin
    assert not sorted(set(stored) - set(produced)), sorted(set(stored) - set(produced))
    for name in stored:
        assert not first_difference(stored[name], produced[name]), f"{name}: {first_difference(stored[name], produced[name])}"


if __name__ == "__main__":  # python tests/test_results_unchanged.py --write sdpa
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="write the stored smoke results of this machine's numerics kind")
    parser.add_argument("--write", choices=KERNELS, required=True, help="training attention of the run")
    parser.add_argument("--cache", type=Path, default=os.environ.get("TRANSFERBENCH_TEST_CACHE"),
                        help="a cache holding the downloads and the unpacked model (default: $TRANSFERBENCH_TEST_CACHE)")
    args = parser.parse_args()
    if args.cache is None:
        parser.error("give --cache (or set TRANSFERBENCH_TEST_CACHE): a cache with the downloads and the unpacked model")
    target = stored_copy(args.write, this_numerics_kind())
    with tempfile.TemporaryDirectory() as scratch:
        fields = produce(args.write, args.cache, Path(scratch))
    target.write_bytes(gzip.compress(json.dumps(fields, sort_keys=True).encode(), mtime=0))
    print(f"wrote {target} ({len(fields)} result files)")
