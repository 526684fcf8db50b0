"""Stage 6, evaluation: how well an indicator's scores predict the measured transfer.

`target_metrics` are the per-target formulas (Spearman rho, NDCG, regret, family-aware
verdicts), `verdict_statistics` the table-level ones (paired tests, rank intervals, split-seed
tau), `summary` assembles an `Evaluation`, and `results` defines the result file that carries
scores, transfer, metrics and a manifest, re-derived and checked against the reference on load.
"""
