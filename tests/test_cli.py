"""The ``momok`` entry point: every command is wired to a module with the agreed interface."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

from momok import cli
from momok.errors import InputError


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_module_has_the_interface(name):
    module = importlib.import_module(cli.COMMANDS[name][0])
    assert callable(module.configure_parser), name
    assert callable(module.run), name


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    assert "usage: momok " + name in capsys.readouterr().out


def test_user_errors_are_one_line_messages(monkeypatch, capsys):
    fake = types.ModuleType("momok_fake_command")
    fake.configure_parser = lambda parser: parser.add_argument("path")

    def run(args):
        raise InputError(args.path, "expected 3 fields, found 2", line=7)

    fake.run = run
    monkeypatch.setitem(sys.modules, "momok_fake_command", fake)
    monkeypatch.setitem(cli.COMMANDS, "fake", ("momok_fake_command", "fails on purpose"))
    assert cli.main(["fake", "data/train.txt"]) == 2
    err = capsys.readouterr().err
    assert "momok fake: error: data/train.txt:7: expected 3 fields, found 2" in err
    assert "Traceback" not in err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "momok.cli", "--help"], capture_output=True, text=True, check=True)
    for name in cli.COMMANDS:
        assert name in out.stdout
