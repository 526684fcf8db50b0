"""`json_trees.first_difference`: the one "stored against recomputed" walk of result files, the
reference's tables and the golden smoke run, each with its own tolerance."""

from __future__ import annotations

import math

from transferbench.json_trees import first_difference


def test_names_the_path_of_the_first_difference():
    tree = {"a": [1, {"b": 2.0}], "c": "x"}
    assert first_difference(tree, {"a": [1, {"b": 2.0}], "c": "x"}) == ""
    assert first_difference(tree, {"a": [1, {"b": 2.5}], "c": "x"}) == "a[1].b: stored 2.0, recomputed 2.5"
    assert first_difference(tree, {"a": [1, {"b": 2.0}], "c": "y"}) == "c: stored 'x', recomputed 'y'"
    assert first_difference({"a": 1}, {"c": 1}) == "a: only in stored"
    assert first_difference({"a": 1}, {"a": 1, "b": 2}, "metrics") == "metrics.b: only in recomputed"
    assert first_difference({"a": [1, 2]}, {"a": [1]}, "tasks.json") == "tasks.json.a: 2 items stored, 1 recomputed"


def test_numbers_agree_within_the_tolerance_and_nan_with_nan():
    assert first_difference({"m": 0.5}, {"m": 0.5 + 1e-10}) == "m: stored 0.5, recomputed 0.5000000001"
    assert first_difference({"m": 0.5}, {"m": 0.5 + 1e-10}, tolerance=1e-9) == ""
    assert first_difference([0.5, 1.0], [0.5, 1.0 + 2e-6], tolerance=1e-6) == "[1]: stored 1.0, recomputed 1.000002"
    assert first_difference({"m": math.nan}, {"m": math.nan}) == ""
    assert first_difference({"m": math.nan}, {"m": 0.0}, tolerance=1.0) == "m: stored nan, recomputed 0.0"
    assert first_difference(1, 1.0) == ""


def test_a_bool_is_a_value_not_a_number():
    assert first_difference({"ok": True}, {"ok": 1}, tolerance=1.0) == "ok: stored True, recomputed 1"
    assert first_difference({"ok": False}, {"ok": False}) == ""
