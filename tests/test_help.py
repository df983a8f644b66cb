"""Every flag of `otok` and `train/run.py` says its default and gives an example in --help."""

from __future__ import annotations

import argparse
import io

from otok.tools.cli import build_parser
from otok.train.config import build_parser as train_parser
from otok.train.config import parse_args


def parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


def flags(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield action


def test_otok_help_gives_defaults_and_examples():
    for parser in parsers(build_parser()):
        help_text = " ".join(parser.format_help().split())
        assert "examples:" in help_text, parser.prog
        for action in flags(parser):
            described = " ".join(parser._get_formatter()._expand_help(action).split()) if action.help else ""
            assert "default" in described, f"{parser.prog} {action.option_strings[0]}"
            takes_value = action.nargs != 0
            if takes_value and not action.choices:
                assert "e.g." in described, f"{parser.prog} {action.option_strings[0]}"


def test_train_help_gives_defaults_and_examples():
    parser = train_parser()
    assert "examples:" in parser.format_help()
    for action in flags(parser):
        assert action.help and ("default" in action.help or "(none:" in action.help or "(empty:" in action.help
                                or "required" in action.help or action.nargs == 0), action.option_strings[0]
        if action.nargs != 0:
            assert "e.g." in action.help, action.option_strings[0]


def test_train_progress_bar_only_on_a_terminal(monkeypatch):
    args = ["--stage", "image", "--model", "otok-tiny", "--data", "d", "--steps", "1", "--batch", "1", "--out", "o"]
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a log file, not a terminal
    assert parse_args(args).progress is False
    assert parse_args([*args, "--no-progress"]).progress is False

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", Terminal())  # a person at a terminal: a bar, unless told not to
    assert parse_args(args).progress is True
    assert parse_args([*args, "--no-progress"]).progress is False
