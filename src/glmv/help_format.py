"""The parser, help format and size arguments of every glmv command."""
from __future__ import annotations

import argparse

from .units import parse_bytes


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Names each option's default, except where there is none to name (None, off for a switch, or an
    empty list for a repeatable option)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help names the defaults; its subcommands are Parsers too (argparse makes
    subparsers of the parent's class), so every command's help reads the same."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def size_argument(text: str) -> int:
    """A byte count written as parse_bytes reads it, for argparse (a bad one is a usage error)."""
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
