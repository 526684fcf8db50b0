"""transferbench: a benchmark and leaderboard for prompt-transferability indicators.

Pipeline (data flows one way): tasks -> source prompts -> artifacts -> indicator scores
-> evaluation -> leaderboard. See README.md.
"""

__version__ = "0.1.0"
