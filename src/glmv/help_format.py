"""The parser, help format and size arguments of every glmv command."""
from __future__ import annotations

import argparse
import re

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


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


def parse_bytes(text: str | int) -> int:
    """'4GiB', '512M', '1.5g' or a plain number of bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?)(i?b)?\s*", str(text).lower())
    if not match:
        raise ValueError(f"not a size: {text!r} (try 4GiB or 512MiB)")
    return int(float(match[1]) * _UNITS[match[2]])


def format_bytes(n: int) -> str:
    """The largest binary unit that writes n whole: 5242880 -> '5MiB' (parse_bytes reads it back)."""
    for unit in "TGMK":
        if n and n % _UNITS[unit.lower()] == 0:
            return f"{n // _UNITS[unit.lower()]}{unit}iB"
    return str(n)


def size_argument(text: str) -> int:
    """A byte count written as parse_bytes reads it, for argparse (a bad one is a usage error)."""
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
