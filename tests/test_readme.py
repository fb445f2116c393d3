"""The README is the front door: its commands must work as a user types them.

Every ``isingmoe`` line of the README's shell blocks is parsed by the real command line (options
exist, values have the right type and choice); the cheap ones are run as written in a fresh folder;
the install lines name extras that exist and the test command is the one CI runs; the library
example runs as written.
"""

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ising_moe.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _command_lines() -> list[str]:
    lines = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.split(" # ")[0].strip()
            if line.startswith("isingmoe "):
                lines.append(line)
    return lines


COMMANDS = _command_lines()


def _parse(args: list[str]) -> None:
    name, *rest = args
    main.commands[name].make_context(name, rest)


def test_readme_has_the_commands():
    assert len(COMMANDS) >= 15
    names = {shlex.split(c)[1] for c in COMMANDS}
    assert {"exact", "simulate", "sweep", "train", "extract", "measure", "fit", "import", "export"} <= names


@pytest.mark.parametrize("line", COMMANDS)
def test_every_readme_command_parses(line):
    """Options and values are checked by the real parser (no work is done)."""
    _parse(shlex.split(line)[1:])


def test_unknown_option_is_caught_by_the_same_check():
    """Negative control: the parse check rejects what a user could not type."""
    with pytest.raises(click.exceptions.NoSuchOption):
        _parse(["exact", "--no-such-option"])
    with pytest.raises(click.exceptions.BadParameter):
        _parse(["simulate", "--update", "no-such-update"])


@pytest.mark.parametrize("verb", ["exact", "simulate"])
def test_cheap_readme_commands_run_as_written(verb, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = next(c for c in COMMANDS if shlex.split(c)[1] == verb)
    result = CliRunner().invoke(main, shlex.split(line)[1:])
    assert result.exit_code == 0, result.output


def test_install_lines_name_existing_extras_and_the_ci_test_command():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    quick = _blocks("bash")[0]
    named = set()
    for spec in re.findall(r'pip install -e "\.\[([a-z,]+)\]"', quick):
        named |= set(spec.split(","))
    assert named and named <= extras
    test_command = "python -m pytest -n 2 -q"
    assert test_command in quick and test_command in (ROOT / ".ci" / "run").read_text()
    ci_extras = re.search(r'pip install --quiet -e "\.\[([a-z,]+)\]"', (ROOT / ".ci" / "run").read_text()).group(1)
    assert set(ci_extras.split(",")) == set(re.search(r'\.\[([a-z,]+)\]" && python -m pytest', quick).group(1)
                                            .split(","))


@pytest.mark.slow
def test_library_example_runs_as_written():
    example = next(b for b in _blocks("python") if "ChainMaxLikelihood" in b)
    result = subprocess.run([sys.executable, "-c", example], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
