"""The package's layers, checked from the source: every arrow runs down, nothing goes round.

    .venv/bin/python -m pytest -q tests/unit/test_layers.py

Every module of lab/ (and kernels/, installed as lab.kernels) belongs to one layer of LAYERS,
lowest first. The test reads every module's imports with `ast`, at module level and inside
functions and `if TYPE_CHECKING:` blocks alike, and checks that

- a lab module imports only its own layer or lower ones;
- the packages (and top-level modules) of one layer form no cycle, and no two modules import
  each other in any way: so no import sits inside a function to dodge a cycle (the imports
  left inside functions are there to keep an optional heavy stack - torch, transformers, vllm,
  sentence-transformers, httpx - or the engine code out of `import lab` and `lab --help`);
- no module is longer than MAX_LINES lines;
- every module has a layer, so a new package must be placed in the table first.

The command modules (lab/commands/<capability>.py: click commands, listed in lab/cli.py) are
the cli layer's package: a command may join capabilities, so it cannot live inside one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 500

#: lowest first; a module belongs to the layer of its longest listed prefix ("lab" is the
#: package's __init__ only: a new top-level module must be listed)
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # no lab imports but these: errors, the one reader of os.environ, devices, text / YAML io
    ("foundation", ("lab", "lab.errors", "lab.settings", "lab.devices", "lab.yamlio",
                    "lab.safetext", "lab.console")),
    # next to the engines: batch-invariant kernels, model registry, random-weight checkpoints
    ("engines", ("lab.kernels", "lab.models", "lab.tinymodels")),
    # one interface, its records, hf / vllm / openai, prompt rendering, the managed server,
    # the HTTP client, the registry of names
    ("backends", ("lab.backends",)),
    # what several capabilities share: cases, run directories, the page shell, the environment
    ("shared", ("lab.cases", "lab.rundir", "lab.store", "lab.runkinds", "lab.samplerun",
                "lab.report", "lab.envinfo", "lab.progress")),
    # what the lab does; lab.agents (multi-step tool-use trajectories) and lab.scale (Ray
    # scale-out) come here too
    ("capabilities", ("lab.determinism", "lab.variance", "lab.longtail", "lab.comparison",
                      "lab.serving", "lab.bench", "lab.quickstart", "lab.demo", "lab.agents",
                      "lab.scale")),
    # parsing and printing: the group, every capability's commands, their shared options
    ("cli", ("lab.cli", "lab.commands", "lab.cli_options")),
]  # fmt: skip


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for lab/ and kernels/ (as lab.kernels)."""
    out = {}
    for path in sorted([*(ROOT / "lab").rglob("*.py"), *(ROOT / "kernels").glob("*.py")]):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[0] == "kernels":
            parts = ["lab", *parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = module_files()


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or (prefix != "lab" and module.startswith(prefix + "."))
            if inside and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def unit_of(module: str) -> str:
    """What the no-cycle rule compares: lab.<package> or the top-level module."""
    return ".".join(module.split(".")[:2])


def imports_of(module: str) -> list[tuple[str, int]]:
    """(imported lab module, line) for every import in the file, wherever it sits."""
    path = MODULES[module]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                stem = package[: len(package) - node.level + 1]
                base = ".".join(stem + ([node.module] if node.module else []))
            # `from lab import models` imports the module lab.models
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.append((name, node.lineno))
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in MODULES if layer_of(m) is None)
    assert not missing, f"add to LAYERS in tests/unit/test_layers.py: {missing}"


def test_imports_run_down_the_layers() -> None:
    upward: list[str] = []
    for module, imports in GRAPH.items():
        here = layer_of(module)
        for target, line in imports:
            there = layer_of(target)
            if here is not None and there is not None and there > here:
                upward.append(
                    f"{MODULES[module].relative_to(ROOT)}:{line}: {module} ({LAYERS[here][0]}) "
                    f"imports {target} ({LAYERS[there][0]})"
                )
    assert not upward, "imports from a layer above:\n" + "\n".join(dict.fromkeys(upward))


def test_no_import_cycles_between_modules() -> None:
    graph = {m: {t for t, _ in imports} for m, imports in GRAPH.items()}
    assert cycles(graph) == []


@pytest.mark.parametrize("layer", [name for name, _ in LAYERS])
def test_packages_of_one_layer_form_no_cycle(layer: str) -> None:
    number = [name for name, _ in LAYERS].index(layer)
    graph: dict[str, set[str]] = {}
    for module, imports in GRAPH.items():
        if layer_of(module) != number:
            continue
        for target, _ in imports:
            if layer_of(target) == number and unit_of(target) != unit_of(module):
                graph.setdefault(unit_of(module), set()).add(unit_of(target))
    assert cycles(graph) == []


def test_no_module_is_longer_than_the_limit() -> None:
    files = [*MODULES.values(), *(ROOT / "scripts").glob("*.py")]
    long = {
        str(p.relative_to(ROOT)): n
        for p in files
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_module_says_what_it_does() -> None:
    silent = [
        str(p.relative_to(ROOT))
        for p in MODULES.values()
        if p.read_text().strip() and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert not silent, f"modules without a docstring: {silent}"


def test_the_checker_sees_an_upward_import_and_a_cycle() -> None:
    """Negative control: the rules above would catch what they are for."""
    assert layer_of("lab.backends.hf") < layer_of("lab.variance.runner")  # type: ignore[operator]
    assert layer_of("lab.commands.serving") == len(LAYERS) - 1
    assert layer_of("lab.newthing") is None  # unlisted: test_every_module_has_a_layer fails
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    # a function-level import is seen like a top-level one
    assert ("lab.variance.runner", 0) not in GRAPH["lab.longtail.library"]
    assert "lab.variance.runner" in {t for t, _ in GRAPH["lab.longtail.library"]}
