"""The checkpoint's tokenizer (tokenizer.json, through the `tokenizers` library)."""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer as _Tokenizer

from ..config import CheckpointError


class Tokenizer:
    def __init__(self, path: str | Path):
        path = Path(path)
        if not (path / "tokenizer.json").is_file():
            raise CheckpointError(f"{path / 'tokenizer.json'} not found")
        self._tok = _Tokenizer.from_file(str(path / "tokenizer.json"))
        config_file = path / "tokenizer_config.json"
        self.config = json.loads(config_file.read_text()) if config_file.is_file() else {}

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special tokens written in the text become their ids."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def find_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def token_id(self, token: str) -> int:
        tid = self.find_id(token)
        if tid is None:
            raise CheckpointError(f"the tokenizer has no token {token!r}")
        return tid

    def id_to_token(self, tid: int) -> str | None:
        return self._tok.id_to_token(tid)

    def special_tokens(self) -> dict[str, str]:
        """Named special tokens from tokenizer_config.json (bos_token, eos_token, ...), for templates."""
        out = {}
        for key, value in self.config.items():
            if key.endswith("_token") and value is not None:
                out[key] = value["content"] if isinstance(value, dict) else value
        return out
