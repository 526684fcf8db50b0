"""Analyses beside the benchmark: skill neurons of the trained prompts and the `neurons` command.

`skill_neurons` holds the analyses of Wang et al. (2022) over a benchmark's prompts;
`inspect_neurons` is the command that writes them to a folder with a README.
"""
