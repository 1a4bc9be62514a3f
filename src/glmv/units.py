"""Byte sizes as people write them: 4GiB, 512M, 1.5g (binary units)."""
from __future__ import annotations

import re

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


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
        size = _UNITS[unit.lower()]
        if n and n % size == 0:
            return f"{n // size}{unit}iB"
    return str(n)
