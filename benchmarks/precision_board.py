"""The board at another precision: each built-in's mean rho from a results folder (e.g. artifacts
computed in fp32) next to the official board's (bf16), with the official rank interval and where
the other precision's mean rho would rank among the official rows.

    transferbench run --indicator all --precision fp32 --results-dir /tmp/fp32
    python benchmarks/precision_board.py /tmp/fp32/submissions

Prints a markdown table (docs/protocol.md, "Precision") and exits 1 when a row's rank falls outside
the official rank interval.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
from pathlib import Path


def board(*args: str) -> dict:
    """The board as `transferbench leaderboard --format json` prints it (run in the checkout: the
    official rows are its submissions/)."""
    from transferbench.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if main(["leaderboard", "--format", "json", *args]) != 0:
            raise SystemExit("transferbench leaderboard failed")
    return json.loads(out.getvalue())


def compare(official_tables: list[dict], local_tables: list[dict]) -> list[dict]:
    """One row per (transfer kind, indicator) of the local rows: the official mean rho and rank
    interval (from the official board alone: local rows would change the intervals), the local mean
    rho, and the rank it would take among the official rows of the other indicators."""
    rows = []
    official_by_kind = {(t["suite"], t["backbone"], t["transfer_kind"]): t for t in official_tables}
    for table in local_tables:
        base_table = official_by_kind.get((table["suite"], table["backbone"], table["transfer_kind"]))
        if base_table is None:
            continue
        official = {row["indicator"]: row for row in base_table["rows"] if not row["local"]}
        for row in (r for r in table["rows"] if r["local"]):
            base = official.get(row["indicator"])
            if base is None:
                continue
            others = [r["mean_spearman"] for name, r in official.items() if name != row["indicator"]]
            rank = 1 + sum(value > row["mean_spearman"] for value in others)
            rows.append({"kind": table["transfer_kind"], "indicator": row["indicator"],
                         "official": base["mean_spearman"], "other": row["mean_spearman"],
                         "rank_low": base["rank_low"], "rank_high": base["rank_high"], "rank": rank,
                         "inside": base["rank_low"] <= rank <= base["rank_high"]})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results folder's submissions/ (your `run` output)")
    parser.add_argument("--label", default="fp32", help="column title of the other precision")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as empty:  # the official board alone: no user results folder
        official = board("--results-dir", empty)["tables"]
    rows = compare(official, board("--results-dir", str(args.results.parent))["tables"])
    print(f"| transfer kind | indicator | mean ρ bf16 (official) | mean ρ {args.label} | official rank 95% | "
          f"{args.label} rank among official rows |")
    print("| --- | --- | ---: | ---: | :---: | :---: |")
    for r in rows:
        print(f"| {r['kind']} | {r['indicator']} | {r['official']:.3f} | {r['other']:.3f} | "
              f"{r['rank_low']}–{r['rank_high']} | {r['rank']}{'' if r['inside'] else ' (outside)'} |")
    return 0 if all(r["inside"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
