"""`transferbench reference verify` rejects every consistent edit of a bundle (the edit redone in the
tables and re-pinned with a fresh hash) and passes the untouched one; the reference's identity is
its content, not when or where it was built (issue 26, item 4)."""

from __future__ import annotations

import json
import os

import pytest

from transferbench.cli import main
from transferbench.reference import bundle as reference
from transferbench.reference import verify as verification


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def built(tmp_path, cache, tiny_backbone, tiny_suite, capsys):
    root = tmp_path / "refs"
    code, out, err = run_cli(capsys, "reference", "build", "--suite", tiny_suite, "--backbone", tiny_backbone,
                             "--root", root, "--unit-threads", 1)
    assert code == 0, err
    return root, root / reference.bundle_name("tiny", str(tiny_backbone))


def verify(capsys, tiny_suite, tiny_backbone, root, cells=5):
    return run_cli(capsys, "reference", "verify", "--suite", tiny_suite, "--backbone", tiny_backbone,
                   "--root", root, "--cells", cells)


def repin(root, folder, edit):
    """Apply `edit(loaded)` to the bundle, recompute its tables from its predictions and recorded
    protocol, and save it with a fresh pin: an edit with every hash and number consistent."""
    loaded = reference.read_bundle(folder, None)
    edit(loaded)
    loaded.tasks, loaded.transfer = reference.derive_tables(loaded.info, loaded.predictions)
    before = json.loads((root / "index.json").read_text())[folder.name]
    reference.save(loaded, folder, pin=root / "index.json")
    assert json.loads((root / "index.json").read_text())[folder.name] != before
    assert verification.recompute_problem(reference.read_bundle(folder, None)) == ""  # tables consistent


def flip(predictions, prefix):
    for key in predictions:
        if key.startswith(prefix):
            predictions[key] = 1 - predictions[key]  # every task of the tiny suite has two classes


def _labels(loaded):
    loaded.predictions["labels/pos_a"] = loaded.predictions["labels/pos_a"].copy()
    loaded.predictions["labels/pos_a"][:3] = 1 - loaded.predictions["labels/pos_a"][:3]


def _setting(path, value):
    def edit(loaded):
        loaded.info[path[0]][path[1]] = value
    return edit


EDITS = {
    "test_labels": (_labels, "labels/pos_a are not the test labels of the suite's data now (3 of 16 differ)"),
    "own_predictions": (lambda r: flip(r.predictions, "own/"), "own/"),
    "null_predictions": (lambda r: flip(r.predictions, "zero_shot/(null)/"), "zero_shot/(null)/"),
    "probe_predictions": (lambda r: flip(r.predictions, "probe/"), "probe/"),
    "admission_alpha": (_setting(("protocol", "admission_alpha"), 0.5), "protocol setting admission_alpha is 0.5"),
    "bootstrap_seed": (_setting(("protocol", "bootstrap_seed"), 7), "protocol setting bootstrap_seed is 7"),
    "n_bootstrap": (_setting(("protocol", "n_bootstrap"), 50), "protocol setting n_bootstrap is 50"),
    "test_size": (lambda r: r.info["tasks"][0].update(test_size=15), "test_size is 15"),
    "config": (_setting(("config", "init_steps"), 3), "prompt config differs"),
}


def test_the_untouched_bundle_verifies_re_running_every_kind_of_stored_prediction(built, tiny_backbone,
                                                                                   tiny_suite, capsys):
    root, folder = built
    code, out, err = verify(capsys, tiny_suite, tiny_backbone, root)
    assert code == 0, err
    assert "protocol settings" in out and "test labels match" in out
    kinds = [line.split("│")[1].strip() for line in out.splitlines() if line.count("│") >= 7]
    assert sorted(k for k in kinds if k) == sorted(verification.RERUN_KINDS), out  # one row of each kind


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_consistent_re_pinned_edit_fails_verify_with_one_line_naming_it(built, tiny_backbone, tiny_suite, capsys,
                                                                         edit):
    root, folder = built
    change, named = EDITS[edit]
    repin(root, folder, change)
    code, out, err = verify(capsys, tiny_suite, tiny_backbone, root)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert named in lines[0] and str(folder) in lines[0], lines[0]


