"""Stage 5, scoring: indicators predict transfer for every pair from sealed task views.

`indicator` is the indicator API (the `Indicator` base class, its registry and contract check,
`TaskView`); `sandbox` runs a plugin's `score` in a child process with a time limit and a strict
channel; `estimators` holds the literature's transferability estimators (LogME, LEEP, NCE,
H-score). Built-in indicators live in `transferbench.indicators` (the repository's `indicators/`).
Imports `pipeline` for the artifacts' descriptions, never the reference.
"""
