"""Packaging: every subpackage installs, and kernels/ installs as lab.kernels only."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "lab").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found <= listed, f"add to [tool.setuptools].packages: {sorted(found - listed)}"
    assert config["package-dir"]["lab.kernels"] == "kernels"
    assert "kernels" not in listed  # the bare name belongs to Hugging Face's package
