"""The CLI's commands, one module per capability: click parsing and printing, each module's
COMMANDS listed in lab/cli.py. Here, not inside the capability packages, because a command
may join capabilities (`lab sample` runs agents or n-of-k, `lab sweep` prompt or agent sweeps,
on Ray or not), and only the CLI layer may import across them.
"""
