"""The FLOP counts the benchmark scripts' printed rates rest on (benchmarks/README.md quotes them).

The scripts are not a package: each is loaded from its file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_profile_step_counts_the_products_a_run_executed():
    profile_step = _script("profile_step")
    a, b, bias = torch.randn(24, 40), torch.randn(40, 56), torch.randn(56)
    batched = torch.randn(3, 24, 40), torch.randn(3, 40, 8)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as run:
        torch.addmm(bias, a, b)
        torch.mm(a, b)
        torch.mm(a, b)
        torch.bmm(*batched)
        torch.relu(a)  # not a matrix product: not counted
    gflop, seconds = profile_step.product_rate(run)
    expected = 3 * (2 * 24 * 40 * 56) + 2 * 3 * 24 * 40 * 8
    assert round(gflop * 1e9) == expected
    assert seconds > 0


def test_speed_vs_peft_step_flops_is_forward_plus_backward_to_the_activations():
    speed = _script("speed_vs_peft")
    params, layers, hidden, shape = 1_000, 2, 8, (3, 5)
    forward = speed.forward_flops(shape, params, layers, hidden)
    assert forward == 3 * (2 * params * 5 + 4 * layers * 5**2 * hidden)
    # frozen weights: the backward pass computes only the activations' gradients (2PL), and both
    # attention products' operands are activations (8 L^2 H per layer)
    assert speed.step_flops(shape, params, layers, hidden) == 3 * (4 * params * 5 + 12 * layers * 5**2 * hidden)


def test_claims_compares_pairs_and_family_transfer_from_result_files():
    import math

    import numpy as np

    from test_leaderboard import REF_FAMILIES, ref_result, synthetic_reference

    claims = _script("claims")
    ref = synthetic_reference()
    files = [ref_result(ref, name, seed=k) for k, name in
             enumerate(("activation_overlap", "embedding_similarity", "skill_overlap", "same_family"))]
    on, emb = files[0], files[1]
    a, b = on.metrics.per_target_spearman(), emb.metrics.per_target_spearman()
    shared = [t for t in a if not (math.isnan(a[t]) or math.isnan(b[t]))]
    c = claims.compare(on, emb)
    assert c["targets"] == len(shared) and c["diff"] == np.mean([a[t] - b[t] for t in shared])
    assert c["wins"] == sum(a[t] > b[t] for t in shared)
    transfer = ref.matrix("zero_shot")
    ft = claims.family_transfer(on)
    # admitted targets with same- and other-family sources: pa, pb, pc (ta's only family member tb is a source)
    within = {t: transfer.loc[[s for s in REF_FAMILIES if s != t and REF_FAMILIES[s] == REF_FAMILIES[t]], t].mean()
              for t in ("pa", "pb", "pc", "ta")}
    assert ft["targets"] == 4 and math.isclose(ft["within"], np.mean(list(within.values())))
    text = "\n".join(claims.report(files))
    assert "Su et al. Sec. 5.2: ON vs embedding similarity" in text and "skill-neuron overlap vs ON" in text
    assert "within- vs cross-family transfer" in text and "backbone tiny-bb" in text
    assert "read-out-aware" not in text  # no read-out-aware result on this board: nothing said
    readout = ref_result(ref, "activation_overlap_readout", seed=7)
    text = "\n".join(claims.report([*files, readout]))
    assert "Su et al. Sec. 5.2, read-out-aware ON vs embedding similarity" in text
    assert "ON read where the verbalizer reads vs at [MASK]" in text
    assert "skill_on read where the verbalizer reads" not in text
    # one board per (suite, backbone): a second suite's files on the same backbone get their own
    # section and never replace the first suite's (they did when the report grouped by backbone)
    other = [f.model_copy(update={"suite": "other_suite"}) for f in (files[1], files[0])]
    text = "\n".join(claims.report([*files, *other]))
    headers = [line for line in text.splitlines() if line.startswith("== ")]
    assert len(headers) == 2 and sum("suite other_suite" in h for h in headers) == 1
    sections = dict(zip(headers, text.split("== ")[1:]))
    mine = next(body for header, body in sections.items() if "other_suite" not in header)
    assert f"  activation_overlap         {claims._mean(on)}" in mine


def test_admission_stability_reruns_each_rule_on_a_bundle_of_either_protocol(monkeypatch, capsys):
    """On the shipped v1 MiniLM reference: the v1 rule under other RNG seeds reproduces the shipped
    admission of a clear target and counts a knife-edge one; `--rules` picks the rules."""
    stability = _script("admission_stability")
    folder = Path(__file__).resolve().parents[1] / "reference" / "default__minilm"
    monkeypatch.setattr(sys, "argv", ["admission_stability.py", str(folder), "--rng-seeds", "2",
                                      "--tasks", "bbc_topic", "snli", "--rules", "1,2"])
    stability.main()
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines() if line.startswith(("bbc_topic", "snli"))}
    assert rows == {"bbc_topic": ["2/2", "2/2"], "snli": ["0/2", "0/2"]}
    assert "rule v1: 1 of 2 tasks admitted under every one of 2 RNG seeds, 1 never; admitted under some seeds only: none" in out
    assert "per-cell bootstrap SE of zero_shot_gain (v2)" in out
    monkeypatch.setattr(sys, "argv", ["admission_stability.py", str(folder), "--rng-seeds", "1", "--tasks", "snli",
                                      "--rules", "2"])
    stability.main()
    out = capsys.readouterr().out
    assert "v1 admitted" not in out and "rule v2: 0 of 1 tasks" in out

    monkeypatch.setattr(sys, "argv", ["admission_stability.py", str(folder), "--rules", "1,3"])
    with pytest.raises(SystemExit) as exit_:
        stability.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--rules: comma-separated protocol versions (1, 2), got '1,3'" in err


def test_power_plans_with_each_tables_measured_sources(monkeypatch, capsys):
    """`benchmarks/power.py` on the committed board: v1 tables have 11 sources per target,
    default_v2's 35, and the plan of each table uses its own count."""
    power = _script("power")
    monkeypatch.setattr(sys, "argv", ["power.py", str(BENCHMARKS.parent / "submissions")])
    power.main()
    lines = capsys.readouterr().out.splitlines()
    v1 = next(line for line in lines if line.startswith("default / minilm / init_gain"))
    v2 = next(line for line in lines if line.startswith("default_v2 / splade-tiny / init_gain"))
    assert "9 targets of 11 sources" in v1 and "15 targets of 35 sources" in v2
    plan = lines[lines.index(v2) + 1]
    assert "targets with 35 sources each" in plan


