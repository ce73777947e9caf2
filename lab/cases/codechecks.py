"""Which `python: module:function` checks may run: a case file names code, so running it is the
user's deliberate choice, never the case file's.

A python check imports a module and calls one of its functions with the model's output. Case
files come from colleagues, production samples and perturbation runs (and a run directory's
cases.json from anywhere), so `os:system` or `shutil:rmtree` in one must not run because it is
there. A check's function is resolved only from

- the lab's own example checks (`lab.variance.examples`, which the bundled cases use);
- a module the user allowed: `--allow-module NAME` (or a path to a `.py` file) on the command
  that runs the checks, or `allow_modules: [NAME, ...]` in a `lab sample` config;
- a module beside the case file: `NAME.py` in the case file's own directory (loaded from that
  file, never from elsewhere on the path).

Anything else is refused before a run starts, with one line saying how to allow it. Loading a
case file imports nothing (lab.cases.specs only checks the "module:function" shape); the
commands that run checks (lab sample, lab library run, lab quickstart, lab sample-report, lab
retry) call `resolve_checks` first. A run directory's settings.json is not trusted to allow a
module: rebuilding a report or estimating retries needs the flag again.

    policy = CodePolicy.from_settings(["mychecks"], case_file="evals/cases.jsonl")
    resolve_checks(cases, policy)        # LabError (one line) for a module not allowed
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from lab.cases.checks import MODULE_NAME, PythonCheck, split_target
from lab.cases.model import Case
from lab.errors import LabError

#: modules of the lab's own example checks: allowed without asking (the bundled cases use them)
BUILTIN_MODULES = frozenset({"lab.variance.examples"})


@dataclass(frozen=True)
class CodePolicy:
    """The modules whose functions a python check may call."""

    #: module names the user allowed (importable from the Python path)
    modules: frozenset[str] = frozenset()
    #: module name -> a .py file the user named, or one beside the case file
    files: tuple[tuple[str, Path], ...] = ()
    #: what to say to allow another module (the flag and, where there is one, the config key)
    how: str = "--allow-module {name}"

    @classmethod
    def from_settings(
        cls,
        allowed: Iterable[str] = (),
        case_file: str | Path | None = None,
        how: str = "--allow-module {name}",
    ) -> CodePolicy:
        """From `--allow-module` / `allow_modules` entries (module names or .py paths) and the
        case file (its directory's NAME.py modules); None for a bundled set or a run's
        cases.json, whose directory is not the user's choice."""
        names: set[str] = set()
        files: dict[str, Path] = {}
        for entry in allowed:
            entry = str(entry).strip()
            if entry.endswith(".py"):
                path = Path(entry).expanduser()
                if not path.is_file():
                    raise LabError(f"--allow-module {entry}: no such file")
                files[path.stem] = path.resolve()
            elif MODULE_NAME.match(entry):
                names.add(entry)
            else:
                raise LabError(
                    f"--allow-module {entry!r}: expected a module name (pkg.module) or a .py file"
                )
        beside: dict[str, Path] = {}
        if case_file is not None:
            folder = Path(case_file).expanduser().parent  # a file's (or a dataset dir's) folder
            if folder.is_dir():
                beside = {p.stem: p.resolve() for p in sorted(folder.glob("*.py"))}
        merged = beside | files  # a file the user named wins over one that only lies beside
        return cls(frozenset(names), tuple(sorted(merged.items())), how)

    def allows(self, module: str) -> bool:
        return module in BUILTIN_MODULES or module in self.modules or module in dict(self.files)

    def load(self, module: str) -> ModuleType:
        """The module a check names, if allowed (LabError otherwise)."""
        if module in BUILTIN_MODULES or module in self.modules:
            try:
                return importlib.import_module(module)
            except ImportError as exc:
                raise LabError(f"cannot import {module!r}: {exc}") from None
        path = dict(self.files).get(module)
        if path is None:
            raise LabError(
                f"module {module!r} is code named by the case file, and running it was not "
                f"allowed; if you trust it, pass {self.how.format(name=module)}"
            )
        return _load_file(module, path)


def _load_file(name: str, path: Path) -> ModuleType:
    """A module from its file, under a name of its own (`os.py` beside a case file is that
    file, not the standard library's os)."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    key = f"lab_case_checks_{digest}.{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise LabError(f"{path}: cannot load it as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's module failed to import: one line
        del sys.modules[key]
        raise LabError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from None
    return module


def resolve_checks(cases: list[Case], policy: CodePolicy) -> None:
    """Give every python check of `cases` its function, from allowed modules only; LabError
    naming the case (file:line), the field and how to allow the module otherwise."""
    for case in cases:
        for index, check in enumerate(case.checks):
            if not isinstance(check, PythonCheck) or check.fn is not None:
                continue
            where = f"{case.source or case.id}: field 'checks[{index}].function'"
            target = str(check.spec.get("function", ""))
            parts = split_target(target)
            if parts is None:  # specs.py checked the shape; a hand-made Check may not have
                raise LabError(f"{where}: expected 'module:function', got {target!r}")
            module_name, attr = parts
            try:
                module = policy.load(module_name)
            except LabError as exc:
                raise LabError(f"{where}: {target}: {exc}") from None
            fn: Any = getattr(module, attr, None)
            if not callable(fn):
                raise LabError(f"{where}: {module_name!r} has no callable {attr!r}")
            check.fn = fn
