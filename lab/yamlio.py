"""Text and YAML files read with one-line errors naming the file and line.

Case files (lab.cases), sweep configs (lab.determinism.config), `lab sample` configs and cohort
files all read through here, so every one of them treats bad input the same way: invalid UTF-8
names the line (a UTF-8 BOM is dropped), a YAML syntax error is one line instead of PyYAML's
caret drawing, and a key given twice in one mapping is an error (YAML would keep the last one
silently).

    from lab.yamlio import load_yaml_file
    data = load_yaml_file("config.yaml")      # LabError "config.yaml:7: ..." on bad input
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab.errors import LabError


def read_text(path: Path) -> str:
    """A case file's text (a UTF-8 BOM is dropped); invalid UTF-8 is a LabError naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LabError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save the file as UTF-8"
        ) from None


def yaml_error(path: str | Path, exc: yaml.YAMLError) -> LabError:
    """One line naming the file and line of a YAML syntax error (PyYAML's own text spans
    several lines, with a caret drawing)."""
    mark = getattr(exc, "problem_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    return LabError(f"{path}{line}: not valid YAML ({problem})")


def check_yaml_duplicate_keys(node: Any, path: str | Path) -> None:
    """A key given twice in one mapping: YAML loaders keep the last one silently (a second
    `checks:` or `axes:` would drop the first without a word), so it is an error here."""
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise LabError(
                        f"{path}:{key.start_mark.line + 1}: key {key.value!r} appears twice in "
                        "one mapping; YAML would keep only the last"
                    )
                seen.add(key.value)
            check_yaml_duplicate_keys(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            check_yaml_duplicate_keys(item, path)


def compose_yaml(text: str, path: str | Path) -> Any:
    """The YAML node tree of `text` (read from `path`; its marks give line numbers), checked:
    syntax errors and duplicate keys are one-line errors. construct_yaml() gives the data."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None
    check_yaml_duplicate_keys(root, path)
    return root


def construct_yaml(root: Any, path: str | Path) -> Any:
    """The Python data of a node tree from compose_yaml (parsed once, for data and lines)."""
    if root is None:
        return None
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None
    finally:
        loader.dispose()


def load_yaml_text(text: str, path: str | Path) -> Any:
    """Parse YAML text read from `path`: syntax errors and duplicate keys are one-line errors."""
    return construct_yaml(compose_yaml(text, path), path)


def load_yaml_file(path: str | Path) -> Any:
    """A YAML file's data; unreadable, non-UTF-8 or malformed files (duplicate keys included)
    are one-line LabErrors."""
    path = Path(path)
    try:
        text = read_text(path)
    except OSError as exc:
        raise LabError(f"{path}: cannot read ({exc.strerror})") from None
    return load_yaml_text(text, path)