def test_power_with_fewer_sources_per_target_measures_a_larger_sd(monkeypatch, capsys):
    """`benchmarks/power.py --sources 10` re-draws 10 of each target's 35 sources on default_v2
    (the same draw for every indicator): the per-target differences spread more, so more targets are needed."""
    power = _script("power")
    folder = BENCHMARKS.parent / "submissions"
    full = {key: value for key, value in power.subsampled_sd(folder, set(), 28, repeats=1).items() if key[0] == "default_v2"}
    fewer = {key: value for key, value in power.subsampled_sd(folder, set(), 10, repeats=3).items() if key[0] == "default_v2"}
    assert full and set(fewer) == set(full)
    assert all(fewer[key] > full[key] for key in full)
    monkeypatch.setattr(sys, "argv", ["power.py", str(folder), "--sources", "10"])
    power.main()
    lines = capsys.readouterr().out.splitlines()
    v2 = next(line for line in lines if line.startswith("default_v2 / splade-tiny / init_gain"))
    assert lines[lines.index(v2) + 1].startswith("  10 sources per target (random, 20 draws): median sd")


def test_cell_noise_shows_v2_zero_shot_cells_above_their_noise(capsys):
    """`benchmarks/cell_noise.py` on the shipped bundles: v1's zero_shot spread across sources is
    within 1.1x its cell noise on some admitted targets; v2's zero_shot_gain on none (issue 24 item 3)."""
    from transferbench.reference.bundle import read_bundle

    noise = _script("cell_noise")
    v1 = noise.signal_to_noise(read_bundle(BENCHMARKS.parent / "reference" / "default__minilm", None), "zero_shot")
    v2 = noise.signal_to_noise(read_bundle(BENCHMARKS.parent / "reference" / "default_v2__splade-tiny", None),
                               "zero_shot_gain")
    assert len(v1) == 9 and len(v2) == 15
    assert min(ratio for ratio, _ in v1.values()) < 1.1 <= min(ratio for ratio, _ in v2.values())
    assert all(0 <= share <= 1 for _, share in [*v1.values(), *v2.values()])


def test_cell_noise_names_a_folder_that_is_not_a_bundle(tmp_path, monkeypatch, capsys):
    """A folder without a reference bundle is one line naming it, exit 2, not a traceback."""
    noise = _script("cell_noise")
    monkeypatch.setattr(sys, "argv", ["cell_noise.py", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        noise.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path) in err and "MANIFEST.json" in err
