"""`edgepack --help` and every subcommand's help teach: a one-line purpose, every option
explained (with its default where it has one), worked examples and the exit codes, all
readable in an 80-column terminal."""

from __future__ import annotations

import argparse
import re

import pytest

from edgepack.cli import build_parser, main

SUBCOMMANDS = ["inspect", "fold", "boards", "build", "run", "flash", "report"]


def _help(capsys, monkeypatch, *argv: str, columns: int = 80) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_top_level_help_lists_the_commands_in_the_order_a_user_meets_them(capsys, monkeypatch):
    text = _help(capsys, monkeypatch)
    listed = [ln.split()[0] for ln in text.split("  COMMAND\n", 1)[1].split("\n\n")[0].splitlines()
              if ln.startswith("    ") and not ln.startswith("     ")]
    assert listed == SUBCOMMANDS
    assert "typical use:" in text and "exit codes: 0 success, 1" in text
    assert "--json" in text and "only JSON on stdout" in text
    assert "edgepack run fw/" in text


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_help_has_purpose_examples_and_exit_codes(capsys, monkeypatch, command):
    text = _help(capsys, monkeypatch, command)
    assert text.startswith(f"usage: edgepack {command}")
    description = text.split("\n\n")[1]
    assert len(description.split()) >= 15, "a paragraph that says what the command does"
    assert re.search(rf"\nexamples?:\n  edgepack {command}\b", text)
    exits = text.split("exit codes: ", 1)[1]
    assert exits.startswith("0 ") and "2 usage" in exits
    assert "--json" in text


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_option_is_explained_and_defaults_are_stated(command):
    parser = _subparsers(build_parser())[command]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and len(action.help) >= 15, (command, action.dest)
        if action.default not in (None, False) and action.option_strings:
            assert "default" in action.help, (command, action.dest, action.help)


@pytest.mark.parametrize("command", ["", *SUBCOMMANDS])
def test_help_fits_80_columns(capsys, monkeypatch, command):
    text = _help(capsys, monkeypatch, *([command] if command else []))
    too_long = [ln for ln in text.splitlines() if len(ln) > 80]
    assert too_long == []


def test_help_paragraphs_use_wider_terminals_up_to_88_columns(capsys, monkeypatch):
    wide = _help(capsys, monkeypatch, "build", columns=200)
    assert max(len(ln) for ln in wide.split("\n\n")[1].splitlines()) > 80
    assert max(len(ln) for ln in wide.splitlines()) <= 88 + 2


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: edgepack" in capsys.readouterr().out
