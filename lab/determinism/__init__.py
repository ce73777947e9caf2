"""Temperature-zero nondeterminism: compare generations, find where and how they diverge.

config.py      SweepConfig: prompts, test mode, the grid of axes (YAML)
grid.py        cells, their keys, the reference cell, grouping by engine
modes.py       which requests make up a cell's batch (identical, single, mixed, prefix, shuffled)
sweep.py       `lab sweep`: run a grid one finished cell at a time, resumably
divergence.py  two generations of one prompt: first divergent token, logprob deltas, top gap
metrics.py     a sweep's metrics: unique completions, TARr/TARa, attribution, accuracy
report.py      `lab report`: a sweep's metrics.json, report.md and report.html
(its click commands, lab sweep / report / fragility: lab/commands/determinism.py)
"""
