"""One option vocabulary across `lab`'s verbs (no model): every click command's visible options
are walked, and no two names meaning one idea may be visible anywhere (SYNONYMS); each name
retired for one release still parses to the new name's value, says so on stderr, and is
absent from --help.

    .venv/bin/python -m pytest -q tests/unit/test_cli_vocabulary.py
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import click
import pytest
from click.testing import CliRunner

from lab.cli import cli

#: Groups of option names that mean one idea; at most one of each may be visible in the CLI.
#: Written from what the options do, not from lab/cli_options.py.
SYNONYMS: list[set[str]] = [
    {"--k", "--n", "--samples", "--samples-per-case"},  # samples per case / prompt
    {"--gate", "--floor", "--thresholds-gate"},  # NAME=VALUE success thresholds
    {"--retry-failed", "--retry-errors", "--rerun-failed"},  # on resume, run failures again
    {"--no-retry-failed", "--no-retry-errors"},
    {"--cpus-per-replica", "--cpus-per-actor", "--cpus-per-worker"},  # Ray CPUs per engine
    {"--num-cases", "--prompts", "--num-prompts", "--n-cases"},  # how many cases a bench takes
    {"--cases", "--dataset", "--case-file"},  # which cases a run takes (a source)
    {"--json-out", "--output-json", "--json-file"},  # also write the result to a JSON file
    {"--rounds", "--repeats", "--repetitions"},  # timed repetitions of a bench
    {"--max-tokens", "--max-new-tokens"},
    {"--tp", "--tensor-parallel-size"},
    {"--out", "--out-dir", "--output"},
]

#: (command path, its required arguments, a retired name and its value, the parameter, the
#: value expected from the retired name, the stderr line)
RETIRED: list[tuple[list[str], list[str], list[str], str, Any, str]] = [
    (["generate"], ["--prompt", "x"], ["--n", "3"], "k", 3, "--n is now --k"),
    (
        ["library", "add"], ["RUN"], ["--floor", "min_mean=0.6", "--floor", "min_p5=0.1"],
        "gate", ("min_mean=0.6", "min_p5=0.1"), "--floor is now --gate",
    ),
    (
        ["load"], [], ["--no-retry-errors"], "retry_failed", False,
        "--no-retry-errors is now --no-retry-failed",
    ),
    (
        ["sweep"], ["c.yaml"], ["--retry-failed"], "retry_failed", True, "",
    ),  # a control: the new name, no line
    (
        ["sweep"], ["c.yaml"], ["--cpus-per-actor", "3"], "cpus_per_replica", 3,
        "--cpus-per-actor is now --cpus-per-replica",
    ),
    (["bench", "kernels"], [], ["--prompts", "2"], "cases", 2, "--prompts is now --num-cases"),
    (["bench", "kernels"], [], ["--cases", "3"], "cases", 3, "--cases is now --num-cases"),
    (["bench", "kernels"], [], ["--repeats", "5"], "rounds", 5, "--repeats is now --rounds"),
    (["bench", "layercast"], [], ["--prompts", "7"], "cases", 7, "--prompts is now --num-cases"),
    (["bench", "roof"], [], ["--cases", "3"], "cases", 3, "--cases is now --num-cases"),
    (["bench", "agents"], [], ["--cases", "3"], "cases", 3, "--cases is now --num-cases"),
    (["bench", "embeddings"], [], ["--cases", "3"], "cases", 3, "--cases is now --num-cases"),
    (["fragility"], ["."], ["--json", "f.json"], "json_path", "f.json", "--json is now --json-out"),
    (["demo"], [], ["--json", "d.json"], "json_path", "d.json", "--json is now --json-out"),
]  # fmt: skip


def commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> Iterator[Any]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


def visible_names() -> dict[str, set[str]]:
    """Every visible option name -> the commands showing it."""
    out: dict[str, set[str]] = {}
    for path, command in commands():
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for name in (*param.opts, *param.secondary_opts):
                    out.setdefault(name, set()).add(" ".join(path))
    return out


def command_at(path: list[str]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def test_one_visible_name_per_idea() -> None:
    names = visible_names()
    clashes = []
    for group in SYNONYMS:
        shown = {n: sorted(names[n]) for n in group if n in names}
        if len(shown) > 1:
            clashes.append(shown)
    assert clashes == []


def test_the_check_sees_a_clash() -> None:
    """Negative control: a second name for one idea on one more command is caught."""

    @click.command("extra")
    @click.option("--repeats", type=int)
    def extra(repeats: int) -> None:
        """A command that still uses a retired name."""

    cli.add_command(extra)
    try:
        names = visible_names()
        assert names["--repeats"] == {"extra"} and "--rounds" in names
        with pytest.raises(AssertionError):
            test_one_visible_name_per_idea()
    finally:
        cli.commands.pop("extra")


@pytest.mark.parametrize("path, base, given, param, expected, line", RETIRED)
def test_a_retired_name_still_parses_and_says_its_new_name(
    path: list[str], base: list[str], given: list[str], param: str, expected: Any, line: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    command = command_at(path)
    assert command.make_context("lab", [*base, *given]).params[param] == expected
    err = capsys.readouterr().err
    assert (line in err) if line else "is now" not in err
    # without it: the default (not the value given), and no line
    assert command.make_context("lab", list(base)).params[param] != expected
    assert "is now" not in capsys.readouterr().err


@pytest.mark.parametrize("path, base, given, param, expected, line", RETIRED)
def test_a_retired_name_is_hidden_from_help(
    path: list[str], base: list[str], given: list[str], param: str, expected: Any, line: str
) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    names = set(re.findall(r"(?<![\w-])--[a-z0-9-]+", result.output))
    if line:
        retired, new = line.split()[0], line.split()[-1]
        assert retired not in names and new in names, names
    else:
        assert given[0] in names


def test_old_and_new_name_together_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["bench", "kernels", "--repeats", "2", "--rounds", "3"])
    assert result.exit_code == 2
    assert "--repeats and --rounds are one option" in result.output
    two_old = CliRunner().invoke(cli, ["bench", "kernels", "--prompts", "2", "--cases", "3"])
    assert two_old.exit_code == 2 and "one option; give --num-cases only" in two_old.output


def option_kind(option: click.Option) -> str:
    """What a name asks for: a flag, or a value of one kind (a count, a path, text)."""
    if option.is_flag:
        return "flag"
    if isinstance(option.type, click.types.IntParamType):
        return "count"
    return "path" if isinstance(option.type, click.Path) else "value"


def kinds_by_name() -> dict[str, dict[str, set[str]]]:
    """Every visible option name -> its kind -> the commands where it has that kind."""
    out: dict[str, dict[str, set[str]]] = {}
    for path, command in commands():
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for name in param.opts:
                    kinds = out.setdefault(name, {})
                    kinds.setdefault(option_kind(param), set()).add(" ".join(path))
    return out


#: names whose value is a path in some verbs and free text in others (click.Path is only a
#: check made earlier): one meaning, a directory to write
PATH_OR_TEXT = {"--out"}


def test_one_meaning_per_name() -> None:
    """A name is a flag everywhere or takes the same kind of value everywhere: `--json` does
    not print JSON in one verb and name a file in another, `--cases` is not a count in one
    verb and a case source in another."""
    clashes = {}
    for name, kinds in kinds_by_name().items():
        shown = set(kinds) - ({"path", "value"} if name in PATH_OR_TEXT else set())
        if len(kinds) > 1 and (name not in PATH_OR_TEXT or shown):
            clashes[name] = {k: sorted(v) for k, v in kinds.items()}
    assert clashes == {}


def test_the_meaning_check_sees_a_clash() -> None:
    """Negative control: `--json` taking a file name on one more command is caught."""

    @click.command("extra")
    @click.option("--json", "json_path", type=click.Path())
    def extra(json_path: str) -> None:
        """A command whose --json names a file while others print JSON."""

    cli.add_command(extra)
    try:
        assert set(kinds_by_name()["--json"]) == {"flag", "path"}
        with pytest.raises(AssertionError):
            test_one_meaning_per_name()
    finally:
        cli.commands.pop("extra")


def test_engine_options_one_default_each_across_verbs() -> None:
    """The engine verbs (generate, serve, load) show one default per engine option, and the
    n-of-k runs (sample, library run, quickstart) take the same options with their own
    SampleConfig defaults written in --help (prefix caching on: k samples share a prompt)."""
    shown: dict[str, dict[str, Any]] = {}
    for path in (["generate"], ["serve"], ["load"]):
        for p in command_at(path).params:
            if isinstance(p, click.Option) and p.name not in ("backend", "engine_args"):
                shown.setdefault(p.opts[0], {})[path[0]] = p.default
    engine = {o for o, by in shown.items() if len(by) == 3}
    assert {"--model", "--dtype", "--tp", "--prefix-caching", "--max-num-seqs"} <= engine
    assert all(len(set(map(repr, shown[o].values()))) == 1 for o in engine), shown
    run = CliRunner().invoke(cli, ["sample", "--help"]).output
    assert "vLLM prefix caching. Default prefix-caching." in " ".join(run.split())
    for path in (["sample"], ["library", "run"], ["quickstart"]):
        opts = {o for p in command_at(path).params for o in getattr(p, "opts", ())}
        assert engine <= opts, (path, engine - opts)
