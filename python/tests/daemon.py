"""A real ``quantune serve`` for the tests: its own temp dir, Unix socket and TCP listener.

The binary comes from ``$QUANTUNE_BIN`` (the Rust test that runs this suite sets it), else
``target/debug/quantune`` of the checkout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
TOKEN = "7c1d0e9f8a6b5c4d3e2f1a0b9c8d7e6f"


def binary() -> str:
    b = os.environ.get("QUANTUNE_BIN") or os.path.join(REPO, "target", "debug", "quantune")
    if not os.path.exists(b):
        raise RuntimeError(f"no quantune binary at {b}: run cargo build or set QUANTUNE_BIN")
    return b


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """``quantune serve`` on ``self.socket`` and ``self.url`` (bearer ``TOKEN``)."""

    def __init__(self, cpu_slots: int = 2) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="quantune-py-")
        self.dir = self._dir.name
        self.socket = os.path.join(self.dir, "q.sock")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        token_file = os.path.join(self.dir, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(token_file, 0o600)
        self.config = os.path.join(self.dir, "quantune.toml")
        with open(self.config, "w") as f:
            f.write(
                f'state_dir = "{self.dir}/state"\nsocket = "{self.socket}"\n'
                f"cpu_slots = {cpu_slots}\ngpu_discovery = false\n"
                f'[tcp]\nlisten = "127.0.0.1:{self.port}"\ntoken_file = "{token_file}"\n'
            )
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> "Daemon":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [binary(), "serve", "--config", self.config],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "RUST_LOG": "info"},
        )
        log.close()
        deadline = time.monotonic() + 20
        from quantune import Client, DaemonUnreachable

        while time.monotonic() < deadline:
            try:
                Client(socket=self.socket, timeout=2).health()
                return self
            except DaemonUnreachable:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(f"the daemon did not come up; log:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._dir.cleanup()
