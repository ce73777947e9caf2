"""Without Ray installed: `import lab` and the local sweep and sample paths never import it,
and `--ray` (lab sweep, lab sample, lab library run) is a one-line error naming the extra
(before the config is read or a directory touched)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def test_import_lab_and_the_sweep_path_do_not_import_ray() -> None:
    code = (
        "import sys, lab, lab.cli, lab.determinism.sweep, lab.scale.sweep, lab.scale.sample, "
        "lab.variance.runner, lab.longtail.library, lab.bench.replicas; "
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# `lab` with Ray hidden from importlib (as where the extra is not installed), through the real
# entry point (lab.cli.main turns a LabError into one line and exit 2).
WITHOUT_RAY = """
import importlib.util, sys
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == "ray" else real(name, *a)
from lab.cli import main
sys.argv = ["lab", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["sweep", "MISSING.yaml", "--ray", "local"], "determinism-lab[ray]"),
        (["sample", "--cases", "bundled:basic", "--ray", "local"], "determinism-lab[ray]"),
        (["library", "run", "--library", "MISSING.yaml", "--ray"], "determinism-lab[ray]"),
        (["sample", "--cases", "bundled:basic", "--replicas", "2"], "--replicas needs --ray"),
    ],
)
def test_ray_flag_without_ray_is_one_line_naming_the_extra(
    tmp_path: Path, command: list[str], expected: str
) -> None:
    out = tmp_path / "run"
    args = [str(tmp_path / a) if a.startswith("MISSING") else a for a in command]
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_RAY, *args, "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0] and "--r" in lines[0]
    assert not out.exists()