def test_every_kind_re_runs_exactly_on_the_building_machine_without_touching_the_cache(built, tiny_backbone,
                                                                                      tiny_suite, cache):
    """The same machine and threads as the build: every kind re-runs to exactly what is stored (the
    tolerance is room for other CPU kinds, not for this one), and the user's cache is left as it was."""
    from transferbench.pipeline.executors import LocalExecutor
    from transferbench.pipeline.runner import Benchmark
    from transferbench.tasks import load_suite

    root, folder = built
    loaded = reference.read_bundle(folder, None)
    before = sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file())
    bench = Benchmark(load_suite(str(tiny_suite)), str(tiny_backbone), loaded.seeds, executor=LocalExecutor(threads=1))
    checks = verification.rerun_cells(loaded, bench, 10)
    assert sorted(c.kind for c in checks) == sorted(verification.RERUN_KINDS * 2)
    assert all(c.agreement == 1.0 and c.stored == c.recomputed and c.ok for c in checks), checks
    assert {c.key.split("/")[0] for c in checks} == {"zero_shot", "init", "own", "probe"}
    assert sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file()) == before


def test_two_builds_differing_only_in_timing_and_host_records_have_one_content_hash(built, tmp_path):
    root, folder = built
    loaded = reference.read_bundle(folder, None)
    first = loaded.hash
    loaded.info["build"].update(first_artifact_utc="2030-01-01T00:00:00+00:00", collect_seconds=99.0,
                                wall_seconds=123.4, platform="elsewhere", cpu="another CPU", git={"commit": "0" * 40})
    again = tmp_path / "again"
    assert reference.save(loaded, again) == first
    assert reference.sha256_file(again / "bundle.json") != reference.sha256_file(folder / "bundle.json")
    assert reference.read_bundle(again, first).hash == first
    # what the numbers depend on is content: another kernel record is another reference
    loaded.info["build"]["eval_kernel"] = "sdpa"
    assert reference.save(loaded, tmp_path / "other") != first


def test_two_collects_of_one_build_at_different_times_get_the_same_content_hash(cache, tiny_backbone, tiny_suite,
                                                                                 tmp_path):
    from transferbench.pipeline.runner import Benchmark
    from transferbench.tasks import load_suite

    bench = Benchmark(load_suite(str(tiny_suite)), str(tiny_backbone), [0])
    first = reference.collect(bench)
    stored = [bench.store.path(stage, key) for stage, key in bench.stored_keys(["prompts", "zero_shot", "init"])]
    for path in stored:  # as if the build had been resumed a day later
        os.utime(path, (path.stat().st_mtime + 86400, path.stat().st_mtime + 86400))
    bench.forget()
    second = reference.collect(bench)
    assert first.info["build"]["last_artifact_utc"] != second.info["build"]["last_artifact_utc"]
    assert reference.save(first, tmp_path / "a") == reference.save(second, tmp_path / "b")


def test_an_edited_build_record_must_still_match_the_manifest(built, tiny_backbone, tiny_suite, capsys):
    root, folder = built
    info = json.loads((folder / "bundle.json").read_text())
    info["build"]["wall_seconds"] = 1.0
    (folder / "bundle.json").write_text(json.dumps(info))
    code, out, err = verify(capsys, tiny_suite, tiny_backbone, root, cells=0)
    assert code == 2 and "bundle.json: its sha256 differs from MANIFEST.json" in err


def test_the_shipped_format_1_bundle_keeps_its_pinned_file_hash():
    pins = reference.pinned_hashes()
    loaded = reference.load_shipped("default", "minilm")
    assert loaded.info["format"] == 1 and "format" not in json.loads((loaded.root / "MANIFEST.json").read_text())
    assert loaded.hash == pins["default__minilm"] == reference.sha256_file(loaded.root / "MANIFEST.json")
    assert loaded.hash.startswith("de1995de793a")
    assert reference.check_shipped_root() == pins
    assert verification.recompute_problem(loaded) == ""  # its tables, with its recorded protocol
