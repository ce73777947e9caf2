"""A retired option name end to end on the real model: `lab generate --n 2` (the name before
`--k`) gives the records `--k 2` gives, and says its new name on stderr once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from lab.cli import cli

pytestmark = pytest.mark.model


def generate(*extra: str) -> tuple[list[dict[str, Any]], str]:
    args = ["generate", "--backend", "hf", "--prompt", "Name a colour.", "--max-tokens", "6",
            "--temperature", "1.0", "--seed", "3", "--json", *extra]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (result.exception, result.output)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return [{k: v for k, v in r.items() if k != "timings"} for r in records], result.stderr


def test_generate_old_n_is_new_k() -> None:
    new, new_err = generate("--k", "2")
    old, old_err = generate("--n", "2")
    assert [r["sample_index"] for r in new] == [0, 1]  # the option took effect (default 1)
    assert old == new
    assert old_err.count("--n is now --k") == 1 and "is now" not in new_err
