"""Built-in transferability indicators, one module each, written against the same public API
(`transferbench.scoring.indicator.Indicator`) that a user's own indicator uses.

Installed as the package `transferbench.indicators` (see pyproject.toml)."""
