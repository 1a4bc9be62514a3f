"""A real `glmv serve` process on loopback, over a scripted checkpoint (answers known in advance)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from checkpoints import make_scripted_checkpoint

# After the generation prompt with thinking on (ends in <|assistant|>): reasoning, then a boxed answer
# that runs on (" and and ...") until max_tokens. With thinking off (ends in "\n"): text, then a tool call.
SCRIPTS = {
    "<|assistant|>": ["<think>", "What", " happens", "</think>", "The", " star", " is", "<|begin_of_box|>", " one",
                      "<|end_of_box|>", " and", " and"],
    "\n": ["Des", "<tool_call>", "Describe", "<arg_key>", "you", "</arg_key>", "<arg_value>", "4", "</arg_value>",
           "</tool_call>", "<|observation|>"],
}
REASONING = "What happens"
CONTENT = "The star is<|begin_of_box|> one<|end_of_box|>"
TOOL_CONTENT = "Des"


def scripted_checkpoint(path: Path) -> Path:
    return make_scripted_checkpoint(path, SCRIPTS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def glmv(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glmv.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    db: Path
    log: Path
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> bool:
        """SIGTERM, as a service manager stops it: True if it drained and exited cleanly (uvicorn re-raises
        the signal after its graceful shutdown, so the exit status is -SIGTERM)."""
        self.process.terminate()
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return False
        return code in (0, -signal.SIGTERM) and "Traceback" not in self.log.read_text()


def start_server(model: Path | None, db: Path, *args: str) -> Server:
    """`glmv serve` on a free loopback port; model None serves the bundled model."""
    port = free_port()
    db.parent.mkdir(parents=True, exist_ok=True)
    log = db.with_suffix(f".{port}.log")
    process = subprocess.Popen(
        [sys.executable, "-m", "glmv.cli", "serve", *(["--model", str(model)] if model else []), "--port", str(port),
         "--db", str(db),
         "--dtype", "float32", "--kv-cache-memory", "32MiB", "--max-model-len", "2048", "--log-level", "warning",
         *args], stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"glmv serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return Server(process, port, db, log)
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"glmv serve did not come up:\n{log.read_text()}")
