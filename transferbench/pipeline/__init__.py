"""Stage 3, the pipeline: every artifact one declaration, one planner that computes what is missing.

`artifacts` declares each artifact (what it is per, what it depends on, its unit, key settings,
code version, cost and store stage); `units` are the pure functions that compute them; `runner`
(the planner) walks the declarations for what a run needs, keys and stores results in the
content-addressed store and serves them; `executors` run units in-process or on Ray;
`calibration` measures the cost of an example on this machine. Imports `tasks` and `model`.
"""
