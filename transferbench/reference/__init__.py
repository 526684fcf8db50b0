"""Stage 4, the reference ground truth: measured transfer with uncertainty and admitted targets.

`protocol` holds every formula of the measured transfer (balanced accuracy, the transfer kinds,
the bootstrap, admission); `bundle` collects a reference from the pipeline's artifacts, saves and
loads hash-pinned bundles (the shipped ones live in `transferbench.references`), and verifies them
by re-running cells. Imports `tasks`, `model` and `pipeline`.
"""
